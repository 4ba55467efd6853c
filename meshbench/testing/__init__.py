"""meshbench.testing."""
