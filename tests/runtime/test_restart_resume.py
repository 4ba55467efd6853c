"""A restarted authority resumes its tasks in flight: requests re-sent once the backend knows
its workers, and a worker asked again for what it already answered answers alike."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from meshbench.core.errors import NetworkError, ProtocolError
from meshbench.core.events import RewardDistributed
from meshbench.core.types import TaskIntent
from meshbench.runtime.agent import WorkerAgent
from meshbench.runtime.backends import InProcessBackend
from meshbench.runtime.clock import ManualClock
from meshbench.runtime.mesh import Mesh
from meshbench.runtime.node import AuthorityNode
from meshbench.store.keystore import Keystore
from meshbench.testing.factories import make_identity, make_task
from meshbench.testing.faults import HARDWARE

WASM = (Path(__file__).resolve().parents[2] / "datasets" / "wasm" / "sha256.wasm").read_bytes()
POLICY = {"verification_quorum": {"minimum_verifiers": 2}}


class _Mute(WorkerAgent):
    """Offers, then never delivers a result (its authority dies before it would)."""

    def execute(self, task: TaskIntent, wasm: bytes, data: bytes, now_ms: int, **kw: Any) -> Any:
        raise NetworkError("the authority died before this answer arrived")


def _assigned_then_closed(root: Path, clock: ManualClock) -> str:
    """Publish one task to mute workers and stop the authority while it is Assigned."""
    mute = lambda identity, federation, i: _Mute(identity, federation, HARDWARE)  # noqa: E731
    with Mesh.in_process(
        workers=3, data_dir=root, policy=POLICY, clock=clock, agent_factory=mute
    ) as mesh:
        handle = mesh.publish(WASM, b"in flight", fee=200, verifiers=2)
        assert handle.state == "Assigned"
        return str(handle.cid)


def test_a_task_in_flight_resumes_after_a_restart_without_waiting_for_a_timeout(tmp_path):
    clock = ManualClock()
    cid = _assigned_then_closed(tmp_path, clock)
    clock.advance(1_000)  # restarted a second later: far inside every protocol timeout
    settled = threading.Event()

    def on_event(ev: Any) -> None:
        if isinstance(ev, RewardDistributed) and str(ev.task_cid) == cid:
            settled.set()

    # the same identities, honest now; the clock does not move again: no timer fires
    with Mesh.in_process(workers=3, data_dir=tmp_path, policy=POLICY, clock=clock) as mesh:
        mesh.node.subscribe(on_event)
        assert settled.wait(30) or mesh.node.books_tables()["tasks"][cid]["state"] == "Settled"
        row = mesh.node.books_tables()["tasks"][cid]
        assert row["state"] == "Settled" and row["outcome"] == "Accepted"
        assert mesh.node.verify_ledger().ok


class _Recording(InProcessBackend):
    """The in-process backend, recording which worker requests it was given."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls: list[str] = []

    def execute(self, did: str, task: TaskIntent, blobs: Any, role: str, deliver: Any) -> None:
        self.calls.append(role)
        super().execute(did, task, blobs, role, deliver)


def test_a_restarted_node_holds_worker_requests_until_resume(tmp_path):
    clock = ManualClock()
    _assigned_then_closed(tmp_path, clock)
    keys = Keystore(tmp_path / "keys")
    federation = keys.load_or_create("federation").did
    agents = [
        WorkerAgent(keys.load_or_create(f"worker-{i}"), federation, HARDWARE) for i in range(3)
    ]
    backend = _Recording(agents, clock=clock)
    node = AuthorityNode(
        tmp_path, backend, authority=keys.load_or_create("node"), federation=federation,
        clock=clock,
    )  # fmt: skip
    node.start(resume=False)
    try:
        node.call(lambda: None)
        assert backend.calls == []  # held: the backend might not know its workers yet
        assert node.resume() == 3  # the execution and two verifications, sent again
        assert sorted(backend.calls) == ["verifier", "verifier", "worker"]
        assert node.resume() == 0
    finally:
        node.close()
        backend.close()


def test_a_worker_asked_again_answers_its_reveal_and_verdict_alike():
    agent = WorkerAgent(make_identity(1), "did:key:fed", HARDWARE)
    verifier = WorkerAgent(make_identity(2), "did:key:fed", HARDWARE)
    task = make_task(make_identity(3), wasm=WASM, data=b"x", sign=True)
    agent.execute(task, WASM, b"x", 1, role="worker")
    verifier.execute(task, WASM, b"x", 1, role="verifier")
    first = agent.reveal(task.cid, 2)
    assert agent.reveal(task.cid, 3) == first  # the same receipt and output bytes
    verdict = verifier.verdict(task.cid, first[0], 4)
    assert verifier.verdict(task.cid, first[0], 5) == verdict
    agent.forget(task.cid)
    with pytest.raises(ProtocolError):
        agent.reveal(task.cid, 6)  # forgotten: nothing left to reveal


def test_an_agent_set_up_again_takes_over_its_commitments():
    old = WorkerAgent(make_identity(1), "did:key:fed", HARDWARE)
    task = make_task(make_identity(3), wasm=WASM, data=b"x", sign=True)
    commitment = old.execute(task, WASM, b"x", 1, role="worker")
    new = WorkerAgent(make_identity(1), "did:key:fed", HARDWARE)
    new.take_over(old)
    receipt, _ = new.reveal(task.cid, 2)
    assert receipt.result_commitment == commitment.commitment
    with pytest.raises(ProtocolError):
        WorkerAgent(make_identity(2), "did:key:fed", HARDWARE).take_over(old)


def test_a_restart_after_a_slash_rebonds_only_the_slashed_worker(tmp_path):
    clock = ManualClock()
    policy = {**POLICY, "selection": {"reputation_weight": 0.0}}
    with Mesh.in_process(
        workers=4, data_dir=tmp_path, behaviours={0: "wrong"}, policy=policy, clock=clock
    ) as mesh:
        cheat = mesh.node.backend.agents
        cheat_did = next(d for d, a in cheat.items() if a.behaviour == "wrong")
        for i in range(48):  # until the cheat is chosen as worker and slashed (bounded)
            mesh.publish(WASM, f"t{i}".encode(), fee=200, verifiers=2).result(timeout=30)
            if mesh.node.snapshot().bonded(cheat_did) < 200:
                break
        before = mesh.node.snapshot()
        assert before.bonded(cheat_did) < 200
    clock.advance(1_000)
    with Mesh.in_process(
        workers=4, data_dir=tmp_path, behaviours={0: "wrong"}, policy=policy, clock=clock
    ) as again:
        after = again.node.snapshot()
        for did in after.peers:
            if did == cheat_did:
                assert after.bonded(did) >= 200  # funded and bonded again (demo genesis)
            else:  # the others' stakes and balances are left alone
                assert (after.bonded(did), after.balance(did)) == (
                    before.bonded(did),
                    before.balance(did),
                )
        assert again.node.verify_ledger().ok
