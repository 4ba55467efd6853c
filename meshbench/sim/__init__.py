"""meshbench.sim."""
