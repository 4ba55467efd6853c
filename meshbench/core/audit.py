"""Re-deciding the authority's claims from the ledger: any node can check any settlement.

The fold (``Books``) already refuses events that break invariants (double payouts,
overdrafts, illegal escrow moves). The auditor goes further while the events are refolded:

* every ``QuorumReached`` must list, as approvals and rejections, verification receipts
  that are in the ledger, about that task, with the votes it claims; its ``with_quorum`` and
  ``against_quorum`` must be exactly those voters, and an ``Accepted`` outcome must have at
  least ``needed_approvals`` of the votes under the policy the settlement names; under a
  content validator (not ``exact``) a vote whose output differs from the worker's counts as
  the authority's signed ``VerdictJudged`` says, never as the verifier's own ``approved``;
* every ``RewardDistributed`` must name the policy its task's assignment pinned (a later
  activation cannot re-price work already taken on);
* every ``RewardDistributed`` of an accepted task must pay exactly what
  :func:`meshbench.core.escrow.settle_accepted` computes from the escrow, the assigned
  price, the policy (by CID: the defaults or any policy activated in the ledger) and the
  verifiers' reputation just before the decision; of any other outcome, a full refund.

Adaptive verification (the policy's ``audit`` section): every ``AuditDrawn`` must carry a
valid signature of the authority over the commitment it names, and ``audited`` must be what
that draw and ``rate_ppm`` give; a result a ``RefereeRuled`` decided must have the ruling's
outcome (the referee, not the approvals count, decides it); an accepted adaptive result
holds exactly its worker's payment (role ``held``).

Settlements whose policy is not in the ledger (a policy injected only through a
``PolicyView``) cannot be re-derived and are reported in ``unaudited``.
"""

from __future__ import annotations

from typing import Any

from meshbench.core import escrow, quorum, reputation, sampling
from meshbench.core.books import Books, cid_key
from meshbench.core.encoding import CID
from meshbench.core.errors import MeshError
from meshbench.core.events import (
    AuditDrawn,
    MeshPolicyActivated,
    QuorumReached,
    RefereeRuled,
    RewardDistributed,
    TaskAssigned,
    VerdictJudged,
)
from meshbench.core.model import Model
from meshbench.core.policy import MeshPolicy
from meshbench.core.types import ExecutionReceipt, TaskIntent, VerificationReceipt

__all__ = ["SettlementAuditor"]


class SettlementAuditor:
    def __init__(self) -> None:
        default = MeshPolicy()
        self.policies: dict[str, MeshPolicy] = {cid_key(default.cid): default}
        self.votes: dict[str, VerificationReceipt] = {}
        #: the authority's judgement of each verdict judged under a content validator
        self.judged: dict[str, bool] = {}
        #: the validator of each task that is not ``exact``, and each receipt's output
        self.outputs: dict[str, CID] = {}
        #: the referee's ruling on each disputed adaptive result (task key -> confirmed)
        self.rulings: dict[str, bool] = {}
        self.validators: dict[str, str] = {}
        self.decisions: dict[str, tuple[QuorumReached, dict[str, Any]]] = {}
        #: the policy each task's current assignment pinned (None: assigned before pinning)
        self.pinned: dict[str, CID | None] = {}
        self.problems: list[str] = []
        self.audited = 0
        self.unaudited = 0

    def before(self, ev: Model, books: Books) -> None:
        """Call with each event before it is folded (reads the state it was decided on)."""
        if isinstance(ev, MeshPolicyActivated):
            self.policies[cid_key(ev.policy_cid)] = ev.policy
        elif isinstance(ev, VerificationReceipt):
            self.votes[cid_key(ev.cid)] = ev
        elif isinstance(ev, VerdictJudged):
            self.judged[cid_key(ev.verdict_cid)] = ev.approved
        elif isinstance(ev, AuditDrawn):
            self._check_draw(ev, books)
        elif isinstance(ev, RefereeRuled) and not ev.recheck:
            self.rulings[cid_key(ev.task_cid)] = ev.confirmed
        elif isinstance(ev, ExecutionReceipt):
            self.outputs[cid_key(ev.cid)] = ev.output_cid
        elif isinstance(ev, TaskIntent) and ev.validator != "exact":
            self.validators[cid_key(ev.cid)] = ev.validator
        elif isinstance(ev, TaskAssigned):
            self.pinned[cid_key(ev.task_cid)] = ev.policy_cid
        elif isinstance(ev, QuorumReached):
            records = {v: books.reputation_record(v) for v in ev.with_quorum}
            self.decisions[cid_key(ev.task_cid)] = (ev, records)
            self._check_votes(ev)
        elif isinstance(ev, RewardDistributed):
            self._check_reward(ev, books)

    def _check_votes(self, ev: QuorumReached) -> None:
        where = f"QuorumReached {cid_key(ev.cid)}"
        votes: dict[str, bool] = {}
        for cids, approved in ((ev.approvals, True), (ev.rejections, False)):
            for c in cids:
                vote = self.votes.get(cid_key(c))
                if vote is None or vote.task_cid != ev.task_cid:
                    self.problems.append(f"{where}: vote {c} is not a receipt about this task")
                elif self._vote_of(vote) != approved:
                    self.problems.append(f"{where}: vote {c} is counted on the wrong side")
                else:
                    votes[vote.verifier] = approved
        expected_with, expected_against = quorum.sides(ev.outcome, votes)
        if set(ev.with_quorum) != set(expected_with) or set(ev.against_quorum) != set(
            expected_against
        ):
            self.problems.append(f"{where}: with/against lists do not match the votes")

    def _check_draw(self, ev: AuditDrawn, books: Books) -> None:
        from meshbench.core.identity import verify

        where = f"AuditDrawn {cid_key(ev.cid)}"
        try:
            verify(books.authority, sampling.draw_message(ev.commitment_cid), ev.draw)
        except MeshError:
            self.problems.append(f"{where}: the draw is not the authority's signature")
            return
        if (sampling.draw_ppm(ev.draw) < ev.rate_ppm) != ev.audited:
            self.problems.append(f"{where}: 'audited' is not what the draw gives")
        if ev.audited != bool(ev.auditors):
            self.problems.append(f"{where}: auditors drawn for a result not audited (or none)")

    def _vote_of(self, vote: VerificationReceipt) -> bool | None:
        """The vote a verdict casts: its ``approved`` under ``exact`` or when its output is the
        worker's; else the authority's judgement (None: never judged, so it cannot count)."""
        worker_output = self.outputs.get(cid_key(vote.receipt_cid))
        if cid_key(vote.task_cid) not in self.validators or vote.output_cid == worker_output:
            return vote.approved
        return self.judged.get(cid_key(vote.cid))

    def _check_reward(self, ev: RewardDistributed, books: Books) -> None:
        key = cid_key(ev.task_cid)
        task, esc = books.task(ev.task_cid), books.escrow(ev.task_cid)
        if task is None or esc is None:
            return  # the fold reports it
        decided = self.decisions.get(key)
        where = f"RewardDistributed {cid_key(ev.cid)}"
        pinned = self.pinned.get(key)
        if pinned is not None and ev.policy_cid != pinned:
            self.problems.append(
                f"{where}: settled under policy {ev.policy_cid}, but the assignment pinned {pinned}"
            )
        if decided is None or decided[0].outcome != "Accepted":
            expected = escrow.refund_payouts(fee=esc["amount"], publisher=task["publisher"])
            self._compare(where, ev, expected)
            return
        quorum_ev, records = decided
        policy = self.policies.get(cid_key(ev.policy_cid)) if ev.policy_cid else None
        if policy is None:
            self.unaudited += 1
            return
        if quorum_ev.worker is None:
            self.problems.append(f"{where}: an accepted result names no worker")
            return
        weights = escrow.verifier_weights(
            {v: reputation.decayed(rec, quorum_ev.timestamp, policy) for v, rec in records.items()}
        )
        n = len(quorum_ev.approvals) + len(quorum_ev.rejections)
        ruled = self.rulings.get(key)
        held = any(p.role == "held" for p in ev.payouts)
        if ruled is not None:  # the referee decided (adaptive verification)
            if not ruled:
                self.problems.append(f"{where}: accepted although the referee rejected it")
        elif held and quorum_ev.rejections:
            self.problems.append(f"{where}: a sampled result accepted over a rejection")
        elif not held and len(quorum_ev.approvals) < quorum.needed_approvals(n, policy):
            self.problems.append(f"{where}: accepted with too few approvals for the policy")
        if held and not policy.audit.enabled:
            self.problems.append(f"{where}: a payment held under a policy without audits")
        expected = escrow.settle_accepted(
            fee=esc["amount"],
            price=task["price"],
            publisher=task["publisher"],
            worker=quorum_ev.worker,
            treasury=task["federation"],
            verifiers=weights,
            policy=policy,
            on_time=quorum_ev.on_time,
            quality_ppm=quorum_ev.quality_ppm,
        )
        if held:
            expected = sampling.hold_worker_payment(expected)
        self._compare(where, ev, expected)

    def _compare(self, where: str, ev: RewardDistributed, expected: list[Any]) -> None:
        self.audited += 1
        got = sorted((p.account, p.role, p.amount) for p in ev.payouts)
        want = sorted((p.account, p.role, p.amount) for p in expected)
        if got != want:
            self.problems.append(f"{where}: pays {got}, the rules give {want}")
