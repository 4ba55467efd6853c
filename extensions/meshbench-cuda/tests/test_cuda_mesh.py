"""GPU tasks end to end on an in-process mesh (simulator): offers, selection, verification."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from meshbench.runtime.mesh import Mesh
from meshbench_cuda import CudaExecutor, KernelCall, decode_arrays, encode_arrays, gpu_agents

GPU = {0, 1, 2, 3}  # worker 4 is CPU-only


class OtherGpuClass(CudaExecutor):
    """A worker whose device rounds differently (as FMA contraction on another GPU class
    would): its float outputs are one ulp off. A test stand-in for a second GPU model, not a
    GPU; everything else is the real executor."""

    def run(self, *args, **kwargs):
        real = super().run(*args, **kwargs)
        arrays = {
            k: np.nextafter(v, np.inf) if v.dtype.kind == "f" else v
            for k, v in decode_arrays(real.output).items()
        }
        return dataclasses.replace(real, output=encode_arrays(arrays))


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Mesh:
    factory = gpu_agents(GPU, gpu_flops=10**6)
    m = Mesh.in_process(
        workers=5,
        data_dir=tmp_path_factory.mktemp("gpu-mesh"),
        agent_factory=factory,
        policy={"verification_quorum": {"minimum_verifiers": 2}},
    )
    yield m
    m.close()


def gpu_dids(mesh: Mesh) -> set[str]:
    agents = mesh.node.backend.agents
    return {d for d, a in agents.items() if a.hardware.gpu_flops > 0}


def test_verified_gpu_task_end_to_end(mesh):
    x, y = np.arange(8.0), np.full(8, 0.5)
    call = KernelCall(kernel="saxpy", arrays={"x": x, "y": y}, params={"a": 3.0}, block=(8,))
    result = mesh.publish(kernel=call, fee=100, verifiers=2).result(timeout=60)
    assert result.accepted, (result.outcome, [v.reason for v in result.verifications])
    np.testing.assert_array_equal(decode_arrays(result.output)["out"], 3.0 * x + y)
    s = result.receipt.summary
    assert s.flops == 16 and s.gpu_time_us > 0 and s.engine.endswith("/cudasim")
    judges = {result.receipt.worker, *(v.verifier for v in result.verifications)}
    assert judges <= gpu_dids(mesh)  # the CPU-only worker neither ran nor verified it
    assert all(v.approved and v.output_cid == result.output_cid for v in result.verifications)


def test_cpu_worker_never_offers_for_a_gpu_task(mesh):
    call = KernelCall(kernel="sum", arrays={"x": np.ones(40)})
    handle = mesh.publish(kernel=call, fee=100, verifiers=2)
    handle.result(timeout=60)
    offers = mesh.offers().filter(mesh.offers()["task_cid"] == str(handle.cid))
    assert set(offers["worker"].to_list()) <= gpu_dids(mesh)
    assert len(offers) == len(gpu_dids(mesh))


def test_task_needing_more_gpu_than_anyone_measured_gets_no_worker(mesh):
    call = KernelCall(kernel="saxpy", arrays={"x": [1.0], "y": [1.0]}, params={"a": 1.0},
                      max_flops=10**9, max_time_ms=1)  # fmt: skip
    result = mesh.publish(kernel=call, fee=5000, verifiers=2, deadline_s=3).result(timeout=30)
    assert result.outcome == "Expired" and result.receipt is None


def test_monte_carlo_seeded_by_the_task(mesh):
    call = KernelCall(kernel="mc_pi", params={"threads": 8, "per_thread": 16})
    a = mesh.publish(kernel=call, fee=100, verifiers=2).result(timeout=60)
    b = mesh.publish(kernel=call, fee=100, verifiers=2).result(timeout=60)
    assert a.accepted and b.accepted
    assert a.output != b.output  # two tasks, two seeds (nonces differ)


@pytest.fixture(scope="module")
def mixed_mesh(tmp_path_factory: pytest.TempPathFactory) -> Mesh:
    """Worker 0 runs on 'another GPU class' that rounds differently; 1-3 agree bit for bit."""
    odd = OtherGpuClass()

    def factory(identity, federation, index):
        agent = gpu_agents({1, 2, 3}, gpu_flops=10**6)(identity, federation, index)
        if index == 0:
            agent = gpu_agents({0}, gpu_flops=10**6, executor=odd)(identity, federation, index)
        return agent

    m = Mesh.in_process(
        workers=4,
        data_dir=tmp_path_factory.mktemp("mixed-mesh"),
        agent_factory=factory,
        policy={"verification_quorum": {"minimum_verifiers": 3}},
    )
    yield m
    m.close()


def test_tolerance_validator_accepts_results_of_another_gpu_class(mixed_mesh):
    call = KernelCall(kernel="matmul", arrays={"a": np.eye(3) * 0.1, "b": np.ones((3, 3)) / 3},
                      rtol=1e-12)  # fmt: skip
    r = mixed_mesh.publish(kernel=call, fee=100, verifiers=3).result(timeout=60)
    assert r.accepted, [v.reason for v in r.verifications]
    cids = {v.output_cid for v in r.verifications} | {r.output_cid}
    assert len(cids) == 2  # one worker (or verifier) differed by an ulp and still agreed


def test_exact_validation_rejects_the_same_difference(mixed_mesh):
    call = KernelCall(kernel="matmul", arrays={"a": np.eye(3) * 0.1, "b": np.ones((3, 3)) / 3})
    r = mixed_mesh.publish(kernel=call, fee=100, verifiers=3).result(timeout=60)
    differ = [v for v in r.verifications if v.output_cid != r.output_cid]
    assert differ and not any(v.approved for v in differ)


def test_gpu_offers_are_priced_above_the_scope_minimum(tmp_path):
    # workers advertising 1 TFLOP/s (a figure given here, not measured: the simulator's
    # measured throughput is ~1e5 FLOP/s); the task needs 200 GFLOP/s to meet its time budget
    m = Mesh.in_process(
        workers=3,
        data_dir=tmp_path,
        agent_factory=gpu_agents(gpu_flops=10**12),
        policy={"verification_quorum": {"minimum_verifiers": 1}},
    )
    try:
        call = KernelCall(kernel="sum", arrays={"x": np.ones(8)}, max_flops=2 * 10**11,
                          max_time_ms=1000)  # fmt: skip
        assert call.task_payload().scope.gpu_flops == 2 * 10**11
        assert m.policy.min_fee_for(call.task_payload().scope) == 210
        r = m.publish(kernel=call, fee=1000, verifiers=1).result(timeout=60)
        assert r.accepted and decode_arrays(r.output)["sum"].tolist() == [8.0]
    finally:
        m.close()
