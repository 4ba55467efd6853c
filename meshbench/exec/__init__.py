"""meshbench.exec."""
