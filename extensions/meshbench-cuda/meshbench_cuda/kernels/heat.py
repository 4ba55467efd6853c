"""heat 1.0.0: explicit heat diffusion on a float64 grid, ``steps`` 5-point stencil steps.

Interior points: ``u + alpha * (up + down + left + right - 4 u)`` (8 FLOPs); the boundary
stays fixed. One launch per step, ping-ponging two device buffers.
"""

from __future__ import annotations

import numpy as np
from numba import cuda

from meshbench_cuda.spec import Arrays, KernelSpec, Param, Params, grid_for, require


@cuda.jit
def _step(alpha, u, v):
    j, i = cuda.grid(2)
    n, m = u.shape
    if i < n and j < m:
        if i == 0 or j == 0 or i == n - 1 or j == m - 1:
            v[i, j] = u[i, j]
        else:
            lap = u[i - 1, j] + u[i + 1, j] + u[i, j - 1] + u[i, j + 1] - 4.0 * u[i, j]
            v[i, j] = u[i, j] + alpha * lap


def _check(arrays: Arrays, params: Params) -> None:
    u = arrays["u"]
    require(
        u.ndim == 2 and min(u.shape) >= 3, f"u must be a 2-D grid of at least 3x3, not {u.shape}"
    )


def _launch(arrays: Arrays, params: Params, block: tuple[int, ...], seed: bytes) -> dict:
    u = cuda.to_device(np.array(arrays["u"]))
    v = cuda.device_array(u.shape, dtype=np.float64)
    grid = grid_for((u.shape[1], u.shape[0]), block)
    for _ in range(int(params["steps"])):
        _step[grid, block](params["alpha"], u, v)
        u, v = v, u
    return {"u": u.copy_to_host()}


def _reference(arrays: Arrays, params: Params, seed: bytes) -> dict:
    u = np.array(arrays["u"])
    alpha = params["alpha"]
    for _ in range(int(params["steps"])):
        v = u.copy()
        c = u[1:-1, 1:-1]
        lap = u[:-2, 1:-1] + u[2:, 1:-1] + u[1:-1, :-2] + u[1:-1, 2:] - 4.0 * c
        v[1:-1, 1:-1] = c + alpha * lap
        u = v
    return {"u": u}


HEAT = KernelSpec(
    name="heat",
    version="1.0.0",
    summary="explicit heat diffusion (5-point stencil), fixed boundary",
    module=__name__,
    inputs={"u": "float64"},
    params={"alpha": Param(float, 0.0, 0.25), "steps": Param(int, 1, 100_000, 1)},
    block_dims=2,
    default_block=(16, 16),
    check=_check,
    flops=lambda arrays, params: (
        8 * int(params["steps"]) * (arrays["u"].shape[0] - 2) * (arrays["u"].shape[1] - 2)
    ),
    device_bytes=lambda arrays, params: 2 * arrays["u"].nbytes,
    launch=_launch,
    reference=_reference,
)
