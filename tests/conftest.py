"""Suite-wide settings: hypothesis measures no per-example deadline (a loaded CI machine
is slow, not wrong); the example counts stay those each test sets."""

from __future__ import annotations

from hypothesis import HealthCheck, settings

settings.register_profile("meshbench", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("meshbench")
