"""AuthorityNode's public face: submit (the one way in), subscribe, rejections, snapshot."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

import meshbench as mb
from meshbench.core.protocol import Faucet
from meshbench.runtime.clock import ManualClock
from meshbench.runtime.mesh import Mesh
from meshbench.runtime.node import NodeSnapshot, Rejections
from meshbench.testing.factories import make_identity


@pytest.fixture
def mesh(tmp_path: Path) -> Mesh:
    with Mesh.in_process(workers=2, data_dir=tmp_path, clock=ManualClock()) as m:
        yield m


def test_submit_takes_objects_bytes_and_stimuli(mesh: Mesh) -> None:
    node, alice = mesh.node, make_identity(7).did
    node.submit(Faucet(account=alice, amount=30, memo="test"))
    assert node.balance(alice) == 30
    info = mesh.node.backend.agents[next(iter(mesh.node.backend.agents))].peer_info(
        node.clock() + 1
    )
    node.submit(info.encode())  # as bytes: decoded and checked
    assert node.snapshot().peers == tuple(sorted(mesh.node.backend.agents))


def test_a_refused_submission_raises_and_changes_nothing(mesh: Mesh) -> None:
    node = mesh.node
    before = node.books_tables()
    with pytest.raises(mb.MeshError):
        node.submit(b"garbled bytes")
    with pytest.raises(mb.ProtocolError, match="positive"):
        node.submit(Faucet(account=make_identity(7).did, amount=0))
    assert node.books_tables() == before
    assert len(node.rejections) == 0  # raised to the caller, not recorded


def test_without_wait_refusals_are_recorded_read_only(mesh: Mesh) -> None:
    node = mesh.node
    node.submit(b"garbled bytes", wait=False)
    node.call(lambda: None)  # the queue is FIFO: the submission was handled before this
    rejections = node.rejections
    assert isinstance(rejections, Rejections) and len(rejections) == 1
    assert rejections[0].what == "13 bytes" and isinstance(rejections[0].error, mb.MeshError)
    assert not hasattr(rejections, "append")


def test_every_item_of_a_long_queue_is_handled(mesh: Mesh) -> None:
    """The driver handles what is queued in bursts of 256; it used to take a 257th item off
    the queue and drop it (one submission, worker answer or call lost in every 256)."""
    node, bob = mesh.node, make_identity(11).did
    gate = threading.Event()
    node._queue.put(lambda: gate.wait(10))  # hold the driver until all are queued
    for _ in range(1_000):
        node.submit(Faucet(account=bob, amount=1, memo="one of many"), wait=False)
    gate.set()
    node.call(lambda: None)
    assert node.balance(bob) == 1_000


def test_a_node_keeps_its_newest_refusals_without_their_frames_and_counts_them_all(
    mesh: Mesh,
) -> None:
    """A soak refused thousands of offers (worker queues full): each refusal was kept for
    good, with its traceback, whose frames held the refused offer's task record long after
    the task left memory (the authority's memory grew by about 1 KB a task)."""
    from meshbench.runtime.node import REJECTIONS_KEPT

    node = mesh.node
    for i in range(REJECTIONS_KEPT + 5):
        node.submit(b"garbled %d" % i, wait=False)
    node.call(lambda: None)
    rejections = node.rejections
    assert len(rejections) == REJECTIONS_KEPT and rejections.total == REJECTIONS_KEPT + 5
    assert rejections[-1].what == f"{len(b'garbled %d' % (REJECTIONS_KEPT + 4))} bytes"
    assert all(r.error.__traceback__ is None for r in rejections)


def test_reads_of_the_books_do_not_count_the_ledger(mesh: Mesh) -> None:
    """``if self._ledger`` called ``Ledger.__len__``, a count over every event: each
    publication (its bonded-workers check) and each balance read grew with history (a soak
    took a third longer per 10,000 tasks at 50,000). Reads of the books read no events."""
    node = mesh.node
    db = node._ledger._db
    statements: list[str] = []
    node.call(lambda: db.set_trace_callback(statements.append))
    try:
        assert node.bonded_workers(1) >= 2
        assert node.balance(mesh.publisher.did) > 0
        assert node.books_tables()["stakes"]
    finally:
        node.call(lambda: db.set_trace_callback(None))
    # (each burst of the driver opens and commits its batch; nothing reads the events)
    assert not [
        s
        for s in statements
        if "COUNT" in s.upper() or ("FROM EVENTS" in s.upper() and "MAX(SEQ)" not in s.upper())
    ], statements
    assert node.call(lambda: bool(node._ledger) and len(node._ledger) > 0)  # len counts


def test_listeners_subscribe_and_unsubscribe(mesh: Mesh) -> None:
    node, seen = mesh.node, []
    unsubscribe = node.subscribe(seen.append)
    node.submit(Faucet(account=make_identity(8).did, amount=5))
    assert [type(e).__name__ for e in seen] == ["Mint"]
    unsubscribe()
    assert not node.subscribed(seen.append)
    node.submit(Faucet(account=make_identity(8).did, amount=5))
    assert len(seen) == 1


def test_a_snapshot_is_an_independent_copy(mesh: Mesh) -> None:
    node = mesh.node
    snap = node.snapshot()
    assert isinstance(snap, NodeSnapshot) and snap.at_ms == node.clock()
    assert snap.balance(mesh.publisher.did) == node.balance(mesh.publisher.did)
    node.submit(Faucet(account=mesh.publisher.did, amount=1))
    assert node.snapshot().balance(mesh.publisher.did) == snap.balance(mesh.publisher.did) + 1


def test_a_blocking_submit_from_the_driver_is_refused(mesh: Mesh) -> None:
    node, errors = mesh.node, []

    def listener(_ev: object) -> None:
        if threading.current_thread().name == "mesh-node" and not errors:
            try:
                node.submit(Faucet(account=make_identity(9).did, amount=1))
            except mb.ProtocolError as exc:
                errors.append(exc)

    node.subscribe(listener)
    node.submit(Faucet(account=make_identity(9).did, amount=2))
    assert len(errors) == 1 and "wait=False" in str(errors[0])
    assert node.balance(make_identity(9).did) == 2


def test_an_offer_round_with_no_offer_is_asked_again(tmp_path: Path) -> None:
    """A broadcast whose every answer is lost (each worker's call failed) is sent again, so
    the task is offered for, rather than left published with no offer until its deadline."""
    policy = {"verification_quorum": {"minimum_verifiers": 1}}
    with Mesh.in_process(workers=3, data_dir=tmp_path, clock=ManualClock(), policy=policy) as m:
        backend, rounds = m.node.backend, []
        ask = backend.request_offers

        def lossy(task, blobs, deliver):  # the first round's answers are all lost
            rounds.append(task.cid)
            if len(rounds) == 1:
                for _ in range(backend.worker_count()):
                    deliver(None)
            else:
                ask(task, blobs, deliver)

        backend.request_offers = lossy
        hello = Path(__file__).resolve().parents[2] / "datasets" / "wasm" / "hello.wasm"
        handle = m.publish(hello.read_bytes(), b"", verifiers=1)
        assert handle.result(timeout=60).accepted
        assert rounds == [handle.cid, handle.cid]
