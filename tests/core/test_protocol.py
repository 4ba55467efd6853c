"""Every transition of the task state machine, without I/O."""

from __future__ import annotations

import msgspec
import pytest

from meshbench.core.errors import InsufficientFunds, InvalidSignature, ProtocolError, UnknownPeer
from meshbench.core.events import RewardDistributed, StakeSlashed
from meshbench.core.policy import MeshPolicy, MeshPolicyFragment
from meshbench.core.protocol import (
    TRANSITIONS,
    AppendToLedger,
    PrivateInput,
    RequestReveal,
    RequestVerdict,
    RunExecution,
    RunVerification,
    SealKey,
    TimeoutFired,
    transition_diagram,
)
from meshbench.core.types import CapabilityScope, Credential, HardwareProfile
from meshbench.core.views import CredentialMembership, OpenMembership
from meshbench.testing.factories import make_identity
from meshbench.testing.protocol import ProtocolHarness, output_cid

GOOD, BAD = output_cid("good"), output_cid("bad")


def snapshot(h: ProtocolHarness) -> tuple:
    rec = {
        cid: (r.state, dict(r.offers), dict(r.commitments), dict(r.verdicts))
        for cid, r in h.state.tasks.items()
    }
    return h.state.books.tables(), rec, dict(h.state.load)


def unchanged(h: ProtocolHarness, exc: type[Exception], event: object) -> None:
    before = snapshot(h)
    with pytest.raises(exc):
        h.feed(event)
    assert snapshot(h) == before


def payouts(h: ProtocolHarness) -> list:
    out = []
    for cmd in h.log:
        if isinstance(cmd, AppendToLedger):
            out += [e for e in cmd.events if isinstance(e, RewardDistributed)]
    return out


def slashes(h: ProtocolHarness) -> list[StakeSlashed]:
    return h.appended(StakeSlashed)


# --- publish ---
def test_publish_locks_the_fee_in_escrow():
    h = ProtocolHarness()
    task = h.task(fee=120)
    h.feed(task)
    assert h.state.books.balance(h.publisher.did) == 10_000 - 120
    assert h.state.books.escrow(task.cid)["state"] == "Created"
    assert h.state.state_of(task.cid) == "Published"
    h.state.books.check_conservation()


def test_publisher_without_funds_is_refused_and_nothing_changes():
    h = ProtocolHarness(publisher_funds=50)
    unchanged(h, InsufficientFunds, h.task(fee=100))


def test_fee_below_scope_scaled_minimum_is_refused():
    h = ProtocolHarness()
    big = CapabilityScope(memory_mb=2048, cpu_cycles=10**9)
    assert h.state.policy(h.federation.did).min_fee_for(big) > 100
    unchanged(h, ProtocolError, h.task(fee=100, scope=big))


def test_replayed_task_is_refused():
    h = ProtocolHarness()
    task = h.task()
    h.feed(task)
    unchanged(h, ProtocolError, task)


def test_forged_signature_is_refused():
    h = ProtocolHarness()
    task = h.task()
    forged = msgspec.structs.replace(task, fee=99)  # signature of the old content
    unchanged(h, InvalidSignature, forged)


def test_non_member_publisher_is_refused():
    fed = make_identity(1001)
    member = make_identity(2000)
    cred = Credential(federation=fed.did, member=member.did, issued_at=0, expires_at=2**52).sign(
        fed
    )
    h = ProtocolHarness(peers=0, membership=CredentialMembership([cred]))
    unchanged(h, UnknownPeer, h.task())


# --- offers ---
@pytest.mark.parametrize(
    "kwargs, who",
    [
        ({"cost": 5}, 0),  # below min_fee
        ({"cost": 101}, 0),  # above the fee
        ({"hardware": HardwareProfile(memory_mb=64)}, 0),  # below scope
    ],
)
def test_bad_offers_are_refused(kwargs, who):
    h = ProtocolHarness()
    task = h.task(fee=100)
    h.feed(task)
    unchanged(h, ProtocolError, h.offer(task, h.peers[who], **kwargs))


def test_publisher_cannot_offer_on_its_own_task():
    h = ProtocolHarness()
    task = h.task()
    h.feed(task)
    unchanged(h, ProtocolError, h.offer(task, h.publisher))


def test_unbonded_worker_is_refused_and_double_offer_too():
    h = ProtocolHarness(bond=50)
    task = h.task()
    h.feed(task)
    unchanged(h, ProtocolError, h.offer(task, h.peers[0]))
    h2 = ProtocolHarness()
    task = h2.task()
    h2.feed(task)
    h2.feed(h2.offer(task, h2.peers[0]))
    unchanged(h2, ProtocolError, h2.offer(task, h2.peers[0], cost=60))


def test_offer_for_unknown_task_is_refused():
    h = ProtocolHarness()
    task = h.task()
    unchanged(h, ProtocolError, h.offer(task, h.peers[0]))


def test_required_credential_is_checked():
    fed = make_identity(1001)
    peers = [make_identity(2000 + i) for i in range(8)]
    creds = [
        Credential(federation=fed.did, member=p.did, issued_at=0, expires_at=2**52).sign(fed)
        for p in [*peers, make_identity(1002)]
    ]
    policy = MeshPolicy(require_credentials=True)
    h = ProtocolHarness(policy=policy, membership=CredentialMembership(creds))
    task = h.task()
    h.feed(task)
    h.feed(h.offer(task, h.peers[0]))  # member with a credential: fine
    outsider = make_identity(9999)
    h.by_did[outsider.did] = outsider
    unchanged(h, UnknownPeer, h.offer(task, outsider))  # a non-member's signed offer


class MembersWithoutCredentials(OpenMembership):
    def __init__(self, credentialed: set[str]) -> None:
        self.credentialed = credentialed

    def has_credential(self, federation: str, did: str, now_ms: int) -> bool:
        return did in self.credentialed


def test_member_without_credential_is_refused_when_the_policy_requires_one():
    peers = {make_identity(2000 + i).did for i in range(4)}
    h = ProtocolHarness(
        policy=MeshPolicy(require_credentials=True), membership=MembersWithoutCredentials(peers)
    )
    task = h.task()
    h.feed(task)
    h.feed(h.offer(task, h.peers[0]))
    unchanged(h, ProtocolError, h.offer(task, h.peers[5]))
    h.advance(5_000)
    h.fire(task, "offers")
    rec = h.state.tasks[task.cid]
    assert set(rec.verifiers) <= peers  # verifiers need the credential too


def test_engine_pin_refuses_other_engines():
    h = ProtocolHarness(policy=MeshPolicy(engine_pin="wasmtime-x/abc"))
    task, a = h.publish_and_assign()
    h.feed(h.commit(task, a.worker, GOOD))
    for v in a.verifiers:
        h.feed(h.commit(task, v, GOOD))
    unchanged(h, ProtocolError, h.receipt(task, a.worker, GOOD))  # engine ""


# --- assignment ---
def test_offer_window_assigns_best_offer_and_draws_verifiers():
    h = ProtocolHarness()
    task = h.task()
    h.feed(task)
    h.feed(h.offer(task, h.peers[0], cost=90))
    h.feed(h.offer(task, h.peers[1], cost=20))
    h.advance(5_000)
    cmds = h.fire(task, "offers")
    rec = h.state.tasks[task.cid]
    assert rec.state == "Assigned"
    assert rec.assignment.worker == h.peers[1].did  # cheaper, equal otherwise
    assert rec.assignment.price == 20
    assert len(rec.verifiers) == 3
    assert h.peers[1].did not in rec.verifiers and h.publisher.did not in rec.verifiers
    assert sum(isinstance(c, RunExecution) for c in cmds) == 1
    assert {c.verifier for c in cmds if isinstance(c, RunVerification)} == set(rec.verifiers)
    assert h.state.books.escrow(task.cid)["state"] == "InProgress"


def test_window_without_offers_stays_open_then_expires_with_refund():
    h = ProtocolHarness()
    task = h.task()
    h.feed(task)
    h.advance(5_000)
    h.fire(task, "offers")
    assert h.state.state_of(task.cid) == "Published"
    h.now = task.deadline
    h.fire(task, "deadline")
    assert h.state.state_of(task.cid) == "Settled"
    assert h.state.books.task(task.cid)["state"] == "Settled"
    assert h.state.books.escrow(task.cid)["state"] == "Expired"
    assert h.state.books.balance(h.publisher.did) == 10_000


def test_stale_timeout_is_ignored():
    h = ProtocolHarness()
    task, _ = h.publish_and_assign()
    assert h.feed(TimeoutFired(task_cid=task.cid, stage="offers", token=1)) == []


def test_private_input_key_is_sealed_to_worker_and_verifiers_only():
    h = ProtocolHarness()
    task = h.task()
    h.feed(task)
    h.feed(PrivateInput(task_cid=task.cid))
    h.feed(h.offer(task, h.peers[0]))
    h.advance(5_000)
    cmds = h.fire(task, "offers")
    seal = [c for c in cmds if isinstance(c, SealKey)]
    rec = h.state.tasks[task.cid]
    assert len(seal) == 1
    assert set(seal[0].recipients) == {rec.assignment.worker, *rec.verifiers}


# --- commit, reveal, quorum, settlement ---------------------------------------------------------
def test_honest_task_is_accepted_and_paid_exactly():
    h = ProtocolHarness()
    task, a = h.publish_and_assign(fee=100, cost=60)
    h.execute(task, {v: GOOD for v in a.verifiers}, worker_output=GOOD)
    [reward] = payouts(h)
    assert reward.total == 100
    by_role: dict[str, int] = {}
    for p in reward.payouts:
        by_role[p.role] = by_role.get(p.role, 0) + p.amount
    assert by_role["worker"] == 54  # 90% of the price 60
    assert by_role["verifier"] == 6
    assert by_role["refund"] == 40
    assert h.state.books.task(task.cid)["outcome"] == "Accepted"
    h.state.books.check_conservation()


def test_reveal_before_commit_phase_closes_is_refused():
    h = ProtocolHarness()
    task, a = h.publish_and_assign()
    h.feed(h.commit(task, a.worker, GOOD))
    unchanged(h, ProtocolError, h.receipt(task, a.worker, GOOD))


def test_commitments_and_receipts_from_strangers_are_refused():
    h = ProtocolHarness()
    task, a = h.publish_and_assign()
    stranger = next(p for p in h.peers if p.did != a.worker and p.did not in a.verifiers)
    unchanged(h, ProtocolError, h.commit(task, stranger.did, GOOD))
    h.feed(h.commit(task, a.worker, GOOD))
    unchanged(h, ProtocolError, h.commit(task, a.worker, GOOD))  # duplicate


def test_receipt_that_does_not_open_the_commitment_is_refused():
    h = ProtocolHarness()
    task, a = h.publish_and_assign()
    h.feed(h.commit(task, a.worker, GOOD))
    for v in a.verifiers:
        h.feed(h.commit(task, v, GOOD))
    unchanged(h, ProtocolError, h.receipt(task, a.worker, BAD))


def test_lazy_copier_verdict_does_not_open_its_commitment():
    h = ProtocolHarness()
    task, a = h.publish_and_assign()
    lazy = a.verifiers[0]
    h.feed(h.commit(task, a.worker, GOOD))
    h.feed(h.commit(task, lazy, BAD))  # a guess, committed before seeing the output
    for v in a.verifiers[1:]:
        h.feed(h.commit(task, v, GOOD))
    receipt = h.receipt(task, a.worker, GOOD)
    cmds = h.feed(receipt)
    assert {c.verifier for c in cmds if isinstance(c, RequestVerdict)} == set(a.verifiers)
    copied = h.verdict(task, lazy, GOOD, receipt)  # copies the revealed output
    copied = msgspec.structs.replace(copied, salt=h.salt(lazy, task), signature=b"").sign(
        h.by_did[lazy]
    )
    unchanged(h, ProtocolError, copied)


def test_double_vote_is_refused():
    h = ProtocolHarness()
    task, a = h.publish_and_assign()
    h.feed(h.commit(task, a.worker, GOOD))
    for v in a.verifiers:
        h.feed(h.commit(task, v, GOOD))
    receipt = h.receipt(task, a.worker, GOOD)
    h.feed(receipt)
    vote = h.verdict(task, a.verifiers[0], GOOD, receipt)
    h.feed(vote)
    unchanged(h, ProtocolError, vote)


def test_wrong_result_is_rejected_refunded_and_slashed():
    h = ProtocolHarness()
    task, a = h.publish_and_assign()
    h.execute(task, {v: GOOD for v in a.verifiers}, worker_output=BAD)
    assert h.state.books.task(task.cid)["outcome"] == "Rejected"
    assert h.state.books.balance(h.publisher.did) == 10_000
    assert h.state.books.bonded(a.worker) == 100  # 50% of 200
    assert [s.offence for s in slashes(h)] == ["wrong_result"]
    assert h.state.books.balance(h.federation.did) == 100  # the treasury
    h.state.books.check_conservation()


def test_conflict_opens_a_dispute_then_decides_with_the_required_percentage():
    h = ProtocolHarness(peers=10)
    task, a = h.publish_and_assign()
    outputs = {a.verifiers[0]: BAD, a.verifiers[1]: GOOD, a.verifiers[2]: GOOD}
    h.execute(task, outputs, worker_output=GOOD)
    rec = h.state.tasks[task.cid]
    assert rec.state == "Disputed"
    assert len(rec.verifiers) == 7
    assert h.state.books.escrow(task.cid)["state"] == "Disputed"
    receipt = rec.receipt
    for v in rec.verifiers[3:]:
        cmds = h.feed(h.commit(task, v, GOOD))
        assert any(isinstance(c, RequestVerdict) for c in cmds)
        if rec.state != "Settled":
            h.feed(h.verdict(task, v, GOOD, receipt))
    assert h.state.books.task(task.cid)["outcome"] == "Accepted"
    assert [s.offence for s in slashes(h)] == ["wrong_vote"]
    [reward] = payouts(h)
    paid = {p.account for p in reward.payouts if p.role == "verifier"}
    assert a.verifiers[0] not in paid and len(paid) == 6


def test_execution_timeout_reassigns_and_slashes_the_no_show():
    h = ProtocolHarness()
    task = h.task()
    h.feed(task)
    h.feed(h.offer(task, h.peers[0], cost=20))
    h.feed(h.offer(task, h.peers[1], cost=30))
    h.advance(5_000)
    h.fire(task, "offers")
    first = h.state.tasks[task.cid].assignment.worker
    h.advance(30 * 60 * 1000)
    cmds = h.fire(task, "execution")
    rec = h.state.tasks[task.cid]
    assert rec.state == "Assigned" and rec.attempt == 1
    assert rec.assignment.worker != first
    assert any(isinstance(c, RunExecution) for c in cmds)
    assert [s.offence for s in slashes(h)] == ["no_show"]
    # a late commitment of the first worker is refused
    unchanged(h, ProtocolError, h.commit(task, first, GOOD))


def test_missing_verifiers_lead_to_escalation_or_no_consensus_refund():
    h = ProtocolHarness(peers=4)  # 1 worker + 3 verifiers: nobody left to draw
    task, a = h.publish_and_assign()
    h.feed(h.commit(task, a.worker, GOOD))
    h.feed(h.commit(task, a.verifiers[0], GOOD))
    h.advance(15 * 60 * 1000)
    cmds = h.fire(task, "verification")  # closes the commit phase
    assert any(isinstance(c, RequestReveal) for c in cmds)
    receipt = h.receipt(task, a.worker, GOOD)
    h.feed(receipt)
    h.feed(h.verdict(task, a.verifiers[0], GOOD, receipt))  # 1 vote < minimum 3
    assert h.state.books.task(task.cid)["outcome"] == "NoConsensus"
    assert h.state.books.balance(h.publisher.did) == 10_000


def test_settled_task_refuses_late_messages():
    h = ProtocolHarness()
    task, a = h.publish_and_assign()
    receipt = h.execute(task, {v: GOOD for v in a.verifiers}, worker_output=GOOD)
    unchanged(h, ProtocolError, h.verdict(task, a.verifiers[0], BAD, receipt))


def test_late_worker_earns_the_late_percentage_and_quality_scales():
    h = ProtocolHarness()
    task, a = h.publish_and_assign(fee=100, cost=100)
    h.advance(10_000)  # ETA was 2 s
    h.execute(task, {v: GOOD for v in a.verifiers}, worker_output=GOOD, score=0.5)
    [reward] = payouts(h)
    worker = sum(p.amount for p in reward.payouts if p.role == "worker")
    assert worker == 90 * 50 // 100 * 50 // 100  # late 50%, quality 0.5
    assert sum(p.amount for p in reward.payouts) == 100


def test_policy_activated_mid_run_governs_the_next_settlement():
    h = ProtocolHarness()
    task, a = h.publish_and_assign(fee=100, cost=100)
    new = MeshPolicy().apply(
        MeshPolicyFragment(
            updates={
                "reward_settings": {
                    "worker_percentage": 70,
                    "verifier_percentage": 20,
                    "platform_fee_percentage": 10,
                }
            }
        )
    )
    old = h.state.policy(h.federation.did)
    h.policies.set(h.federation.did, new)  # activation between two events, no restart
    h.execute(task, {v: GOOD for v in a.verifiers}, worker_output=GOOD)
    # the task assigned before the activation settles under the policy its assignment
    # pinned (issue 18 item 6: work already taken on is not re-priced) ...
    [reward] = payouts(h)
    assert a.policy_cid == old.cid and reward.policy_cid == old.cid
    assert _roles(reward) == {"worker": 90, "verifier": 10}
    # ... and the next assignment is governed by the new policy at once
    task2, a2 = h.publish_and_assign(fee=100, cost=100)
    h.execute(task2, {v: GOOD for v in a2.verifiers}, worker_output=GOOD)
    reward2 = payouts(h)[-1]
    assert _roles(reward2) == {"worker": 70, "verifier": 20, "platform": 10}
    assert a2.policy_cid == new.cid and reward2.policy_cid == new.cid


def _roles(reward) -> dict[str, int]:
    roles = {p.role: 0 for p in reward.payouts}
    for p in reward.payouts:
        roles[p.role] += p.amount
    return roles


# --- stake ---
def test_bond_unbond_withdraw_respects_the_lock_period():
    h = ProtocolHarness(bond=0)
    p = h.peers[0]
    h.feed(h.stake(p, "bond", 300))
    assert h.state.books.bonded(p.did) == 300
    h.feed(h.stake(p, "unbond", 100))
    assert h.state.books.bonded(p.did) == 200
    unchanged(h, InsufficientFunds, h.stake(p, "withdraw", 100))  # still locked
    h.advance(7 * 24 * 3600 * 1000)
    h.feed(h.stake(p, "withdraw", 100))
    assert h.state.books.balance(p.did) == 1_000 - 300 + 100
    unchanged(h, ProtocolError, h.stake(p, "bond", 10, token="BTC"))
    unchanged(h, InsufficientFunds, h.stake(p, "bond", 10_000))


# --- the table ---
TRANSITIONS_STATES = {s for s, _ in TRANSITIONS} | {"Settled"}


def test_transition_table_is_data_and_drawn_from_itself():
    dot = transition_diagram()
    assert dot.startswith("digraph")
    for (state, kind), entry in TRANSITIONS.items():
        assert f'"{state}"' in dot and kind in dot
        assert entry.handler.__name__.startswith("_on_")
        assert entry.next_states and entry.next_states <= set(TRANSITIONS_STATES)
        for nxt in entry.next_states:  # drawn state -> state
            assert f'"{state}" -> "{nxt}"' in dot


def test_unknown_pair_raises_protocol_error():
    h = ProtocolHarness()
    task = h.task()
    h.feed(task)
    unchanged(h, ProtocolError, h.commit(task, h.peers[0].did, GOOD))  # Published + commit


def test_negative_or_zero_faucet_and_unknown_task_receipts_are_refused():
    from meshbench.core.protocol import Faucet

    h = ProtocolHarness()
    unchanged(h, ProtocolError, Faucet(account=h.peers[0].did, amount=-5))
    unchanged(h, ProtocolError, Faucet(account=h.peers[0].did, amount=0))
    ghost = h.task()  # never published
    unchanged(h, ProtocolError, h.receipt(ghost, h.peers[0].did, GOOD))
    unchanged(h, ProtocolError, h.commit(ghost, h.peers[0].did, GOOD))


def test_a_copied_commitment_cannot_be_opened_by_the_copier():
    h = ProtocolHarness()
    task, a = h.publish_and_assign()
    verifier = a.verifiers[0]
    honest = h.commit(task, verifier, GOOD)
    copied = msgspec.structs.replace(
        h.commit(task, a.worker, GOOD), commitment=honest.commitment, signature=b""
    ).sign(h.by_did[a.worker])
    h.feed(copied)
    h.feed(honest)
    for v in a.verifiers[1:]:
        h.feed(h.commit(task, v, GOOD))
    # whatever the copier reveals is bound to its own DID, never to the verifier's
    unchanged(h, ProtocolError, h.receipt(task, a.worker, GOOD))


def test_too_few_verifiers_waits_a_window_without_asking_workers_again():
    from meshbench.core.protocol import Broadcast, ScheduleTimeout

    h = ProtocolHarness(peers=3)  # a worker and two verifiers: below minimum_verifiers 3
    task = h.task()
    h.feed(task)
    h.feed(h.offer(task, h.peers[0]))
    for _ in range(3):
        h.advance(5_000)
        cmds = h.fire(task, "offers")
        assert not any(isinstance(c, Broadcast) for c in cmds)  # no offer round to spin on
        assert [c.stage for c in cmds if isinstance(c, ScheduleTimeout)] == ["offers"]
        assert h.state.state_of(task.cid) == "Offered"
    h.now = task.deadline
    h.fire(task, "deadline")
    assert h.state.books.escrow(task.cid)["state"] == "Expired"


def test_an_offer_from_a_worker_with_a_full_queue_is_kept_and_taken_once_it_has_room():
    """A full queue is a passing state, not a fault of the offer: the offer is recorded and
    the task assigned to it once the queue has room (before, it was refused as it came, the
    task left with no offer until its deadline; the 1,000-task soak met it)."""
    from meshbench.core.policy import SchedulingParams

    h = ProtocolHarness(peers=5, policy=MeshPolicy(scheduling=SchedulingParams(max_queue_length=1)))
    worker = h.peers[0]
    first, assignment = h.publish_and_assign(worker=worker)
    second = h.task()
    h.feed(second)
    h.feed(h.offer(second, worker))  # its queue is full: kept all the same
    h.advance(5_000)
    h.fire(second, "offers")
    assert h.state.state_of(second.cid) == "Offered"
    assert "none of the 1 offers is eligible" in (h.state.why(second.cid) or "")
    h.execute(first, {v: GOOD for v in assignment.verifiers}, worker_output=GOOD)
    assert h.state.state_of(first.cid) == "Settled"
    h.advance(5_000)
    h.fire(second, "offers")  # the next window: the queue has room
    rec = h.state.tasks[second.cid]
    assert rec.assignment is not None and rec.assignment.worker == worker.did


def test_a_task_with_no_offer_at_the_end_of_its_window_is_asked_for_again():
    """A worker offers when it is asked: a task whose window ends with no offer recorded
    (the broadcast lost, the offers refused) is broadcast again, each window."""
    from meshbench.core.protocol import Broadcast

    h = ProtocolHarness(peers=5)
    task = h.task()
    h.feed(task)
    for _ in range(2):
        h.advance(5_000)
        cmds = h.fire(task, "offers")
        assert [c.obj for c in cmds if isinstance(c, Broadcast)] == [task]
        assert h.state.state_of(task.cid) == "Published"
    assert "asked for again" in (h.state.why(task.cid) or "")
    h.feed(h.offer(task, h.peers[0]))
    h.advance(5_000)
    h.fire(task, "offers")
    assert h.state.tasks[task.cid].assignment is not None


def test_a_late_last_verifier_commitment_leaves_the_worker_a_whole_reveal_window():
    """The worker is asked to reveal when the last verifier commits; its window runs from
    that request (a verifier back from a restart committed just before the timer, and the
    worker, given a second to reveal, was slashed as a no-show)."""
    from meshbench.core.protocol import RequestReveal, ScheduleTimeout, TimeoutFired

    h = ProtocolHarness(peers=5)
    task, a = h.publish_and_assign()
    timeout_ms = h.state.policy(task.federation).verification_quorum.verification_timeout * 1000
    h.feed(h.commit(task, a.worker, GOOD))
    *early, last = a.verifiers
    for v in early:
        h.feed(h.commit(task, v, GOOD))
    h.advance(timeout_ms - 1_000)  # the last verifier commits a second before the timer
    first_timer = h.state.tasks[task.cid].timers["verification"]
    cmds = h.feed(h.commit(task, last, GOOD))
    assert any(isinstance(c, RequestReveal) for c in cmds)
    (timer,) = [c for c in cmds if isinstance(c, ScheduleTimeout) and c.stage == "verification"]
    assert timer.at == h.now + timeout_ms
    h.advance(2_000)  # the first timer goes off: stale, the worker's window is open
    assert h.feed(TimeoutFired(task_cid=task.cid, stage="verification", token=first_timer)) == []
    receipt = h.receipt(task, a.worker, GOOD)
    h.feed(receipt)
    for v in a.verifiers:
        h.feed(h.verdict(task, v, GOOD, receipt))
    assert h.state.books.task(task.cid)["outcome"] == "Accepted"
    assert not h.appended(StakeSlashed)
