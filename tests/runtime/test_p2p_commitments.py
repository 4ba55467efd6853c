"""A libp2p worker peer SIGKILLed after it committed comes back and opens its commitment
(issue 22): the authority (this process, :meth:`Mesh.join` on 127.0.0.1) and three worker
peers as separate processes (``python -m meshbench.runtime.p2p worker``).

The kill is placed deterministically: the authority's backend is wrapped so that the first
reveal (or verdict) request it is told to send first SIGKILLs the process of the party it
goes to, then starts that peer again on its data dir (same key, its commitments in
``commitments/``), and sends the request, which the dead peer misses. When the peer is
back the backend sends it again (or gossip delivers it on rejoining); the restarted peer
answers from its store, the task is accepted, the restarted party is paid and nobody is
slashed. About 20 s.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from meshbench.core.events import TaskExpired
from meshbench.runtime.mesh import Mesh
from meshbench.testing.netmesh import WorkerProcess, spawn_worker

WASM = (Path(__file__).resolve().parents[2] / "datasets" / "wasm" / "sha256.wasm").read_bytes()
#: longer than a peer's restart (its imports) on a loaded machine: the restarted party is
#: back in time to answer
VERIFICATION_TIMEOUT_S = 45
POLICY = {
    "scheduling": {"task_timeout": 30},
    "verification_quorum": {"minimum_verifiers": 1, "verification_timeout": VERIFICATION_TIMEOUT_S},
    "selection": {"offer_window_ms": 1000},
}


class _Peers:
    """The worker peer processes, by did; :meth:`kill_before` arms one request kind."""

    def __init__(self, mesh: Mesh, root: Path) -> None:
        self.mesh = mesh
        addr, auth, fed = mesh.net.addrs[0], mesh.node.authority.did, mesh.node.federation
        self.procs: dict[str, WorkerProcess] = {}
        for i in range(3):
            p = spawn_worker(root / f"w{i}", bootstrap=addr, authority=auth, federation=fed)
            self.procs[p.did] = p
        self.restarted: list[threading.Thread] = []

    def kill_before(self, step: str) -> list[str]:
        """The first ``step`` request (``reveal`` or ``verdict``) the backend sends kills
        its party first and starts it again (in the background); returns the killed did."""
        backend = self.mesh.node.backend
        original: Callable[..., Any] = getattr(backend, step)
        killed: list[str] = []

        def armed(did: str, *args: Any, **kw: Any) -> Any:
            if not killed:
                killed.append(did)
                self.procs[did].kill()  # SIGKILL: its commitment was made, not yet opened
                t = threading.Thread(target=self._restart, args=(did,), daemon=True)
                t.start()
                self.restarted.append(t)
                setattr(backend, step, original)  # once
            return original(did, *args, **kw)

        setattr(backend, step, armed)
        return killed

    def _restart(self, did: str) -> None:
        self.procs[did] = self.procs[did].restart()

    def close(self) -> None:
        for t in self.restarted:
            t.join(90)
        for p in self.procs.values():
            p.kill()


@pytest.fixture(scope="module")
def peers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Peers]:
    root = tmp_path_factory.mktemp("p2p-commitments")
    with Mesh.join(data_dir=root / "authority", policy=POLICY) as mesh:
        peers = _Peers(mesh, root)
        try:
            mesh.wait_for_workers(3, timeout=120)
            yield peers
        finally:
            peers.close()


@pytest.mark.slow
@pytest.mark.timeout(200)
@pytest.mark.parametrize("step", ["reveal", "verdict"])
def test_a_peer_killed_after_committing_comes_back_and_opens_it(peers: _Peers, step: str) -> None:
    mesh = peers.mesh
    killed = peers.kill_before(step)
    started = time.monotonic()
    handle = mesh.publish(WASM, f"killed before its {step}".encode(), fee=200, verifiers=1)
    result = handle.result(timeout=VERIFICATION_TIMEOUT_S + 60)
    took = time.monotonic() - started
    assert killed, f"no {step} request was sent"
    (lost,) = killed
    assert result.outcome == "Accepted", mesh.rejections()
    assert took < VERIFICATION_TIMEOUT_S, took  # answered, not timed out
    if step == "reveal":
        assert result.receipt.worker == lost
    else:
        assert lost in {v.verifier for v in result.verifications}
    # the request went out after the kill: only the restarted process, opening the
    # commitment from its store, could answer it (the backend sent it again when the peer
    # came back, or gossip delivered it to the peer on rejoining)
    resent = mesh.node.backend.resent[step]
    expired = [
        e for e in mesh.node.ledger_events()
        if isinstance(e, TaskExpired) and e.task_cid == handle.cid
    ]  # fmt: skip
    assert expired == []
    assert mesh.slashes().filter(pl.col("task_cid") == str(handle.cid)).is_empty()
    payouts = mesh.payouts().filter(pl.col("task_cid") == str(handle.cid))
    assert lost in payouts["account"].to_list()
    assert payouts["amount"].sum() == handle.task.fee
    report = mesh.node.verify_ledger()
    assert report.ok and report.tokens_minted == report.tokens_held
    print(f"killed before its {step}: Accepted in {took:.1f} s ({resent} sent again)")
