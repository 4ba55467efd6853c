"""matmul 1.0.0: ``c = a @ b`` for float64 matrices, one thread per element of ``c``.

Each thread sums ``a[i, k] * b[k, j]`` for k ascending from 0.0: the additions of the plain
i-k-j loop, so without fused multiply-add the result is bit-identical to it (the simulator
and the CPU reference); a GPU may contract to FMA, hence the tolerance validator.
"""

from __future__ import annotations

import numpy as np
from numba import cuda

from meshbench_cuda.spec import Arrays, KernelSpec, Params, grid_for, require


@cuda.jit
def _matmul(a, b, c):
    col, row = cuda.grid(2)
    if row < c.shape[0] and col < c.shape[1]:
        acc = 0.0
        for k in range(a.shape[1]):
            acc += a[row, k] * b[k, col]
        c[row, col] = acc


def _check(arrays: Arrays, params: Params) -> None:
    a, b = arrays["a"], arrays["b"]
    require(a.ndim == 2 and b.ndim == 2, "a and b must be matrices (2-D)")
    require(a.shape[1] == b.shape[0], f"inner dimensions differ: a {a.shape}, b {b.shape}")


def _launch(arrays: Arrays, params: Params, block: tuple[int, ...], seed: bytes) -> dict:
    a, b = arrays["a"], arrays["b"]
    n, m = a.shape[0], b.shape[1]
    c = cuda.device_array((n, m), dtype=np.float64)
    grid = grid_for((m, n), block)
    _matmul[grid, block](cuda.to_device(np.array(a)), cuda.to_device(np.array(b)), c)
    return {"c": c.copy_to_host()}


def _reference(arrays: Arrays, params: Params, seed: bytes) -> dict:
    a, b = arrays["a"], arrays["b"]
    c = np.zeros((a.shape[0], b.shape[1]))
    for k in range(a.shape[1]):  # k ascending: the kernel's order of additions
        c += np.multiply.outer(a[:, k], b[k, :])
    return {"c": c}


MATMUL = KernelSpec(
    name="matmul",
    version="1.0.0",
    summary="c = a @ b (float64), one thread per output element",
    module=__name__,
    inputs={"a": "float64", "b": "float64"},
    block_dims=2,
    default_block=(16, 16),
    check=_check,
    flops=lambda arrays, params: (
        2 * arrays["a"].shape[0] * arrays["a"].shape[1] * arrays["b"].shape[1]
    ),
    device_bytes=lambda arrays, params: (
        8 * (arrays["a"].size + arrays["b"].size + arrays["a"].shape[0] * arrays["b"].shape[1])
    ),
    launch=_launch,
    reference=_reference,
)
