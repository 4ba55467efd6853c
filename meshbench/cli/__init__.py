"""meshbench.cli."""
