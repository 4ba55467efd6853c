"""saxpy 1.0.0: ``out = a * x + y`` over float64 vectors (2 FLOPs per element)."""

from __future__ import annotations

import numpy as np
from numba import cuda

from meshbench_cuda.spec import Arrays, KernelSpec, Param, Params, grid_for, require


@cuda.jit
def _saxpy(a, x, y, out):
    i = cuda.grid(1)
    if i < out.size:
        out[i] = a * x[i] + y[i]


def _check(arrays: Arrays, params: Params) -> None:
    x, y = arrays["x"], arrays["y"]
    require(x.ndim == 1 and x.shape == y.shape, f"x {x.shape} and y {y.shape}: equal 1-D shapes")


def _launch(arrays: Arrays, params: Params, block: tuple[int, ...], seed: bytes) -> dict:
    x, y = arrays["x"], arrays["y"]
    out = cuda.device_array(x.shape, dtype=np.float64)
    (grid,) = grid_for(x.shape, block)
    _saxpy[grid, block[0]](
        params["a"], cuda.to_device(np.array(x)), cuda.to_device(np.array(y)), out
    )
    return {"out": out.copy_to_host()}


def _reference(arrays: Arrays, params: Params, seed: bytes) -> dict:
    return {"out": params["a"] * arrays["x"] + arrays["y"]}


SAXPY = KernelSpec(
    name="saxpy",
    version="1.0.0",
    summary="out = a*x + y (float64 vectors)",
    module=__name__,
    inputs={"x": "float64", "y": "float64"},
    params={"a": Param(float, -1e300, 1e300)},
    check=_check,
    flops=lambda arrays, params: 2 * arrays["x"].size,
    device_bytes=lambda arrays, params: 3 * arrays["x"].nbytes,
    launch=_launch,
    reference=_reference,
)
