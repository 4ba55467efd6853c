"""meshbench.workbench."""
