"""A tolerance-validated GPU task over libp2p: the worker's output reaches the verifiers
sealed to each of them, and they judge it with the validator (issue 22 item 6).

The authority and three GPU worker peers run in this process, each peer with its own libp2p
node and key on 127.0.0.1: the stand-in for other GPU classes (floats a few ulps off) is a
Python subclass, which a child process could not be handed.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

import meshbench_cuda as cuda
from meshbench.core.identity import Identity
from meshbench.net.node import Libp2pNode
from meshbench.runtime.mesh import Mesh
from meshbench.runtime.p2p import WorkerService
from meshbench.store.blobs import BlobStore
from meshbench.testing.netmesh import wait_until

POLICY = {"verification_quorum": {"minimum_verifiers": 2}, "selection": {"offer_window_ms": 3000}}


class OtherGpuClass(cuda.CudaExecutor):
    """Float outputs ``ulps`` ulps off (as another GPU class rounds): a stand-in for a
    different device, not a GPU; everything else is the real executor."""

    def __init__(self, ulps: int) -> None:
        super().__init__()
        self.ulps = ulps

    def run(self, *args, **kwargs):
        real = super().run(*args, **kwargs)
        arrays = cuda.decode_arrays(real.output)
        for _ in range(self.ulps):
            arrays = {k: np.nextafter(v, np.inf) if v.dtype.kind == "f" else v
                      for k, v in arrays.items()}  # fmt: skip
        return dataclasses.replace(real, output=cuda.encode_arrays(arrays))


@pytest.mark.timeout(300)
def test_tolerance_task_verifiers_judge_the_worker_output_sent_sealed(tmp_path: Path) -> None:
    peers: list[tuple[Libp2pNode, WorkerService]] = []
    with Mesh.join(data_dir=tmp_path / "node", policy=POLICY) as mesh:
        addr, auth, fed = mesh.net.addrs[0], mesh.node.authority.did, mesh.node.federation
        try:
            for i in range(3):  # every peer's floats differ: whoever works, verifiers judge
                make = cuda.gpu_agents(gpu_flops=10**6, executor=OtherGpuClass(i))
                identity = Identity.generate()
                node = Libp2pNode(
                    identity, BlobStore(tmp_path / f"g{i}"), bootstrap=[addr], mdns=False
                ).start()
                service = WorkerService(make(identity, fed, i), node, authority=auth)
                peers.append((node, service))
            wait_until(lambda: all(s.bonded for _n, s in peers), 120, "three bonded GPU peers")
            x, y = np.arange(8.0), np.full(8, 0.5)
            call = cuda.KernelCall(
                kernel="saxpy", arrays={"x": x, "y": y}, params={"a": 3.0}, block=(8,),
                rtol=1e-12,
            )  # fmt: skip
            r = mesh.publish(kernel=call, fee=100, verifiers=2).result(timeout=120)
            assert r.outcome == "Accepted", [(v.approved, v.reason) for v in r.verifications]
            np.testing.assert_allclose(cuda.decode_arrays(r.output)["out"], 3.0 * x + y)
            assert len(r.verifications) == 2
            for v in r.verifications:  # different bytes, approved by the validator on them
                assert v.approved and v.output_cid != r.output_cid
        finally:
            for node, service in peers:
                service.close()
                node.close()
