"""Selection (eligibility, score, fair queueing), verifier draws and the participant side."""

from __future__ import annotations

import pytest

from meshbench.core import selection
from meshbench.core.errors import ProtocolError
from meshbench.core.participant import Participant
from meshbench.core.policy import MeshPolicy, SchedulingParams, SelectionRules
from meshbench.core.views import OpenMembership
from meshbench.testing.factories import make_identity
from meshbench.testing.protocol import ProtocolHarness, output_cid


def test_higher_reputation_wins_at_equal_cost():
    h = ProtocolHarness()
    task = h.task()
    a, b = h.offer(task, h.peers[0], cost=50), h.offer(task, h.peers[1], cost=50)
    ranked = selection.rank_offers(
        task,
        [a, b],
        MeshPolicy(),
        reputation_of=lambda d: 0.9 if d == h.peers[1].did else 0.3,
        bond_of=lambda d: 200,
        load_of=lambda d: 0,
    )
    assert ranked[0] is b


def test_fair_queueing_spreads_work_and_the_queue_has_a_limit():
    h = ProtocolHarness()
    task = h.task()
    a, b = h.offer(task, h.peers[0], cost=20), h.offer(task, h.peers[1], cost=60)
    policy = MeshPolicy()
    busy = {h.peers[0].did: 5}
    ranked = selection.rank_offers(
        task,
        [a, b],
        policy,
        reputation_of=lambda d: 0.5,
        bond_of=lambda d: 200,
        load_of=lambda d: busy.get(d, 0),
    )
    assert ranked[0] is b  # cheaper, but already holds five tasks
    full = MeshPolicy(scheduling=SchedulingParams(max_queue_length=5))
    problems = selection.offer_problems(
        task, a, full, OpenMembership(), bond=200, load=5, now_ms=h.now
    )
    assert any("queue is full" in p for p in problems)


def test_verifier_draw_is_deterministic_and_excludes_nobody_it_should_not():
    cands = [make_identity(i).did for i in range(10)]
    d1 = selection.draw_verifiers(b"seed", cands, 3)
    assert d1 == selection.draw_verifiers(b"seed", cands, 3)
    assert d1 != selection.draw_verifiers(b"other", cands, 3)
    assert len(set(d1)) == 3 and set(d1) <= set(cands)
    assert len(selection.draw_verifiers(b"seed", cands[:2], 3)) == 2


def test_distinct_verifier_federation():
    policy = MeshPolicy(selection=SelectionRules(distinct_verifier_federation=True))
    h = ProtocolHarness(policy=policy)
    task = h.task()
    h.feed(task)
    h.feed(h.offer(task, h.peers[0]))
    h.advance(5_000)
    h.fire(task, "offers")  # every peer is in the worker's federation: none may verify
    assert h.state.state_of(task.cid) == "Offered"  # waits for other offers
    h.now = task.deadline
    h.fire(task, "deadline")
    assert h.state.books.escrow(task.cid)["state"] == "Expired"


def test_participant_objects_pass_the_authority_checks():
    h = ProtocolHarness()
    task, a = h.publish_and_assign()
    nodes = {p.did: Participant(p) for p in h.peers}
    good = output_cid("good")
    h.feed(nodes[a.worker].commit(task.cid, good, h.now))
    for v in a.verifiers:
        h.feed(nodes[v].commit(task.cid, good, h.now))
    receipt = nodes[a.worker].reveal(task.cid, h.now)
    h.feed(receipt)
    for v in a.verifiers:
        h.feed(nodes[v].verdict(task.cid, receipt, h.now))
    assert h.state.books.task(task.cid)["outcome"] == "Accepted"
    with pytest.raises(ProtocolError):
        nodes[a.worker].commit(task.cid, good, h.now)  # once per task
    with pytest.raises(ProtocolError):
        Participant(make_identity(77)).reveal(task.cid, h.now)
