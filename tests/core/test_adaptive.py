"""Issue 19: adaptive verification in the core: sampled audits drawn after the worker commits,
probation, a referee on any mismatch, held payments and backtracking with clawback."""

from __future__ import annotations

import pytest

from meshbench.core.errors import ProtocolError
from meshbench.core.events import (
    AuditDrawn,
    HeldReleased,
    RefereeRuled,
    ResultClawedBack,
    StakeSlashed,
)
from meshbench.core.identity import verify
from meshbench.core.policy import AuditPolicy, MeshPolicy
from meshbench.core.protocol import AuthorityState, RefereeResult, RefereeRun, RunVerification
from meshbench.core.sampling import draw_message, draw_ppm
from meshbench.testing.protocol import ProtocolHarness, output_cid

GOOD, BAD = output_cid("good"), output_cid("bad")
ALWAYS, NEVER = 1_000_000, 1


class SwitchablePolicy:
    """A policy view whose policy the test changes between tasks (each assignment pins it)."""

    def __init__(self, policy: MeshPolicy) -> None:
        self.policy = policy

    def policy_for(self, _federation: str) -> MeshPolicy:
        return self.policy


def adaptive(rate_ppm: int, probation: int = 0, **kw) -> MeshPolicy:
    return MeshPolicy(
        audit=AuditPolicy(enabled=True, rate_ppm=rate_ppm, probation_tasks=probation, **kw)
    )


def harness(policy: MeshPolicy) -> tuple[ProtocolHarness, SwitchablePolicy]:
    view = SwitchablePolicy(policy)
    # a large bond: the stake rule (q >= price / (price + bond)) stays below the floor
    return ProtocolHarness(policies=view, fund=2_000_000, bond=1_000_000), view


def run_task(h: ProtocolHarness, worker_output, auditor_outputs=None):
    """Publish, assign, worker commits (the draw), auditors commit, reveal, verdicts."""
    task, a = h.publish_and_assign()
    rec = h.state.tasks[task.cid]
    assert a.verifiers == ()  # nobody is told at assignment whether the result is audited
    cmds = h.feed(h.commit(task, a.worker, worker_output))
    drawn = [e for e in h.appended(AuditDrawn) if e.task_cid == task.cid][-1]
    assert {c.verifier for c in cmds if isinstance(c, RunVerification)} == set(drawn.auditors)
    outputs = auditor_outputs or {}
    for v in rec.verifiers:
        h.feed(h.commit(task, v, outputs.get(v, GOOD)))
    receipt = h.receipt(task, a.worker, worker_output)
    cmds = h.feed(receipt)
    for v in rec.verifiers:
        cmds += h.feed(h.verdict(task, v, outputs.get(v, GOOD), receipt))
    return task, a, drawn, cmds


def test_an_unaudited_result_is_accepted_with_its_payment_held_then_released():
    h, _ = harness(adaptive(NEVER))
    task, a, drawn, _ = run_task(h, GOOD)
    assert not drawn.audited and drawn.reason == "stake"  # price/(price+bond) > 1 ppm
    assert h.state.books.task(task.cid)["outcome"] == "Accepted"
    held = h.state.books.get("held", str(task.cid))
    assert held["account"] == a.worker and held["amount"] > 0
    before = h.state.books.balance(a.worker)
    h.advance(h.state.policy(task.federation).audit.challenge_window_ms)
    h.fire(task, "challenge")
    assert h.state.books.balance(a.worker) == before + held["amount"]
    assert h.state.books.get("held", str(task.cid)) is None
    assert len(h.appended(HeldReleased)) == 1
    h.state.books.check_conservation()


def test_the_draw_is_the_authoritys_signature_over_the_commitment_and_checkable():
    h, _ = harness(adaptive(500_000))
    draws = [run_task(h, GOOD)[2] for _ in range(12)]
    for d in draws:
        verify(h.authority.did, draw_message(d.commitment_cid), d.draw)  # anyone can check
        assert d.audited == (draw_ppm(d.draw) < d.rate_ppm)
    assert {d.audited for d in draws} == {True, False}  # at q = 0.5, both happen


def test_probation_audits_every_result_of_a_new_identity():
    h, _ = harness(adaptive(NEVER, probation=2))
    first = [run_task(h, GOOD)[2] for _ in range(2)]
    assert all(d.audited and d.reason == "probation" and len(d.auditors) == 1 for d in first)
    third = run_task(h, GOOD)[2]
    assert third.reason != "probation"  # two verified results: off probation


def test_a_mismatch_goes_to_the_referee_whose_ruling_decides():
    h, _ = harness(adaptive(NEVER, probation=5))  # on probation: every result audited
    task, _a, drawn, cmds = run_task(h, GOOD)  # the auditor agrees: accepted at once
    assert not any(isinstance(c, RefereeRun) for c in cmds)
    assert h.state.books.task(task.cid)["outcome"] == "Accepted"
    lying = dict.fromkeys(h.by_did, BAD)  # the next auditor lies about an honest result
    task, _a, drawn, cmds = run_task(h, GOOD, auditor_outputs=lying)
    assert [c.task.cid for c in cmds if isinstance(c, RefereeRun)] == [task.cid]
    assert h.state.state_of(task.cid) == "Verifying"  # neither side decides alone
    h.feed(RefereeResult(task_cid=task.cid, confirmed=True, output=str(GOOD)))
    assert h.state.books.task(task.cid)["outcome"] == "Accepted"
    liar = drawn.auditors[0]
    assert (liar, "wrong_vote") in {(s.account, s.offence) for s in h.appended(StakeSlashed)}
    with pytest.raises(ProtocolError):  # a ruling nobody asked for changes nothing
        h.state.handle(RefereeResult(task_cid=task.cid, confirmed=False), h.now)
    h.state.books.check_conservation()


def test_a_caught_trust_then_cheat_worker_has_its_held_results_rechecked_and_clawed_back():
    h, view = harness(adaptive(NEVER))
    worker = h.peers[0]
    publisher_before = h.state.books.balance(h.publisher.did)
    cheated = []
    for out in (BAD, GOOD, BAD):  # unaudited, held: two wrong results slip through for now
        task, _a, drawn, _ = run_task(h, out)
        assert not drawn.audited
        cheated.append((task, out))
    view.policy = adaptive(ALWAYS)  # the next result is audited
    caught, _a, drawn, cmds = run_task(h, BAD)
    assert drawn.audited and drawn.reason == "sampled"
    assert [c.task.cid for c in cmds if isinstance(c, RefereeRun)] == [caught.cid]
    cmds = h.feed(RefereeResult(task_cid=caught.cid, confirmed=False, output=str(GOOD)))
    assert h.state.books.task(caught.cid)["outcome"] == "Rejected"
    rechecks = [c for c in cmds if isinstance(c, RefereeRun) and c.recheck]
    assert {c.task.cid for c in rechecks} == {t.cid for t, _ in cheated}
    for task, out in cheated:
        h.feed(RefereeResult(task_cid=task.cid, confirmed=out == GOOD, output=str(GOOD)))
    claws = h.appended(ResultClawedBack)
    assert {c.task_cid for c in claws} == {t.cid for t, out in cheated if out == BAD}
    assert len(h.appended(HeldReleased)) == 1  # the right one is paid at once
    assert all(h.state.books.get("held", str(t.cid)) is None for t, _ in cheated)
    # the publisher got back the price of both wrong results (held pay, then the bond)
    refunds = sum(
        s.amount for s in h.appended(StakeSlashed) if s.recipient == h.publisher.did
    ) + sum(c.amount for c in claws)
    prices = sum(h.state.tasks[t.cid].assignment.price for t, out in cheated if out == BAD)
    assert refunds == prices
    assert h.state.books.balance(h.publisher.did) > publisher_before - 4 * 100
    assert int(h.state.books.get("audits", worker.did, 0)) == 0  # back on probation
    h.state.books.check_conservation()
    assert any(isinstance(e, RefereeRuled) and e.recheck for e in h.appended())


def test_adaptive_ledger_audits_clean_and_restores_identically():
    policy = adaptive(500_000, probation=1)
    h, view = harness(policy)
    run_task(h, GOOD)  # probation: audited
    while True:  # cheat until an audit catches it (q = 0.5)
        task, _a, drawn, cmds = run_task(h, BAD)
        if drawn.audited:
            break
    cmds = h.feed(RefereeResult(task_cid=task.cid, confirmed=False, output=str(GOOD)))
    for c in cmds:
        if isinstance(c, RefereeRun) and c.recheck:
            h.feed(RefereeResult(task_cid=c.task.cid, confirmed=False, output=str(GOOD)))
    events = h.appended()
    auditor = h.audit(events, policies=(policy,))  # as if activated in the ledger
    assert auditor.problems == [] and auditor.audited >= 2 and auditor.unaudited == 0
    restored = AuthorityState(h.authority, policies=view)
    restored.restore(h.history, h.now)
    assert restored.books.tables() == h.state.books.tables()


def test_auditor_flags_a_forged_draw():
    h, _ = harness(adaptive(500_000))
    for _ in range(6):
        run_task(h, GOOD)
    events = h.appended()
    forged = []
    for e in events:
        if isinstance(e, AuditDrawn) and not e.audited:
            fields = {f: getattr(e, f) for f in e.__struct_fields__ if f != "signature"}
            e = AuditDrawn(**{**fields, "draw": bytes(64)}).sign(h.authority)
        forged.append(e)
    auditor = h.audit(forged)
    assert any("not the authority's signature" in p for p in auditor.problems)


def test_a_silent_auditor_sends_the_result_to_the_referee_and_is_penalised():
    h, _ = harness(adaptive(NEVER, probation=5))
    task, a = h.publish_and_assign()
    h.feed(h.commit(task, a.worker, GOOD))
    (auditor,) = h.state.tasks[task.cid].verifiers
    h.feed(h.commit(task, auditor, GOOD))
    receipt = h.receipt(task, a.worker, GOOD)
    h.feed(receipt)  # the auditor never votes (a lazy auditor's guess would not open either)
    cmds = h.fire(task, "verification")
    assert [c.task.cid for c in cmds if isinstance(c, RefereeRun)] == [task.cid]
    h.feed(RefereeResult(task_cid=task.cid, confirmed=True, output=str(GOOD)))
    assert h.state.books.task(task.cid)["outcome"] == "Accepted"
    assert (auditor, "no_show") in {(s.account, s.offence) for s in h.appended(StakeSlashed)}


def test_a_publisher_asking_for_full_verification_gets_the_quorum_and_old_cids_hold():
    from meshbench.core import encoding

    h, _ = harness(adaptive(NEVER))
    plain = h.task()
    assert "assurance" not in encoding.decode(plain.encode())  # older tasks keep their CIDs
    task = h.task(assurance="full")
    h.feed(task)
    h.feed(h.offer(task, h.peers[0]))
    h.advance(5_000)
    h.fire(task, "offers")
    a = h.state.tasks[task.cid].assignment
    assert len(a.verifiers) == 3 and not h.state.tasks[task.cid].adaptive
    h.execute(task, dict.fromkeys(a.verifiers, GOOD), worker_output=GOOD)
    assert h.state.books.task(task.cid)["outcome"] == "Accepted"
    assert h.state.books.get("held", str(task.cid)) is None  # paid at once, by the quorum


def test_audit_rate_rules_probation_stake_floor_and_streak():
    from meshbench.core.sampling import audit_rate, expected_escapes

    p = adaptive(50_000, probation=2, unaudited_limit=10)
    assert audit_rate(p, price=50, bond=10_000, clean=1) == (1_000_000, "probation")
    assert audit_rate(p, price=50, bond=10_000, clean=2) == (50_000, "sampled")
    assert audit_rate(p, price=100, bond=100, clean=5) == (500_000, "stake")  # q >= p/(p+b)
    assert audit_rate(p, price=50, bond=10_000, clean=5, since=4) == (400_000, "streak")
    assert audit_rate(p, price=50, bond=10_000, clean=5, since=10)[0] == 1_000_000
    bound = expected_escapes(50_000, bond=2_000, price=100)
    assert bound["min_bond"] == pytest.approx(1_900)
    assert bound["escapes_per_identity"] == pytest.approx(19)


def test_the_streak_rule_audits_a_worker_unseen_for_too_long():
    h, _ = harness(adaptive(NEVER, unaudited_limit=1))  # one result unaudited: then audited
    draws = [run_task(h, GOOD)[2] for _ in range(4)]
    assert [d.audited for d in draws] == [False, True, False, True]
    assert [d.reason for d in draws] == ["stake", "streak", "stake", "streak"]


def test_a_held_result_stays_in_memory_until_its_window_closes_then_leaves():
    view = SwitchablePolicy(adaptive(NEVER))
    h = ProtocolHarness(policies=view, fund=2_000_000, bond=1_000_000, forget_settled=True)
    task, *_ = run_task(h, GOOD)
    assert h.state.state_of(task.cid) == "Settled"
    assert h.state.forget(task.cid) is False  # held: a caught worker's re-check needs it
    assert task.cid in h.state.tasks
    h.advance(h.state.policy(task.federation).audit.challenge_window_ms)
    h.fire(task, "challenge")
    assert task.cid not in h.state.tasks  # released, then forgotten
    h.state.books.check_conservation()
