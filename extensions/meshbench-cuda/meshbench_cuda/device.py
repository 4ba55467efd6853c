"""Which CUDA device this process has (a real GPU or Numba's simulator), and its identity."""

from __future__ import annotations

import os
import threading
from functools import cache

import numba

__all__ = ["LAUNCH_LOCK", "device_name", "engine_identity", "simulated"]

#: One launch at a time per process: the simulator swaps the ``cuda`` global of a kernel's
#: module while its threads run (not thread-safe), and one process drives one device.
LAUNCH_LOCK = threading.Lock()


def simulated() -> bool:
    """True under Numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``): no GPU is used."""
    from numba import config

    return bool(config.ENABLE_CUDASIM) or os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"


@cache
def device_name() -> str:
    """``cudasim`` under the simulator, else the device's name and compute capability."""
    if simulated():
        return "cudasim"
    from numba import cuda

    if not cuda.is_available():
        return ""
    dev = cuda.get_current_device()
    name = dev.name.decode() if isinstance(dev.name, bytes) else str(dev.name)
    major, minor = dev.compute_capability
    return f"{name} sm_{major}{minor}"


def engine_identity() -> str:
    """``numba-<version>/<device>``: results are bit-comparable within one identity."""
    try:
        from importlib.metadata import version

        cuda_pkg = f"numba-cuda-{version('numba-cuda')}"
    except Exception:
        cuda_pkg = f"numba-{numba.__version__}"
    return f"{cuda_pkg}/{device_name() or 'no-gpu'}"
