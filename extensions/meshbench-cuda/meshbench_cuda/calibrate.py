"""A worker measures its own GPU throughput at start and advertises it (HardwareProfile)."""

from __future__ import annotations

import time

import numpy as np

from meshbench.core.types import HardwareProfile
from meshbench_cuda.device import LAUNCH_LOCK, device_name, simulated
from meshbench_cuda.kernels.matmul import MATMUL

__all__ = ["calibrate_gpu_flops", "gpu_hardware"]


def calibrate_gpu_flops(n: int | None = None, *, repeat: int = 2) -> int:
    """Measured FLOP/s of the matmul kernel on this device (best of ``repeat``; 0: no GPU).

    ``n`` defaults to 8 on the simulator (a simulated thread costs ~0.2 ms) and 1024 on a GPU.
    """
    if not device_name():
        return 0
    n = n or (8 if simulated() else 1024)
    rng = np.random.default_rng(0)
    arrays = {"a": rng.random((n, n)), "b": rng.random((n, n))}
    flops = MATMUL.flops(arrays, {})
    best = float("inf")
    with LAUNCH_LOCK:
        MATMUL.launch(arrays, {}, MATMUL.default_block, bytes(32))  # compile / warm up
        for _ in range(repeat):
            t0 = time.perf_counter()
            MATMUL.launch(arrays, {}, MATMUL.default_block, bytes(32))
            best = min(best, time.perf_counter() - t0)
    return max(1, int(flops / best))


def gpu_hardware(memory_mb: int = 4096, *, gpu_flops: int | None = None) -> HardwareProfile:
    """This worker's hardware with its calibrated GPU throughput and class (device name)."""
    measured = calibrate_gpu_flops() if gpu_flops is None else gpu_flops
    return HardwareProfile(memory_mb=memory_mb, gpu_flops=measured, gpu_class=device_name())
