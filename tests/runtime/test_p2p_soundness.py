"""Over libp2p no outsider can consume another party's step, and nothing private leaks.

The authority (this process), three worker peers (separate processes) and an outsider peer
(its own libp2p node and key, subscribed to every topic) on 127.0.0.1. The outsider performs
the attack of issue 18 item 3: as soon as the authority asks the worker to reveal, it gossips
a self-signed receipt for that task, in the clear and sealed to the authority, plus an offer
and a verdict nobody asked it for. The honest worker must still be paid and not slashed, and
the outsider must have seen no receipt, verdict, salt or output bytes of the task.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from meshbench.core.encoding import CID, blob_cid
from meshbench.core.events import StakeSlashed, WorkRequest
from meshbench.core.identity import Identity
from meshbench.core.model import Model, decode_object
from meshbench.core.types import (
    ComputeOffer,
    ExecutionReceipt,
    ExecutionSummary,
    HardwareProfile,
    VerificationReceipt,
    result_commitment,
)
from meshbench.exec.wasm import WasmExecutor
from meshbench.net.node import Libp2pNode
from meshbench.runtime.mesh import Mesh
from meshbench.store.blobs import BlobStore
from meshbench.store.sealing import seal_objects
from meshbench.testing.netmesh import WorkerProcess, spawn_worker, wait_until

WASM = Path(__file__).resolve().parents[2] / "datasets" / "wasm"
POLICY = {"verification_quorum": {"minimum_verifiers": 2}, "selection": {"offer_window_ms": 3000}}


class Outsider:
    """A peer with no part in any task that forges whatever the protocol lets anyone send."""

    def __init__(self, root: Path, bootstrap: str, authority: str) -> None:
        self.identity = Identity.generate()
        self.authority = authority
        self.node = Libp2pNode(
            self.identity, BlobStore(root / "blobs"), bootstrap=[bootstrap], mdns=False
        ).start()
        self.attacked = threading.Event()
        self.node.subscribe("tasks", self._on_task_topic)

    def _on_task_topic(self, obj: Model, _peer: str) -> None:
        if isinstance(obj, WorkRequest) and obj.action == "reveal":
            self._forge(obj.task_cid, obj.timestamp)

    def _forge(self, task_cid: CID, now: int) -> None:
        me, out = self.identity.did, blob_cid(b"forged")
        forged = ExecutionReceipt(
            task_cid=task_cid, worker=me, output_cid=out,
            result_commitment=result_commitment(task_cid, me, out, bytes(16)), salt=bytes(16),
            summary=ExecutionSummary(fuel_used=1, peak_memory_bytes=0, wall_time_us=0),
            created_at=now,
        ).sign(self.identity)  # fmt: skip
        self.node.publish("executions", forged)  # first, before the worker's reveal
        envelope = self.node.store.put_encrypted(b"forged", [self.authority])
        sealed = seal_objects(self.identity, self.authority, task_cid, [forged, envelope], now)
        self.node.publish("sealed", sealed)  # its bytes are served from the store when asked
        verdict = VerificationReceipt(
            task_cid=task_cid, receipt_cid=forged.cid, verifier=me, approved=False, created_at=now
        ).sign(self.identity)
        self.node.publish("verifications", verdict)
        self.node.publish(
            "sealed", seal_objects(self.identity, self.authority, task_cid, [verdict], now)
        )
        offer = ComputeOffer(
            task_cid=task_cid, worker=me, federation=me, cost=1, capacity=1, eta_ms=1,
            hardware=HardwareProfile(memory_mb=4096), created_at=now, parents=(task_cid,),
        ).sign(self.identity)  # fmt: skip
        self.node.publish("offers", offer)
        self.attacked.set()

    def received(self) -> list[bytes]:
        """The bytes of every object this peer was delivered (gossip and sync)."""
        return [data for _topic, data, _t in self.node.events()]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_outsider_cannot_consume_the_reveal_and_sees_nothing_private(tmp_path: Path) -> None:
    workers: list[WorkerProcess] = []
    with Mesh.join(data_dir=tmp_path / "node", policy=POLICY) as mesh:
        outsider = Outsider(tmp_path / "outsider", mesh.net.addrs[0], mesh.node.authority.did)
        try:
            for i in range(3):
                workers.append(
                    spawn_worker(
                        tmp_path / f"w{i}", bootstrap=mesh.net.addrs[0],
                        authority=mesh.node.authority.did, federation=mesh.node.federation,
                    )
                )  # fmt: skip

            def bonded() -> int:
                stakes = mesh.node.books_tables().get("stakes", {})
                return sum(1 for s in stakes.values() if s["bonded"] >= 200)

            wait_until(lambda: bonded() >= 3, 120, "three funded and bonded worker peers")
            wait_until(lambda: len(outsider.node.peers()) >= 1, 30, "the outsider connected")
            wasm = (WASM / "sha256.wasm").read_bytes()
            data = b"the honest worker's input"
            r = mesh.publish(wasm, data, verifiers=2).result(timeout=120)
            wait_until(outsider.attacked.is_set, 30, "the outsider's attack")
            assert r.outcome == "Accepted", mesh.rejections()
            assert r.output == WasmExecutor().run(wasm, data).output
            worker = r.receipt.worker
            assert worker in {w.did for w in workers}
            paid = {p.account: p.amount for p in r.settlement.payouts if p.role == "worker"}
            assert paid.get(worker, 0) > 0
            stakes = mesh.node.books_tables()["stakes"]
            assert stakes[worker]["bonded"] == 200  # not slashed as a no-show
            assert not [e for e in mesh.node.ledger_events() if isinstance(e, StakeSlashed)]

            backend = mesh.node.backend
            ignored = wait_until(lambda: dict(backend.ignored), 10, "the attack to be counted")
            assert ignored.get("receipt in the clear (reveals travel sealed)", 0) >= 1
            assert ignored.get("reveal nobody asked this party for", 0) >= 1
            assert ignored.get("verdict in the clear (verdicts travel sealed)", 0) >= 1
            assert ignored.get("verdict nobody asked this party for", 0) >= 1
            assert sum(n for k, n in ignored.items() if "offer" in k) >= 1

            # what the outsider saw, grepped for the task's private bytes
            private = [r.receipt.salt, bytes(r.receipt.cid), r.output]
            private += [v.salt for v in r.verifications] + [bytes(v.cid) for v in r.verifications]
            received = outsider.received()
            assert received, "the outsider was delivered nothing at all"
            for blob in received:
                obj = decode_object(blob)
                if isinstance(obj, ExecutionReceipt | VerificationReceipt):
                    assert obj.signer == outsider.identity.did, f"saw {type(obj).__name__}"
                for secret in private:
                    assert secret not in blob
            assert mesh.node.verify_ledger().ok
        finally:
            outsider.node.close()
            for w in workers:
                w.stop()
