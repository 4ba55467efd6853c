"""Issue 18: attacks on the protocol's rules, performed through the harness, refused or punished.

Each test names the class of defect it covers (the numbering of issue 18).
"""

from __future__ import annotations

import pytest

from meshbench.core import escrow
from meshbench.core.events import StakeSlashed
from meshbench.core.policy import MeshPolicy
from meshbench.testing.factories import make_identity
from meshbench.testing.protocol import ProtocolHarness, output_cid

GOOD, BAD = output_cid("good"), output_cid("bad")


def _slashes(h: ProtocolHarness) -> list[StakeSlashed]:
    return h.appended(StakeSlashed)


# --- 9: small meshes shield cheaters -------------------------------------------------------
def test_small_mesh_conflict_is_decided_by_the_final_rules_and_the_cheater_slashed():
    h = ProtocolHarness(peers=4)  # a worker and exactly three verifiers: nobody left to draw
    task, a = h.publish_and_assign()
    accomplice, *honest = a.verifiers
    h.execute(task, {accomplice: BAD, **{v: GOOD for v in honest}}, worker_output=BAD)
    row = h.state.books.task(task.cid)
    assert row["outcome"] == "Rejected"  # 1 approve / 2 reject, not NoConsensus
    offences = {(s.account, s.offence) for s in _slashes(h)}
    assert (a.worker, "wrong_result") in offences and (accomplice, "wrong_vote") in offences
    h.state.books.check_conservation()


# --- 10: a deadline after the reveal is a free result ---------------------------------------
def test_deadline_after_the_reveal_waits_for_the_verdicts_and_pays_the_worker():
    h = ProtocolHarness()
    task, a = h.publish_and_assign()
    h.feed(h.commit(task, a.worker, GOOD))
    for v in a.verifiers:
        h.feed(h.commit(task, v, GOOD))
    receipt = h.receipt(task, a.worker, GOOD)
    h.feed(receipt)
    h.feed(h.verdict(task, a.verifiers[0], GOOD, receipt))
    h.now = task.deadline
    h.fire(task, "deadline")  # verdicts still coming: extended once, not expired
    assert h.state.state_of(task.cid) == "Verifying"
    for v in a.verifiers[1:]:
        h.feed(h.verdict(task, v, GOOD, receipt))
    assert h.state.books.task(task.cid)["outcome"] == "Accepted"
    assert h.state.books.balance(a.worker) > 1_000 - 200  # funded 1000, bonded 200: paid


def test_deadline_after_the_reveal_decides_on_the_verdicts_in_hand_at_last():
    h = ProtocolHarness()
    task, a = h.publish_and_assign()
    h.feed(h.commit(task, a.worker, GOOD))
    for v in a.verifiers:
        h.feed(h.commit(task, v, BAD if v == a.verifiers[0] else GOOD))
    receipt = h.receipt(task, a.worker, GOOD)
    h.feed(receipt)
    for v in a.verifiers:
        h.feed(h.verdict(task, v, BAD if v == a.verifiers[0] else GOOD, receipt))
    assert h.state.state_of(task.cid) == "Disputed"  # more verifiers drawn, none answer
    h.now = task.deadline
    h.fire(task, "deadline")
    h.advance(15 * 60 * 1000)
    if h.state.state_of(task.cid) != "Settled":
        h.fire(task, "deadline")
    assert h.state.state_of(task.cid) == "Settled"
    assert h.state.books.task(task.cid)["outcome"] == "Accepted"  # 2 of 3 >= 66 %


# --- 11: rounding starves verifiers ----------------------------------------------------------
def test_every_verifier_with_the_quorum_earns_something_and_tokens_are_conserved():
    policy = MeshPolicy()
    ids = [make_identity(3000 + i).did for i in range(10)]
    verifiers = [(ids[i], 500_000 + i) for i in range(7)]
    for price in (10, 50, 51, 100):  # pools of 1, 5, 5, 10 tokens for 7 verifiers
        payouts = escrow.settle_accepted(
            fee=100,
            price=price,
            publisher=ids[7],
            worker=ids[8],
            treasury=ids[9],
            verifiers=verifiers,
            policy=policy,
            on_time=True,
            quality_ppm=1_000_000,
        )
        paid = {p.account: p.amount for p in payouts if p.role == "verifier"}
        assert len(paid) == 7 and min(paid.values()) >= 1, (price, paid)
        assert sum(p.amount for p in payouts) == 100
    assert escrow.split_weighted(5, [("a", 9), ("b", 1), ("c", 1)]) == [
        ("a", 3),
        ("b", 1),
        ("c", 1),
    ]


# --- 2: stake leaves before the slash ------------------------------------------------------
def test_unbonding_after_assignment_does_not_escape_the_slash():
    h = ProtocolHarness()
    task, a = h.publish_and_assign()
    cheat = h.by_did[a.worker]
    h.feed(h.stake(cheat, "unbond", 200))  # everything, right after it was assigned
    assert h.state.books.bonded(a.worker) == 0
    h.execute(task, {v: GOOD for v in a.verifiers}, worker_output=BAD)
    assert h.state.books.task(task.cid)["outcome"] == "Rejected"
    [slash] = [s for s in _slashes(h) if s.account == a.worker]
    assert slash.offence == "wrong_result" and slash.amount > 0
    assert h.state.books.slashable(a.worker) == 200 - slash.amount
    h.state.books.check_conservation()


def test_stake_backing_an_open_task_cannot_be_withdrawn():
    from meshbench.core.errors import ProtocolError

    h = ProtocolHarness()
    _task, a = h.publish_and_assign()
    cheat = h.by_did[a.worker]
    h.feed(h.stake(cheat, "unbond", 200))
    h.advance(8 * 24 * 3600 * 1000)  # past the lock period, the task still open
    before = h.state.books.tables()
    try:
        h.feed(h.stake(cheat, "withdraw", 200))
    except ProtocolError as exc:
        assert "open task" in str(exc)
    else:
        raise AssertionError("a withdrawal of stake that backs an open task was accepted")
    assert h.state.books.tables() == before
    assert h.state.books.backing(a.worker) == 1


# --- 6: a policy change after assignment re-prices work --------------------------------------
def test_auditor_flags_a_settlement_under_another_policy_than_the_pinned_one():
    from meshbench.core.events import RewardDistributed

    h = ProtocolHarness()
    task, a = h.publish_and_assign(fee=100, cost=100)
    h.execute(task, {v: GOOD for v in a.verifiers}, worker_output=GOOD)
    events = h.appended()
    other = MeshPolicy(min_fee=11)
    forged = []
    for e in events:
        if isinstance(e, RewardDistributed):
            fields = {f: getattr(e, f) for f in e.__struct_fields__ if f != "signature"}
            e = RewardDistributed(**{**fields, "policy_cid": other.cid}).sign(h.authority)
        forged.append(e)
    for stream, bad in ((events, False), (forged, True)):
        auditor = h.audit(stream)
        assert any("pinned" in p for p in auditor.problems) == bad, auditor.problems


# --- 1: participants' clocks decide governance ---------------------------------------------
def _five_member_federation():
    from meshbench.core.books import Books
    from meshbench.testing.governance import admit, create_federation

    fed, auth = make_identity(100), make_identity(101)
    alice, *others = (make_identity(i) for i in (102, 103, 104, 105, 106))
    t0 = 1_700_000_000_000
    books = Books(auth.did)
    books.apply(create_federation(fed, auth, now_ms=t0))
    books.apply(admit(fed, alice.did, now_ms=t0))  # alone for an hour
    for m in others:
        books.apply(admit(fed, m.did, now_ms=t0 + 3_600_000))
    return books, fed, auth, alice, others, t0


def _greedy(books, fed, alice, now):
    from meshbench.core.policy import MeshPolicyFragment
    from meshbench.testing.governance import propose

    frag = MeshPolicyFragment(
        updates={
            "reward_settings": {
                "worker_percentage": 0,
                "verifier_percentage": 0,
                "platform_fee_percentage": 100,
            }
        }
    )
    return propose(books, fed.did, alice, frag, description="all for me", now_ms=now)


def test_a_backdated_vote_cannot_activate_a_policy_alone():
    import pytest

    from meshbench.core.errors import GovernanceError
    from meshbench.core.governance import tally
    from meshbench.testing.governance import stamped, vote

    books, fed, auth, alice, _others, t0 = _five_member_federation()
    now = t0 + 7_200_000
    p = _greedy(books, fed, alice, now)
    books.apply(*stamped(auth, p))
    assert tally(books, p.cid).required == 3 and tally(books, p.cid).members == 5
    before = books.tables()
    backdated = vote(p, alice, approve=True, now_ms=t0 + 10)  # when alice was alone
    clock = stamped(auth, vote(p, alice, approve=True, now_ms=now))[0]  # the authority's time
    with pytest.raises(GovernanceError, match="ledger authority's time"):
        books.apply(clock, backdated)
    assert books.tables() == before
    books.apply(*stamped(auth, vote(p, alice, approve=True, now_ms=now)))
    assert tally(books, p.cid).status == "Open"  # one approval of three needed


def test_votes_after_expiry_by_ex_members_or_late_members_are_refused():
    import pytest

    from meshbench.core.errors import NotAMember, ProposalClosed
    from meshbench.core.governance import CredentialRevoked, clock_stamp
    from meshbench.testing.governance import admit, stamped, vote

    books, fed, auth, alice, others, t0 = _five_member_federation()
    now = t0 + 7_200_000
    p = _greedy(books, fed, alice, now)
    books.apply(*stamped(auth, p))
    late = make_identity(107)
    books.apply(admit(fed, late.did, now_ms=now + 1))  # admitted after the proposal
    with pytest.raises(NotAMember, match="electorate"):
        books.apply(*stamped(auth, vote(p, late, approve=True, now_ms=now + 2)))
    gone = others[0]
    revoked = CredentialRevoked(federation=fed.did, member=gone.did, timestamp=now + 3)
    books.apply(revoked.sign(fed))
    backdated = vote(p, gone, approve=True, now_ms=now - 60_000)
    with pytest.raises(NotAMember):  # an ex-member, even dated before the proposal
        books.apply(clock_stamp(books, auth, (backdated,), now + 4), backdated)
    after = p.expires_at + 1
    with pytest.raises(ProposalClosed):  # the authority's time is past the window
        books.apply(*stamped(auth, vote(p, others[1], approve=True, now_ms=after)))


def test_task_offer_and_commitment_times_must_be_near_the_authoritys_clock():
    from meshbench.core.errors import ProtocolError

    h = ProtocolHarness()
    future = h.task(created_at=h.now + 3_600_000, deadline=h.now + 7_200_000)
    before = h.state.books.tables()
    for bad in (future,):
        try:
            h.feed(bad)
        except ProtocolError as exc:
            assert "authority's clock" in str(exc)
        else:
            raise AssertionError("a task dated an hour ahead was accepted")
    forever = h.task(deadline=h.now + 30 * 24 * 3600 * 1000)  # escrow locked for a month
    try:
        h.feed(forever)
    except ProtocolError as exc:
        assert "lock period" in str(exc)
    else:
        raise AssertionError("a task whose deadline is a month away was accepted")
    assert h.state.books.tables() == before
    task = h.task()
    h.feed(task)
    old_offer = h.offer(task, h.peers[0])
    h.advance(10 * 60 * 1000)  # delivered ten minutes after it claims to have been made
    try:
        h.feed(old_offer)
    except ProtocolError as exc:
        assert "authority's clock" in str(exc)
    else:
        raise AssertionError("a stale-dated offer was accepted")


# --- 8: reputation is cheap and hardly matters ----------------------------------------------
def test_reputation_is_earned_slowly_lost_fast_and_not_farmed():
    from meshbench.core import reputation as rep

    policy = MeshPolicy()
    t = 1_700_000_000_000
    veteran = None
    for i in range(40):
        veteran = rep.observe(veteran, "exec_ok", t + i, policy)
    newcomer = rep.new_record()
    assert rep.trusted(None, t, policy) < rep.trusted(newcomer, t, policy) + 0.01
    assert rep.trusted(veteran, t + 50, policy) > 0.75 > rep.trusted(newcomer, t, policy)
    # a publisher feeding its own identity: the n-th task of one pair builds 1/n
    farmed = None
    for n in range(15):
        farmed = rep.observe(farmed, "exec_ok", t + n, policy, weight=1 / (1 + n))
    honest = None
    for n in range(15):
        honest = rep.observe(honest, "exec_ok", t + n, policy)
    assert farmed["score"] < 0.9 < honest["score"]
    # a caught cheater does not recover after one accepted task
    caught = rep.observe(veteran, "exec_bad", t + 60, policy)
    assert caught["score"] <= veteran["score"] / 4 + 1e-9
    once = rep.observe(caught, "exec_ok", t + 61, policy)
    assert once["score"] < 0.5 * veteran["score"]


def test_a_veteran_outranks_a_fresh_identity_with_the_same_offer():
    from meshbench.core.selection import offer_score

    h = ProtocolHarness()
    task = h.task()
    offer = h.offer(task, h.peers[0])
    policy = MeshPolicy()
    fresh = offer_score(task, offer, policy, reputation=0.0, bond=200, load=0)
    veteran = offer_score(task, offer, policy, reputation=0.9, bond=200, load=0)
    assert veteran > fresh + 0.2  # no saturation: reputation counts


def test_a_caught_cheater_is_not_drawn_as_verifier():
    h = ProtocolHarness(peers=8)
    task, a = h.publish_and_assign()
    h.execute(task, {v: GOOD for v in a.verifiers}, worker_output=BAD)
    cheat = a.worker
    assert h.state.books.task(task.cid)["outcome"] == "Rejected"
    # its bond alone would still let it verify: the reputation gate is what keeps it out
    assert h.state.books.bonded(cheat) >= MeshPolicy().bonding_requirements.min_stake
    for _ in range(4):
        t2, a2 = h.publish_and_assign(worker=h.peers[-1])
        assert cheat not in a2.verifiers
        h.execute(t2, {v: GOOD for v in a2.verifiers}, worker_output=GOOD)


# --- 7: restart changes the money -----------------------------------------------------------
def _late_worker_run(restart: bool) -> tuple[list, dict, bool]:
    from meshbench.core.events import QuorumReached
    from meshbench.core.protocol import AuthorityState

    h = ProtocolHarness()
    task, a = h.publish_and_assign(fee=100, cost=100)
    h.advance(62_000)  # the ETA was 2 s: the worker commits a minute late ...
    h.feed(h.commit(task, a.worker, GOOD))
    if restart:  # ... and the authority restarts before settling
        h.state = AuthorityState(h.authority, policies=h.policies)
        h.state.restore(list(h.history), h.now)
    for v in a.verifiers:
        h.feed(h.commit(task, v, GOOD))
    receipt = h.receipt(task, a.worker, GOOD)
    h.feed(receipt)
    for v in a.verifiers:
        h.feed(h.verdict(task, v, GOOD, receipt))
    events = h.appended()
    [q] = [e for e in events if isinstance(e, QuorumReached)]
    return [e.cid for e in events], h.state.books.tables(), q.on_time


def test_a_restart_neither_changes_the_money_nor_the_events():
    live_events, live_books, live_on_time = _late_worker_run(restart=False)
    restored_events, restored_books, restored_on_time = _late_worker_run(restart=True)
    # timeliness is the authority's recorded time of the commitment, live and restored
    assert live_on_time is False and restored_on_time is False
    assert restored_events == live_events  # restore then continue == never restarting
    assert restored_books == live_books


# --- issue 23 item 3: a task that cannot proceed says why -----------------------------------
def test_a_task_that_cannot_proceed_says_why_and_late_workers_are_asked():
    from meshbench.core.protocol import Broadcast
    from meshbench.core.types import HardwareProfile, PeerInfo

    h = ProtocolHarness(peers=3)  # a worker and two verifiers: the policy wants three
    task = h.task(verifiers=2)
    h.feed(task)
    assert h.state.why(task.cid) == "no offer yet: waiting for workers to offer"
    h.feed(h.offer(task, h.peers[0]))
    h.advance(5_000)
    h.fire(task, "offers")
    why = h.state.why(task.cid)
    assert why is not None and "needs 3 verifiers, 2 eligible" in why
    assert "k raised from 2 to 3 by policy minimum_verifiers" in why
    late = make_identity(2999)
    h.by_did[late.did] = late
    info = PeerInfo(
        did=late.did,
        federation=h.federation.did,
        hardware=HardwareProfile(memory_mb=4096),
        updated_at=h.now,
    ).sign(late)
    cmds = h.feed(info)
    assert any(isinstance(c, Broadcast) and c.obj == task for c in cmds)  # asked at once


# --- 5: validators other than ``exact`` trust the verifier's word ---------------------------
def _content_task(h: ProtocolHarness, verifier_outputs: dict[str, object], *, approve: bool):
    """A ``tolerance`` task whose verifiers all commit ``verifier_outputs`` and claim
    ``approve`` whatever their outputs are; returns the task, assignment, receipt and the
    judgements the authority asked its runtime for."""
    from meshbench.core.protocol import JudgeVerdict
    from meshbench.core.types import VerificationReceipt

    task, a = h.publish_and_assign(validator="tolerance")
    h.feed(h.commit(task, a.worker, BAD))
    outputs = {
        v: verifier_outputs.get(v, output_cid(f"junk-{i}")) for i, v in enumerate(a.verifiers)
    }
    for v in a.verifiers:
        h.feed(h.commit(task, v, outputs[v]))
    receipt = h.receipt(task, a.worker, BAD)
    h.feed(receipt)
    asked = []
    for v in a.verifiers:
        vr = VerificationReceipt(
            task_cid=task.cid,
            receipt_cid=receipt.cid,
            verifier=v,
            approved=approve or outputs[v] == BAD,
            output_cid=outputs[v],
            salt=h.salt(v, task),
            created_at=h.now,
        ).sign(h.by_did[v])
        asked += [c for c in h.feed(vr) if isinstance(c, JudgeVerdict)]
    return task, a, receipt, asked


def test_verifiers_that_commit_junk_and_approve_do_not_let_a_wrong_result_through():
    from meshbench.core.protocol import VerdictJudgement

    h = ProtocolHarness()
    task, a, _receipt, asked = _content_task(h, {}, approve=True)
    # every verdict differs from the worker's output: the authority judges each itself
    assert {j.verifier for j in asked} == set(a.verifiers)
    assert h.state.state_of(task.cid) == "Verifying"  # no decision on the verifiers' word
    for j in asked:  # the runtime ran the validator on the bytes: outside the tolerance
        h.feed(VerdictJudgement(task_cid=task.cid, verifier=j.verifier, approved=False))
    assert h.state.books.task(task.cid)["outcome"] == "Rejected"
    assert (a.worker, "wrong_result") in {(s.account, s.offence) for s in _slashes(h)}
    h.state.books.check_conservation()


def test_a_content_validator_confirms_close_outputs_and_overrules_a_lying_rejecter():
    from meshbench.core.errors import ProtocolError
    from meshbench.core.protocol import VerdictJudgement

    h = ProtocolHarness()
    task, a, _receipt, asked = _content_task(h, {}, approve=False)  # all "reject"
    for j in asked:  # ... but the bytes agree within the task's tolerance
        h.feed(VerdictJudgement(task_cid=task.cid, verifier=j.verifier, approved=True))
    assert h.state.books.task(task.cid)["outcome"] == "Accepted"
    before = h.state.books.tables()
    late = VerdictJudgement(task_cid=task.cid, verifier=a.worker, approved=True)
    with pytest.raises(ProtocolError):  # a judgement nobody asked for changes nothing
        h.state.handle(late, h.now)
    assert h.state.books.tables() == before


def test_judgement_pending_at_the_deadline_counts_as_disagreement():
    h = ProtocolHarness()
    task, _a, _receipt, _asked = _content_task(h, {}, approve=True)
    h.now = task.deadline
    h.fire(task, "deadline")
    assert h.state.books.task(task.cid)["outcome"] == "Rejected"  # never "accepted on word"


def test_auditor_flags_a_verdict_counted_on_the_verifiers_word():
    from meshbench.core.events import VerdictJudged
    from meshbench.core.protocol import VerdictJudgement

    h = ProtocolHarness()
    task, a, _receipt, asked = _content_task(h, {}, approve=True)
    for j in asked:
        h.feed(VerdictJudgement(task_cid=task.cid, verifier=j.verifier, approved=True))
    events = h.appended()
    assert len([e for e in events if isinstance(e, VerdictJudged)]) == len(a.verifiers)
    unjudged = [e for e in events if not isinstance(e, VerdictJudged)]
    for stream, bad in ((events, False), (unjudged, True)):
        auditor = h.audit(stream)
        assert any("wrong side" in p for p in auditor.problems) == bad, auditor.problems


# --- 4: copying in the dispute round -------------------------------------------------------
def test_a_silent_first_round_verifier_cannot_join_the_dispute_and_is_penalised():
    from meshbench.core.errors import ProtocolError

    h = ProtocolHarness(peers=10)
    task, a = h.publish_and_assign()
    silent, approver, rejecter = a.verifiers
    h.feed(h.commit(task, a.worker, GOOD))
    h.feed(h.commit(task, approver, GOOD))
    h.feed(h.commit(task, rejecter, BAD))
    h.fire(task, "verification")  # the silent one never committed: the phase closes anyway
    receipt = h.receipt(task, a.worker, GOOD)
    h.feed(receipt)  # the worker's output is now known to the authority
    h.feed(h.verdict(task, approver, GOOD, receipt))
    h.feed(h.verdict(task, rejecter, BAD, receipt))
    assert h.state.state_of(task.cid) == "Disputed"
    before = h.state.books.tables()
    with pytest.raises(ProtocolError, match="own round"):  # committing now would be copying
        h.feed(h.commit(task, silent, GOOD))
    assert h.state.books.tables() == before
    extra = h.state.tasks[task.cid].round_verifiers
    assert silent not in extra
    for v in extra:
        h.feed(h.commit(task, v, GOOD))
    for v in extra:
        h.feed(h.verdict(task, v, GOOD, receipt))
    assert h.state.books.task(task.cid)["outcome"] == "Accepted"
    offences = {(s.account, s.offence) for s in _slashes(h)}
    assert (silent, "no_show") in offences and (rejecter, "wrong_vote") in offences
    h.state.books.check_conservation()
