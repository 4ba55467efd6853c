"""Every (state, stimulus) pair of the transition table is exercised by a scenario here."""

from __future__ import annotations

import pytest

from meshbench.core.errors import ProtocolError
from meshbench.core.protocol import TRANSITIONS, AuthorityState, TimeoutFired
from meshbench.testing.protocol import ProtocolHarness, output_cid

GOOD, BAD = output_cid("good"), output_cid("bad")
SEEN: set[tuple[str, str]] = set()


@pytest.fixture(autouse=True)
def record_pairs(monkeypatch):
    original = AuthorityState._dispatch

    def spy(self, rec, kind, event, now):
        SEEN.add((rec.state, kind))  # the books' row: the one task state
        return original(self, rec, kind, event, now)

    monkeypatch.setattr(AuthorityState, "_dispatch", spy)


def _assigned(h: ProtocolHarness):
    return h.publish_and_assign()


def test_deadline_in_every_open_state():
    for stop in ("Published", "Offered", "Assigned", "Executed", "Verifying", "Disputed"):
        h = ProtocolHarness(peers=10)
        task = h.task()
        h.feed(task)
        if stop != "Published":
            h.feed(h.offer(task, h.peers[0]))
        if stop not in ("Published", "Offered"):
            h.advance(5_000)
            h.fire(task, "offers")
            a = h.state.tasks[task.cid].assignment
        if stop in ("Executed", "Verifying", "Disputed"):
            h.feed(h.commit(task, a.worker, GOOD))
        if stop in ("Verifying", "Disputed"):
            for v in a.verifiers:
                h.feed(
                    h.commit(task, v, BAD if stop == "Disputed" and v == a.verifiers[0] else GOOD)
                )
        if stop == "Disputed":
            receipt = h.receipt(task, a.worker, GOOD)
            h.feed(receipt)
            for v in a.verifiers:
                out = BAD if v == a.verifiers[0] else GOOD
                h.feed(h.verdict(task, v, out, receipt))
        assert h.state.state_of(task.cid) == stop
        h.now = task.deadline
        h.fire(task, "deadline")
        assert h.state.state_of(task.cid) == "Settled"
        # before the worker's reveal a deadline expires the task; after it, the verdicts in
        # hand decide (the worker's revealed work is not forfeited: issue 18 item 10)
        revealed = stop == "Disputed"
        want = {"Completed", "Failed"} if revealed else {"Expired"}
        assert h.state.books.escrow(task.cid)["state"] in want
        h.state.books.check_conservation()


def test_verification_timeout_decides_with_the_votes_present():
    h = ProtocolHarness()
    task, a = _assigned(h)
    h.feed(h.commit(task, a.worker, GOOD))
    for v in a.verifiers:
        h.feed(h.commit(task, v, GOOD))
    receipt = h.receipt(task, a.worker, GOOD)
    h.feed(receipt)
    for v in a.verifiers[:2]:
        h.feed(h.verdict(task, v, GOOD, receipt))
    h.advance(15 * 60 * 1000)
    h.fire(task, "verification")  # 2 votes < minimum 3: escalate
    rec = h.state.tasks[task.cid]
    assert rec.state == "Disputed"
    h.advance(15 * 60 * 1000)
    h.fire(task, "verification")  # nobody else answered: decide (no consensus)
    assert h.state.books.task(task.cid)["outcome"] == "NoConsensus"


def test_worker_that_commits_but_never_reveals_is_replaced():
    h = ProtocolHarness()
    task = h.task()
    h.feed(task)
    h.feed(h.offer(task, h.peers[0], cost=20))
    h.feed(h.offer(task, h.peers[1], cost=40))
    h.advance(5_000)
    h.fire(task, "offers")
    a = h.state.tasks[task.cid].assignment
    h.feed(h.commit(task, a.worker, GOOD))
    for v in a.verifiers:
        h.feed(h.commit(task, v, GOOD))
    assert h.state.state_of(task.cid) == "Verifying"
    h.advance(15 * 60 * 1000)
    h.fire(task, "verification")
    rec = h.state.tasks[task.cid]
    assert rec.state == "Assigned" and rec.assignment.worker != a.worker


def test_all_offers_in_closes_the_window_at_once():
    from meshbench.core.protocol import AllOffersIn

    h = ProtocolHarness()
    task = h.task()
    h.feed(task)
    h.feed(h.offer(task, h.peers[0]))
    timer = h.state.tasks[task.cid].timers["offers"]
    h.feed(AllOffersIn(task_cid=task.cid))  # no time passes: the window closes now
    assert h.state.state_of(task.cid) == "Assigned"
    assert "offers" not in h.state.tasks[task.cid].timers  # its timer is now stale
    assert h.feed(TimeoutFired(task_cid=task.cid, stage="offers", token=timer)) == []


def test_commit_timer_closes_the_phase_and_the_reveal_moves_on():
    h = ProtocolHarness()
    task, a = _assigned(h)
    h.feed(h.commit(task, a.worker, GOOD))
    for v in a.verifiers[:-1]:  # the last verifier never commits
        h.feed(h.commit(task, v, GOOD))
    h.advance(15 * 60 * 1000)
    h.fire(task, "verification")
    assert h.state.state_of(task.cid) == "Executed"  # the books say: no reveal yet
    late = h.commit(task, a.verifiers[-1], GOOD)
    unchanged_state = h.state.books.tables()
    with pytest.raises(ProtocolError):  # the reveal was asked for: no late commitment
        h.feed(late)
    assert h.state.books.tables() == unchanged_state
    receipt = h.receipt(task, a.worker, GOOD)
    h.feed(receipt)
    assert h.state.state_of(task.cid) == "Verifying"
    for v in a.verifiers[:-1]:
        h.feed(h.verdict(task, v, GOOD, receipt))
    assert h.state.state_of(task.cid) in ("Disputed", "Settled")


def test_content_validator_judgements_in_verifying_and_in_a_dispute():
    from meshbench.core.protocol import JudgeVerdict, VerdictJudgement

    h = ProtocolHarness(peers=10)
    task, a = h.publish_and_assign(validator="tolerance")
    h.feed(h.commit(task, a.worker, GOOD))
    odd = a.verifiers[0]
    for v in a.verifiers:
        h.feed(h.commit(task, v, BAD if v == odd else GOOD))
    receipt = h.receipt(task, a.worker, GOOD)
    h.feed(receipt)
    asked = []
    for v in a.verifiers:
        asked += [c for c in h.feed(h.verdict(task, v, BAD if v == odd else GOOD, receipt))
                  if isinstance(c, JudgeVerdict)]  # fmt: skip
    assert [j.verifier for j in asked] == [odd]  # identical outputs need no judgement
    h.feed(VerdictJudgement(task_cid=task.cid, verifier=odd, approved=False))
    assert h.state.state_of(task.cid) == "Disputed"  # 2 approve, 1 judged against: escalate
    rec = h.state.tasks[task.cid]
    extra = rec.round_verifiers
    for v in extra:
        h.feed(h.commit(task, v, BAD if v == extra[0] else GOOD))
    asked = []
    for v in extra:
        asked += [c for c in h.feed(h.verdict(task, v, BAD if v == extra[0] else GOOD, receipt))
                  if isinstance(c, JudgeVerdict)]  # fmt: skip
    assert [j.verifier for j in asked] == [extra[0]]
    h.feed(VerdictJudgement(task_cid=task.cid, verifier=extra[0], approved=False))
    assert h.state.books.task(task.cid)["outcome"] == "Accepted"


def test_a_sampled_audit_that_mismatches_is_ruled_by_the_referee():
    from meshbench.core.policy import AuditPolicy, MeshPolicy
    from meshbench.core.protocol import RefereeResult

    policy = MeshPolicy(audit=AuditPolicy(enabled=True, probation_tasks=3))
    h = ProtocolHarness(policy=policy)
    task, a = h.publish_and_assign()
    h.feed(h.commit(task, a.worker, BAD))  # on probation: audited
    (auditor,) = h.state.tasks[task.cid].verifiers
    h.feed(h.commit(task, auditor, GOOD))
    receipt = h.receipt(task, a.worker, BAD)
    h.feed(receipt)
    h.feed(h.verdict(task, auditor, GOOD, receipt))
    h.feed(RefereeResult(task_cid=task.cid, confirmed=False, output=str(GOOD)))
    assert h.state.books.task(task.cid)["outcome"] == "Rejected"


def test_every_transition_pair_was_exercised():
    """Replays every scenario here and in test_protocol in this process (xdist-safe)."""
    import tests.core.test_protocol as scenarios

    SEEN.clear()
    local = [
        test_deadline_in_every_open_state,
        test_verification_timeout_decides_with_the_votes_present,
    ]
    local.append(test_worker_that_commits_but_never_reveals_is_replaced)
    local.append(test_all_offers_in_closes_the_window_at_once)
    local.append(test_commit_timer_closes_the_phase_and_the_reveal_moves_on)
    local.append(test_content_validator_judgements_in_verifying_and_in_a_dispute)
    local.append(test_a_sampled_audit_that_mismatches_is_ruled_by_the_referee)
    for fn in local:
        fn()
    for name in dir(scenarios):
        fn = getattr(scenarios, name)
        if name.startswith("test_") and callable(fn) and not getattr(fn, "pytestmark", None):
            fn()
    missing = set(TRANSITIONS) - SEEN
    assert not missing, sorted(missing)


def test_docs_embed_the_current_transition_table():
    from pathlib import Path

    from meshbench.core.protocol import transition_mermaid, transition_table_markdown

    doc = (Path(__file__).parents[2] / "docs" / "protocol.md").read_text()
    assert transition_table_markdown() in doc
    assert transition_mermaid() in doc  # the state -> state diagram
