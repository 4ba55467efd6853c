"""GPU tasks on a Dask LocalCluster: workers load the cuda executor and advertise their GPU."""

from __future__ import annotations

import numpy as np
import pytest

from meshbench.runtime.mesh import Mesh
from meshbench_cuda import KernelCall, decode_arrays


@pytest.mark.slow
def test_gpu_task_on_a_dask_cluster(tmp_path):
    policy = {"verification_quorum": {"minimum_verifiers": 2}}
    with Mesh.local(
        workers=3, processes=False, data_dir=tmp_path, policy=policy, executors=("cuda",)
    ) as mesh:
        peers = mesh.node.call(lambda: dict(mesh.node.state.peers))
        assert all(p.hardware.gpu_flops > 0 and p.hardware.gpu_class for p in peers.values())
        call = KernelCall(kernel="heat", arrays={"u": np.eye(4)}, params={"alpha": 0.1})
        r = mesh.publish(kernel=call, fee=100, verifiers=2).result(timeout=120)
        assert r.accepted, [v.reason for v in r.verifications]
        assert decode_arrays(r.output)["u"].shape == (4, 4)
        assert r.receipt.summary.flops == 8 * 2 * 2
