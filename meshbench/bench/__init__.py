"""meshbench.bench."""
