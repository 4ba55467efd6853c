"""The shipped kernels on the CUDA simulator, against their CPU references (tiny sizes)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from meshbench_cuda import CudaExecutor, KernelCall, decode_arrays, installed_kernels

SEED = bytes(range(32))
rng = np.random.default_rng(7)
CALLS = {
    "saxpy": KernelCall(
        kernel="saxpy", arrays={"x": rng.random(20), "y": rng.random(20)}, params={"a": -1.5},
        block=(8,),
    ),
    "matmul": KernelCall(
        kernel="matmul", arrays={"a": rng.random((3, 5)), "b": rng.random((5, 4))}, block=(4, 2)
    ),
    "heat": KernelCall(
        kernel="heat", arrays={"u": rng.random((5, 6))}, params={"alpha": 0.25, "steps": 3},
        block=(4, 4),
    ),
    "sum": KernelCall(kernel="sum", arrays={"x": rng.random(70)}, block=(4,)),
    "mc_pi": KernelCall(kernel="mc_pi", params={"threads": 12, "per_thread": 16}, block=(8,)),
}  # fmt: skip


@pytest.fixture(scope="module")
def executor() -> CudaExecutor:
    return CudaExecutor()


def run(executor: CudaExecutor, call: KernelCall, seed: bytes = SEED):
    p = call.task_payload()
    return executor.run(p.module, p.input, scope=p.scope, seed=seed)


def test_five_kernels_are_installed_and_approved(executor):
    assert set(CALLS) == {k.split("@")[0] for k in installed_kernels()}
    assert sorted(executor.registry.approved) == sorted(installed_kernels())


@pytest.mark.parametrize("name", sorted(CALLS))
def test_kernel_matches_its_cpu_reference_bit_for_bit(executor, name):
    call = CALLS[name]
    result = run(executor, call)
    spec = executor.registry.kernels[call.descriptor().ref]
    arrays = decode_arrays(call.bundle())
    want = spec.reference(arrays, spec.resolve_params(call.params), SEED)
    got = decode_arrays(result.output)
    assert sorted(got) == sorted(want)
    for k in want:
        assert got[k].tobytes() == np.ascontiguousarray(want[k]).tobytes(), k
    s = result.summary
    assert s.flops == spec.flops(arrays, spec.resolve_params(call.params)) > 0
    assert s.gpu_time_us > 0 and s.fuel_used == 0 and s.engine == executor.engine
    assert result.kernel == spec.ref


def test_matmul_and_saxpy_values(executor):
    mm = CALLS["matmul"]
    c = decode_arrays(run(executor, mm).output)["c"]
    np.testing.assert_allclose(c, mm.arrays["a"] @ mm.arrays["b"], rtol=1e-12)
    sx = CALLS["saxpy"]
    out = decode_arrays(run(executor, sx).output)["out"]
    np.testing.assert_allclose(out, -1.5 * sx.arrays["x"] + sx.arrays["y"], rtol=1e-15)


def test_heat_keeps_the_boundary_and_smooths_the_interior(executor):
    u0 = np.zeros((5, 5))
    u0[2, 2] = 1.0
    u0[0, :] = 2.0
    call = KernelCall(kernel="heat", arrays={"u": u0}, params={"alpha": 0.2, "steps": 2})
    u = decode_arrays(run(executor, call).output)["u"]
    np.testing.assert_array_equal(u[0, :], 2.0)
    assert u[2, 2] < 1.0 and u[2, 3] > 0.0


@pytest.mark.parametrize("block", [(1,), (3,), (32,)])
def test_reduction_order_does_not_depend_on_the_block(executor, block):
    x = np.array([1e16, 1.0, -1e16, 1.0] * 20)  # order-sensitive in floating point
    ref = run(executor, KernelCall(kernel="sum", arrays={"x": x}, block=(8,))).output
    assert run(executor, KernelCall(kernel="sum", arrays={"x": x}, block=block)).output == ref


def test_single_element_sum(executor):
    out = decode_arrays(run(executor, KernelCall(kernel="sum", arrays={"x": [2.5]})).output)
    assert out["sum"].tolist() == [2.5]


def test_monte_carlo_is_a_function_of_the_task_seed(executor):
    call = KernelCall(kernel="mc_pi", params={"threads": 16, "per_thread": 32}, block=(16,))
    a, b = run(executor, call, SEED), run(executor, call, SEED)
    assert a.output == b.output
    other = run(executor, call, bytes(32))
    assert other.output != a.output
    other_block = run(executor, KernelCall(**{**call.__dict__, "block": (4,)}), SEED)
    assert other_block.output == a.output  # the launch shape does not change the draw
    est = decode_arrays(a.output)["estimate"][0]
    assert math.isclose(est, math.pi, abs_tol=0.25)
