"""What the Dask mesh does, over libp2p: private inputs, a worker peer that restarts, late
joiners served from the authority's ledger (content-validated GPU tasks over libp2p:
``extensions/meshbench-cuda/tests/test_cuda_p2p.py``).

The authority runs in this process; worker peers are separate processes on 127.0.0.1.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from meshbench.core.events import RewardDistributed, StakeBonded
from meshbench.core.identity import Identity
from meshbench.core.model import decode_object
from meshbench.exec.wasm import WasmExecutor
from meshbench.net.node import Libp2pNode
from meshbench.runtime.mesh import Mesh
from meshbench.store.blobs import BlobStore
from meshbench.testing.netmesh import WorkerProcess, spawn_worker, wait_until

WASM = Path(__file__).resolve().parents[2] / "datasets" / "wasm"
POLICY = {"verification_quorum": {"minimum_verifiers": 1}, "selection": {"offer_window_ms": 3000}}


def _bonded(mesh: Mesh) -> dict[str, int]:
    return {a: s["bonded"] for a, s in mesh.node.books_tables().get("stakes", {}).items()}


def _joined(mesh: Mesh, did: str) -> bool:
    return any(p.did == did and "tasks" in p.topics for p in mesh.net.peers())


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_private_input_restarts_and_late_joiner(tmp_path: Path) -> None:
    workers: list[WorkerProcess] = []
    late: Libp2pNode | None = None
    with Mesh.join(data_dir=tmp_path / "node", policy=POLICY) as mesh:
        addr, auth, fed = mesh.net.addrs[0], mesh.node.authority.did, mesh.node.federation
        try:
            for i in range(2):
                workers.append(
                    spawn_worker(tmp_path / f"w{i}", bootstrap=addr, authority=auth, federation=fed)
                )
            wait_until(
                lambda: sum(b >= 200 for b in _bonded(mesh).values()) >= 2,
                120,
                "two bonded workers",
            )
            wasm = (WASM / "sha256.wasm").read_bytes()
            secret = b"a private input nobody but the chosen two may read"
            r = mesh.publish(wasm, secret, verifiers=1, private=True).result(timeout=120)
            assert r.outcome == "Accepted", mesh.rejections()
            assert r.output == WasmExecutor().run(wasm, secret).output
            assert {r.receipt.worker, r.verifications[0].verifier} == {w.did for w in workers}

            # worker 0 is SIGKILLed and comes back: same key, same stake, not bonded twice
            before = _bonded(mesh)
            old = workers[0]
            workers[0] = old.restart()
            assert workers[0].did == old.did
            wait_until(lambda: _joined(mesh, old.did), 60, "the restarted worker to rejoin")
            data = b"after the restart"
            r2 = mesh.publish(wasm, data, verifiers=1).result(timeout=120)
            assert r2.outcome == "Accepted", mesh.rejections()
            assert r2.output == WasmExecutor().run(wasm, data).output
            assert {r2.receipt.worker, r2.verifications[0].verifier} == {w.did for w in workers}
            assert _bonded(mesh)[old.did] == before[old.did] == 200
            bonds = [e for e in mesh.node.ledger_events() if isinstance(e, StakeBonded)]
            assert sum(e.account == old.did for e in bonds) == 1

            # a peer joining now is served from the ledger: settlements were never gossiped
            late = Libp2pNode(
                Identity.generate(), BlobStore(tmp_path / "late"), bootstrap=[addr], mdns=False
            ).start()

            def settlements() -> set[object]:
                objs = [decode_object(d) for _t, d, _at in late.events()]
                return {o.task_cid for o in objs if isinstance(o, RewardDistributed)}

            assert wait_until(settlements, 60, "the late joiner's sync") == {
                r.task_cid,
                r2.task_cid,
            }
            for _t, blob, _at in late.events():  # the private input never travelled readable
                assert secret not in blob
            assert mesh.node.verify_ledger().ok
        finally:
            if late is not None:
                late.close()
            for w in workers:
                w.stop()
