"""Issue 22: a peer that missed its last assignment is drawn after every present peer.

A dead machine that stays bonded used to be drawn as a verifier again and again, each time
leaving the task short of a verdict (and a no-show slash) until its stake fell below the
minimum. Its no-show slash now marks it absent in the books (folded, so the auditor's and a
rebuild's books agree); anything it signs afterwards, or :data:`selection.ABSENT_FOR_MS` of
authority time, brings it back.
"""

from __future__ import annotations

import msgspec
import pytest

from meshbench.core import selection
from meshbench.core.books import Books
from meshbench.core.errors import InvalidSignature
from meshbench.core.events import StakeSlashed
from meshbench.core.identity import Identity
from meshbench.testing.protocol import ProtocolHarness, output_cid

GOOD = output_cid("good")


def _miss_one(h: ProtocolHarness, worker: Identity) -> str:
    """A task whose first drawn verifier never commits; the others and the dispute round
    drawn for the missing verdict (if anyone is left to draw) confirm the result: it is the
    only no-show."""
    task, a = h.publish_and_assign(worker=worker)
    silent, *others = a.verifiers
    h.feed(h.commit(task, a.worker, GOOD))
    for v in others:
        h.feed(h.commit(task, v, GOOD))
    h.fire(task, "verification")  # the commit phase closes without it
    receipt = h.receipt(task, a.worker, GOOD)
    h.feed(receipt)
    for v in others:
        h.feed(h.verdict(task, v, GOOD, receipt))
    disputed = h.state.state_of(task.cid) == "Disputed"
    extra = h.state.tasks[task.cid].round_verifiers if disputed else ()
    for v in extra:
        h.feed(h.commit(task, v, GOOD))
    for v in extra:
        h.feed(h.verdict(task, v, GOOD, receipt))
    assert h.state.books.task(task.cid)["outcome"] is not None  # settled
    assert [s.account for s in h.appended(StakeSlashed)] == [silent]
    assert (silent, "no_show") in {(s.account, s.offence) for s in h.appended(StakeSlashed)}
    return silent


def test_a_no_show_verifier_is_not_drawn_again_while_present_peers_suffice():
    h = ProtocolHarness(peers=8)
    silent = _miss_one(h, h.peers[0])
    at = h.state.books.get("absent", silent)
    assert at == h.now
    for i in range(12):  # 3 of 6 candidates each time: drawn by chance with p = 1 - 2**-12
        task, a = h.publish_and_assign(worker=h.peers[1 + i % 2])
        assert silent not in a.verifiers
        h.execute(task, dict.fromkeys(a.verifiers, GOOD), worker_output=GOOD)
    # the auditor's books and a rebuild from the ledger agree on who is absent
    rebuilt = Books(h.authority.did)
    for e in h.appended():
        rebuilt.apply(e)
    assert rebuilt.table("absent") == h.state.books.table("absent") == {silent: at}
    assert not h.audit().problems
    h.state.books.check_conservation()


def test_a_peer_that_signs_again_is_back_and_another_cannot_bring_it_back():
    h = ProtocolHarness(peers=8)
    silent = _miss_one(h, h.peers[0])
    task = h.task()
    h.feed(task)
    impostor = next(p for p in h.peers if p.did != silent)
    own = h.offer(task, h.by_did[silent])
    forged = msgspec.structs.replace(  # in the absent peer's name, signed by somebody else
        own, signature=impostor.sign(own.signing_payload())
    )
    with pytest.raises(InvalidSignature):
        h.feed(forged)
    assert h.state.books.get("absent", silent) is not None
    h.feed(h.offer(task, h.by_did[silent]))  # its own offer: it is alive
    assert h.state.books.get("absent", silent) is None


def test_an_absent_peer_is_still_drawn_when_too_few_others_are_and_absence_expires():
    h = ProtocolHarness(peers=4)  # a worker and exactly three verifiers
    silent = _miss_one(h, h.peers[0])
    _, a = h.publish_and_assign(worker=h.peers[0])
    assert silent in a.verifiers  # better a peer that may be back than a task that waits
    absent = h.state.books.table("absent")
    assert selection.absent_peers(absent, h.now) == {silent}
    assert selection.absent_peers(absent, h.now + selection.ABSENT_FOR_MS) == frozenset()


def test_draw_orders_absent_peers_after_present_ones_and_is_otherwise_the_keyed_draw():
    peers = [f"did:key:z{i}" for i in range(10)]
    plain = selection.draw_verifiers(b"seed", peers, 10)
    absent = frozenset(plain[:3])
    drawn = selection.draw_verifiers(b"seed", peers, 10, absent)
    assert drawn == [*plain[3:], *plain[:3]]
    assert selection.draw_verifiers(b"seed", peers, 4, absent) == plain[3:7]
