"""sum 1.0.0: the sum of a float64 vector in a fixed order, whatever the launch shape.

Level by level, thread ``t`` adds elements ``t*CHUNK .. t*CHUNK+CHUNK-1`` from 0.0 in
ascending order; the partial sums are reduced the same way until one is left. The order of
additions depends only on the length, so every device (and the CPU reference) gives the same
bits: no atomics, no block-size dependence.
"""

from __future__ import annotations

import numpy as np
from numba import cuda

from meshbench_cuda.spec import Arrays, KernelSpec, Params, grid_for, require

CHUNK = 32


@cuda.jit
def _chunk_sums(x, out, chunk):
    t = cuda.grid(1)
    if t < out.size:
        acc = 0.0
        end = min(x.size, (t + 1) * chunk)
        for i in range(t * chunk, end):
            acc += x[i]
        out[t] = acc


def _levels(n: int) -> list[int]:
    sizes = [n]
    while sizes[-1] > 1:
        sizes.append(-(-sizes[-1] // CHUNK))
    return sizes


def _check(arrays: Arrays, params: Params) -> None:
    require(arrays["x"].ndim == 1, f"x must be a vector, not shape {arrays['x'].shape}")


def _launch(arrays: Arrays, params: Params, block: tuple[int, ...], seed: bytes) -> dict:
    cur = cuda.to_device(np.array(arrays["x"]))
    for size in _levels(arrays["x"].size)[1:]:
        nxt = cuda.device_array(size, dtype=np.float64)
        (grid,) = grid_for((size,), block)
        _chunk_sums[grid, block[0]](cur, nxt, CHUNK)
        cur = nxt
    if arrays["x"].size == 1:
        return {"sum": cur.copy_to_host().reshape(1)}
    return {"sum": cur.copy_to_host()}


def _reference(arrays: Arrays, params: Params, seed: bytes) -> dict:
    cur = np.array(arrays["x"])
    while cur.size > 1:
        pad = (-cur.size) % CHUNK
        rows = np.concatenate([cur, np.zeros(pad)]).reshape(-1, CHUNK)
        cur = np.cumsum(rows, axis=1)[:, -1]  # cumsum adds left to right, like the kernel
    return {"sum": cur.reshape(1)}


SUM = KernelSpec(
    name="sum",
    version="1.0.0",
    summary="sum of a float64 vector in a fixed order (chunks of 32, level by level)",
    module=__name__,
    inputs={"x": "float64"},
    check=_check,
    flops=lambda arrays, params: sum(_levels(arrays["x"].size)[:-1]),
    device_bytes=lambda arrays, params: 8 * sum(_levels(arrays["x"].size)),
    launch=_launch,
    reference=_reference,
)
