"""mc_pi 1.0.0: a Monte Carlo estimate of pi with a counter-based RNG seeded from the task.

Sample ``i`` draws ``x = h(2i)``, ``y = h(2i + 1)`` where ``h(c) = mix(mix(c ^ k0) + k1) >> 6``
(26-bit integers), ``mix`` is the lowbias32 integer hash and ``k0, k1`` are the first 8 bytes
of the task's seed: a pure function of (task, sample index), so no RNG state and no order.
A sample hits when ``x^2 + y^2 < 2^52``, all in integers: bit-identical on every device.
Outputs: ``hits`` per thread (int64) and ``estimate`` = 4 * hits / samples (float64, host).
Not a cryptographic generator.
"""

from __future__ import annotations

import numpy as np
from numba import cuda

from meshbench.core.errors import LaunchParameterError
from meshbench_cuda.spec import Arrays, KernelSpec, Param, Params, grid_for

LIMIT = 1 << 52
M32 = 0xFFFFFFFF


@cuda.jit(device=True)
def _mix(x):
    x = x & 0xFFFFFFFF
    x ^= x >> 16
    x = (x * 0x7FEB352D) & 0xFFFFFFFF
    x ^= x >> 15
    x = (x * 0x846CA68B) & 0xFFFFFFFF
    x ^= x >> 16
    return x


@cuda.jit
def _pi(k0, k1, per_thread, hits):
    t = cuda.grid(1)
    if t < hits.size:
        count = 0
        for s in range(per_thread):
            i = t * per_thread + s
            ux = _mix(_mix((2 * i) ^ k0) + k1) >> 6
            uy = _mix(_mix((2 * i + 1) ^ k0) + k1) >> 6
            if ux * ux + uy * uy < 4503599627370496:
                count += 1
        hits[t] = count


def _check(arrays: Arrays, params: Params) -> None:
    if int(params["threads"]) * int(params["per_thread"]) > 1 << 31:
        raise LaunchParameterError("mc_pi draws at most 2**31 samples (threads * per_thread)")


def _keys(seed: bytes) -> tuple[int, int]:
    return int.from_bytes(seed[:4], "little"), int.from_bytes(seed[4:8], "little")


def _estimate(hits: np.ndarray, params: Params) -> np.ndarray:
    total = int(params["threads"]) * int(params["per_thread"])
    return np.array([4 * int(hits.sum()) / total])


def _launch(arrays: Arrays, params: Params, block: tuple[int, ...], seed: bytes) -> dict:
    threads, per = int(params["threads"]), int(params["per_thread"])
    hits = cuda.device_array(threads, dtype=np.int64)
    (grid,) = grid_for((threads,), block)
    k0, k1 = _keys(seed)
    _pi[grid, block[0]](k0, k1, per, hits)
    host = hits.copy_to_host()
    return {"hits": host, "estimate": _estimate(host, params)}


def _np_mix(x: np.ndarray) -> np.ndarray:
    x = x & M32
    x ^= x >> 16
    x = (x * 0x7FEB352D) & M32
    x ^= x >> 15
    x = (x * 0x846CA68B) & M32
    x ^= x >> 16
    return x


def _reference(arrays: Arrays, params: Params, seed: bytes) -> dict:
    threads, per = int(params["threads"]), int(params["per_thread"])
    k0, k1 = (np.uint64(k) for k in _keys(seed))
    i = np.arange(threads * per, dtype=np.uint64)
    ux = _np_mix(_np_mix((2 * i) ^ k0) + k1) >> np.uint64(6)
    uy = _np_mix(_np_mix((2 * i + 1) ^ k0) + k1) >> np.uint64(6)
    inside = (ux * ux + uy * uy) < np.uint64(LIMIT)
    hits = inside.reshape(threads, per).sum(axis=1).astype(np.int64)
    return {"hits": hits, "estimate": _estimate(hits, params)}


MC_PI = KernelSpec(
    name="mc_pi",
    version="1.0.0",
    summary="Monte Carlo pi, counter-based integer RNG seeded from the task",
    module=__name__,
    inputs={},
    params={"threads": Param(int, 1, 1 << 24), "per_thread": Param(int, 1, 1 << 20)},
    portable=True,
    check=_check,
    # per sample: 4 hash rounds of 2 multiplies each, 2 squares, 1 add (integer operations)
    flops=lambda arrays, params: 11 * int(params["threads"]) * int(params["per_thread"]),
    device_bytes=lambda arrays, params: 8 * int(params["threads"]),
    launch=_launch,
    reference=_reference,
)
