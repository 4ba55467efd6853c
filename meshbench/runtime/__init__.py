"""meshbench.runtime."""
