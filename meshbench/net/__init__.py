"""meshbench.net."""
