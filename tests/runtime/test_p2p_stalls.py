"""A stalled DHT delays no protocol step over libp2p (found by the partition test).

With peers cut off, a provider announcement waits seconds on each of them; the authority
used to announce a task's blobs before gossiping the task, and a worker its sealed output
before sending its reveal, so that every request queued behind them timed out and honest
parties were slashed. Now answers go first and announcements after, on their own thread,
and blobs are fetched from the party known to hold them (no provider lookup). A transport
whose ``provide`` blocks until released stands for the stalled DHT.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from meshbench.core.events import WorkRequest
from meshbench.core.types import HardwareProfile, ResultCommitment
from meshbench.net.keys import peer_id_from_did
from meshbench.runtime.agent import WorkerAgent
from meshbench.runtime.clock import wall_clock_ms
from meshbench.runtime.p2p import P2PBackend, WorkerService
from meshbench.store.blobs import BlobStore
from meshbench.store.sealing import SealedMessage
from meshbench.testing.factories import make_identity, make_task

WASM = (Path(__file__).resolve().parents[2] / "datasets" / "wasm" / "sha256.wasm").read_bytes()


class _Sub:
    def cancel(self) -> None:
        pass


class StalledDHT:
    """A transport whose provider announcements hang until :meth:`release`."""

    def __init__(self, root: Path) -> None:
        self.store = BlobStore(root)
        self.published: list[tuple[str, Any]] = []
        self.fetched_from: list[tuple[str, tuple[str, ...]]] = []
        self.changed = threading.Condition()
        self._released = threading.Event()
        self.callbacks: dict[str, Any] = {}

    def subscribe(self, topic: str, callback: Any) -> _Sub:
        self.callbacks[topic] = callback
        return _Sub()

    def publish(self, topic: str, obj: Any) -> bool:
        with self.changed:
            self.published.append((topic, obj))
            self.changed.notify_all()
        return True

    def provide(self, cid: Any) -> None:
        self._released.wait(30)

    def release(self) -> None:
        self._released.set()

    def fetch_blob(self, cid: Any, *, peers: Any = (), timeout: float = 300) -> Path:
        self.fetched_from.append((str(cid), tuple(peers)))
        return self.store.path(cid)

    def wait_for(self, what: type, timeout: float = 10) -> Any:
        def found() -> Any:
            return next((o for _t, o in self.published if isinstance(o, what)), None)

        with self.changed:
            self.changed.wait_for(found, timeout)
            return found()

    @property
    def addrs(self) -> list[str]:
        return []


def test_the_authority_gossips_a_task_while_its_blobs_announcement_hangs(tmp_path) -> None:
    authority = make_identity(1)
    net = StalledDHT(tmp_path)
    backend = P2PBackend(net, authority)
    try:
        task = make_task(make_identity(2), wasm=WASM, created_at=wall_clock_ms(), sign=True)
        backend.request_offers(task, (WASM, b"hello world", None), lambda _data: None)
        assert net.wait_for(type(task)) == task  # the DHT is still stalled
    finally:
        net.release()
        backend.close()


def test_a_worker_fetches_from_the_authority_and_reveals_before_announcing(tmp_path) -> None:
    authority, federation = make_identity(1), make_identity(0)
    net = StalledDHT(tmp_path)
    agent = WorkerAgent(make_identity(3), federation.did, HardwareProfile(memory_mb=4096))
    service = WorkerService(agent, net, authority=authority.did)
    try:
        data = b"hello world"
        task = make_task(make_identity(2), wasm=WASM, data=data, created_at=wall_clock_ms())
        task = task.sign(make_identity(2))
        net.store.put(WASM)
        net.store.put(data)
        net.callbacks["tasks"](task, "origin")

        def ask(action: str) -> None:
            req = WorkRequest(
                authority=authority.did, task_cid=task.cid, target=agent.did,
                action=action, timestamp=wall_clock_ms(),  # type: ignore[arg-type]
            ).sign(authority)  # fmt: skip
            net.callbacks["tasks"](req, "origin")

        ask("execute")
        assert net.wait_for(ResultCommitment) is not None
        holder = (str(peer_id_from_did(authority.did)),)
        assert [peers for _cid, peers in net.fetched_from] == [holder, holder]
        ask("reveal")
        sealed = net.wait_for(SealedMessage)  # sent while its output's announcement hangs
        assert sealed is not None and sealed.recipient == authority.did
    finally:
        net.release()
        service.close()


def test_a_request_for_a_task_not_seen_yet_holds_no_thread_and_is_done_when_it_comes(
    tmp_path,
) -> None:
    """A request can come before its task: a peer restarted between the two, or one handed
    old messages again as it rejoins (for tasks long settled). It used to hold one of the
    peer's two threads for a minute waiting for the task, so two such requests left the peer
    deaf to all else (a libp2p crash run: requests served 20-100 s late, parties slashed).
    Now it is parked: the next request is served at once, and the parked one when its task
    comes."""
    authority, federation = make_identity(1), make_identity(0)
    net = StalledDHT(tmp_path)
    net.release()
    agent = WorkerAgent(make_identity(3), federation.did, HardwareProfile(memory_mb=4096))
    service = WorkerService(agent, net, authority=authority.did)

    def request(task: Any, action: str = "execute") -> WorkRequest:
        return WorkRequest(
            authority=authority.did, task_cid=task.cid, target=agent.did,
            action=action, timestamp=wall_clock_ms(),  # type: ignore[arg-type]
        ).sign(authority)  # fmt: skip

    def commitments() -> set[Any]:
        return {o.task_cid for _t, o in net.published if isinstance(o, ResultCommitment)}

    try:
        net.store.put(WASM)
        tasks = []
        for i in range(3):
            data = f"input {i}".encode()
            net.store.put(data)
            task = make_task(make_identity(2), wasm=WASM, data=data, created_at=wall_clock_ms())
            tasks.append(task.sign(make_identity(2)))
        unseen, also_unseen, known = tasks
        net.callbacks["tasks"](known, "origin")
        for t in (unseen, also_unseen, known):  # two that would each have held a thread
            net.callbacks["tasks"](request(t), "origin")
        with net.changed:
            assert net.changed.wait_for(lambda: known.cid in commitments(), 10)
        assert commitments() == {known.cid}
        net.callbacks["tasks"](unseen, "origin")  # its task comes: the parked request runs
        with net.changed:
            assert net.changed.wait_for(lambda: unseen.cid in commitments(), 10)
        assert also_unseen.cid not in commitments()
    finally:
        service.close()


def test_a_worker_peer_forgets_the_tasks_past_their_deadline(tmp_path) -> None:
    """The tasks a peer has seen leave its memory once past their deadline (a long-lived
    peer held every task it ever saw)."""
    authority, federation = make_identity(1), make_identity(0)
    net = StalledDHT(tmp_path)
    net.release()
    agent = WorkerAgent(make_identity(3), federation.did, HardwareProfile(memory_mb=4096))
    service = WorkerService(agent, net, authority=authority.did)
    try:
        old = [make_task(make_identity(2), nonce=i, sign=True) for i in range(255)]  # 2023
        for t in old:
            net.callbacks["tasks"](t, "origin")
        assert service.task(old[0].cid) == old[0]  # fewer than a sweep's worth: kept
        live = make_task(make_identity(2), created_at=wall_clock_ms(), sign=True)
        net.callbacks["tasks"](live, "origin")
        assert all(service.task(t.cid) is None for t in old)
        assert service.task(live.cid) == live
    finally:
        service.close()
