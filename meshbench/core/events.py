"""DAG events: every change of state in the mesh, signed and linked to what it follows.

Participants' own objects (TaskIntent, ComputeOffer, ResultCommitment, ExecutionReceipt,
VerificationReceipt, Credential, PeerInfo) are events in their own right. The events below
record decisions: those of a federation's ledger authority (assignment, quorum, escrow,
rewards, reputation, policy activation) and those of members (proposals, votes).

Field names of the policy and escrow events follow upstream ICN (``reference.md``).
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from msgspec import Meta

from meshbench.core.encoding import CID
from meshbench.core.model import DID, Amount, Model, Signed, TimestampMs
from meshbench.core.policy import MeshPolicy, MeshPolicyFragment

__all__ = [
    "AuditDrawn",
    "AuthorityClock",
    "EscrowDispute",
    "EscrowState",
    "EscrowStateChanged",
    "HeldReleased",
    "MeshPolicyActivated",
    "MeshPolicyProposal",
    "MeshPolicyVote",
    "Mint",
    "Payout",
    "QuorumReached",
    "RefereeRuled",
    "ResultClawedBack",
    "RewardDistributed",
    "StakeAction",
    "StakeBonded",
    "StakeRequest",
    "StakeSlashed",
    "StakeUnbonding",
    "StakeWithdrawn",
    "TaskAssigned",
    "TaskExpired",
    "Transfer",
    "VerdictJudged",
    "WorkRequest",
]

EscrowState = Literal["Created", "InProgress", "Completed", "Failed", "Disputed", "Expired"]
Reason = Annotated[str, Meta(max_length=1024)]


class Mint(Signed, tag="Mint"):
    """Genesis or faucet: the only way tokens come into existence."""

    SIGNER: ClassVar[str] = "authority"
    authority: DID
    account: DID
    amount: Annotated[int, Meta(ge=1, le=2**53 - 1)]
    memo: Reason = ""
    timestamp: TimestampMs
    parents: tuple[CID, ...] = ()


class Transfer(Signed, tag="Transfer"):
    """A holder moves tokens to another account."""

    SIGNER: ClassVar[str] = "sender"
    sender: DID
    recipient: DID
    amount: Annotated[int, Meta(ge=1, le=2**53 - 1)]
    nonce: Annotated[int, Meta(ge=0)]
    timestamp: TimestampMs
    parents: tuple[CID, ...] = ()


class TaskAssigned(Signed, tag="TaskAssigned"):
    """The publisher's node chose a worker (and verifiers) for a task."""

    OMIT_IF_DEFAULT: ClassVar[dict[str, Any]] = {"policy_cid": None}
    SIGNER: ClassVar[str] = "assigner"
    assigner: DID
    task_cid: CID
    offer_cid: CID
    worker: DID
    verifiers: tuple[DID, ...] = ()
    attempt: Annotated[int, Meta(ge=0, le=1000)] = 0
    #: The accepted offer's cost: what the task settles at (the rest of the fee is refunded).
    price: Amount = 0
    #: When the worker promised its result (offer ``eta_ms`` after assignment).
    due_at: TimestampMs = 0
    timestamp: TimestampMs
    #: The policy this attempt is bound by (tally, timeouts, penalties, settlement), pinned
    #: at assignment so a later activation cannot re-price work already taken on.
    policy_cid: CID | None = None
    parents: tuple[CID, ...] = ()


class TaskExpired(Signed, tag="TaskExpired"):
    """A timeout fired: the task is reassigned or, past its deadline, expired."""

    SIGNER: ClassVar[str] = "authority"
    authority: DID
    task_cid: CID
    stage: Annotated[str, Meta(max_length=64)]
    #: The assigned worker that did not deliver, when the stage is ``execution``.
    worker: DID | None = None
    reason: Reason = ""
    timestamp: TimestampMs
    parents: tuple[CID, ...] = ()


class QuorumReached(Signed, tag="QuorumReached"):
    """The verification outcome of a task, with the receipts that decided it."""

    SIGNER: ClassVar[str] = "authority"
    authority: DID
    task_cid: CID
    outcome: Literal["Accepted", "Rejected", "Disputed", "NoConsensus"]
    output_cid: CID | None = None
    approvals: tuple[CID, ...] = ()
    rejections: tuple[CID, ...] = ()
    #: Who executed, and which verifiers voted with or against the outcome (for reputation).
    worker: DID | None = None
    with_quorum: tuple[DID, ...] = ()
    against_quorum: tuple[DID, ...] = ()
    #: The worker's contribution score in parts per million, and whether it met its ETA.
    quality_ppm: Annotated[int, Meta(ge=0, le=1_000_000)] = 1_000_000
    on_time: bool = True
    timestamp: TimestampMs
    parents: tuple[CID, ...] = ()


class VerdictJudged(Signed, tag="VerdictJudged"):
    """The authority's own judgement of a verdict under a content validator (not ``exact``).

    A verifier's ``approved`` is evidence, not a vote of confidence: when its output differs
    from the worker's, the authority runs the task's validator on both revealed byte strings
    (with the task's own tolerance) and this judgement, not the verifier's word, is the vote
    the tally counts. A verifier whose bytes never arrived is judged as disagreeing.
    """

    SIGNER: ClassVar[str] = "authority"
    authority: DID
    task_cid: CID
    verdict_cid: CID
    verifier: DID
    validator: Annotated[str, Meta(max_length=64)]
    approved: bool
    reason: Reason = ""
    timestamp: TimestampMs
    parents: tuple[CID, ...] = ()


class AuditDrawn(Signed, tag="AuditDrawn"):
    """Whether a worker's result is audited (adaptive verification), drawn when it committed.

    ``draw`` is the authority's signature over :func:`meshbench.core.sampling.draw_message`
    of the commitment: the worker could not know it when it committed, and anyone can check
    it against the authority's DID and re-derive ``audited`` from it and ``rate_ppm``.
    """

    SIGNER: ClassVar[str] = "authority"
    authority: DID
    task_cid: CID
    commitment_cid: CID
    draw: Annotated[bytes, Meta(max_length=64)]
    rate_ppm: Annotated[int, Meta(ge=0, le=1_000_000)]
    reason: Literal["probation", "stake", "sampled", "streak"]
    audited: bool
    auditors: tuple[DID, ...] = ()
    timestamp: TimestampMs
    parents: tuple[CID, ...] = ()


class RefereeRuled(Signed, tag="RefereeRuled"):
    """The referee's ruling on a result its auditors disputed (or on a held result re-checked
    after its worker was caught): the authority re-executed the task itself, deterministically,
    and ``confirmed`` says whether the worker's output stands. One honest auditor is enough."""

    SIGNER: ClassVar[str] = "authority"
    authority: DID
    task_cid: CID
    receipt_cid: CID
    output_cid: CID | None = None
    confirmed: bool
    recheck: bool = False
    reason: Reason = ""
    timestamp: TimestampMs
    parents: tuple[CID, ...] = ()


class HeldReleased(Signed, tag="HeldReleased"):
    """A held worker payment is paid out: its challenge window closed, or a re-check confirmed."""

    SIGNER: ClassVar[str] = "authority"
    authority: DID
    task_cid: CID
    account: DID
    amount: Amount
    timestamp: TimestampMs
    parents: tuple[CID, ...] = ()


class ResultClawedBack(Signed, tag="ResultClawedBack"):
    """A held result proved wrong: its held payment goes back to the publisher (the worker's
    bond pays the rest of the price by a ``StakeSlashed`` to the publisher in the same batch)."""

    SIGNER: ClassVar[str] = "authority"
    authority: DID
    task_cid: CID
    account: DID
    amount: Amount
    publisher: DID
    reason: Reason = ""
    timestamp: TimestampMs
    parents: tuple[CID, ...] = ()


class EscrowStateChanged(Signed, tag="EscrowStateChanged"):
    SIGNER: ClassVar[str] = "authority"
    authority: DID
    task_cid: CID
    from_state: EscrowState | None = None
    to_state: EscrowState
    amount: Amount
    reason: Reason = ""
    timestamp: TimestampMs
    parents: tuple[CID, ...] = ()


class Payout(Model, tag="Payout"):
    """One line of a settlement."""

    account: DID
    amount: Amount
    #: ``held``: a worker payment kept for the challenge window (adaptive verification)
    role: Literal["worker", "verifier", "platform", "refund", "penalty", "held"]


class RewardDistributed(Signed, tag="RewardDistributed"):
    """A settlement: the escrowed fee split exactly; the payouts sum to ``total``."""

    SIGNER: ClassVar[str] = "authority"
    authority: DID
    task_cid: CID
    total: Amount
    payouts: tuple[Payout, ...]
    policy_cid: CID | None = None
    timestamp: TimestampMs
    parents: tuple[CID, ...] = ()

    def _validate(self) -> None:
        paid = sum(p.amount for p in self.payouts)
        if paid != self.total:
            raise ValueError(f"payouts sum to {paid}, not to the escrowed total {self.total}")


class EscrowDispute(Signed, tag="EscrowDispute"):
    SIGNER: ClassVar[str] = "authority"
    authority: DID
    task_cid: CID
    reason: Reason
    extra_verifiers: tuple[DID, ...] = ()
    timestamp: TimestampMs
    parents: tuple[CID, ...] = ()


class AuthorityClock(Signed, tag="AuthorityClock"):
    """The ledger authority's clock, stamped before the participants' events it accepts.

    Rules that decide votes (a proposal's window, who may vote, until when) read this time,
    never the participants' own timestamps, which count only within a bounded skew of it.
    """

    SIGNER: ClassVar[str] = "authority"
    authority: DID
    timestamp: TimestampMs
    #: the participants' events this stamp accepts (they follow it in the same batch)
    subjects: tuple[CID, ...] = ()
    parents: tuple[CID, ...] = ()


class MeshPolicyProposal(Signed, tag="MeshPolicyProposal"):
    """A member proposes to amend the policy ``base_policy_cid`` with ``fragment``."""

    SIGNER: ClassVar[str] = "proposer_did"
    federation_did: DID
    proposer_did: DID
    base_policy_cid: CID
    fragment: MeshPolicyFragment
    description: Annotated[str, Meta(max_length=4096)]
    timestamp: TimestampMs
    expires_at: TimestampMs
    parents: tuple[CID, ...] = ()

    def _validate(self) -> None:
        if self.expires_at <= self.timestamp:
            raise ValueError("expires_at must be after timestamp")


class MeshPolicyVote(Signed, tag="MeshPolicyVote"):
    """``policy_cid`` is the CID of the proposal voted on."""

    SIGNER: ClassVar[str] = "voter_did"
    policy_cid: CID
    federation_did: DID
    voter_did: DID
    approved: bool
    timestamp: TimestampMs
    parents: tuple[CID, ...] = ()


class MeshPolicyActivated(Signed, tag="MeshPolicyActivated"):
    """The ledger authority activates ``policy`` (whose CID is ``policy_cid``)."""

    SIGNER: ClassVar[str] = "authority"
    authority: DID
    policy_cid: CID
    federation_did: DID
    policy_version: Annotated[int, Meta(ge=1)]
    proposer_did: DID | None = None
    previous_policy_cid: CID | None = None
    #: The approved MeshPolicyProposal this activates (None: an ungoverned federation's
    #: authority setting a policy directly, e.g. the embedded demo).
    proposal_cid: CID | None = None
    policy: MeshPolicy
    timestamp: TimestampMs
    parents: tuple[CID, ...] = ()

    def _validate(self) -> None:
        if self.policy.cid != self.policy_cid:
            raise ValueError("policy_cid is not the CID of the policy carried")
        if self.policy.policy_version != self.policy_version:
            raise ValueError("policy_version does not match the policy carried")


StakeAction = Literal["bond", "unbond", "withdraw"]


class StakeRequest(Signed, tag="StakeRequest"):
    """A member asks to bond tokens, start unbonding them, or withdraw unbonded tokens."""

    SIGNER: ClassVar[str] = "account"
    account: DID
    federation: DID
    action: StakeAction
    amount: Annotated[int, Meta(ge=1, le=2**53 - 1)]
    token: Annotated[str, Meta(min_length=1, max_length=32)] = "ICN"
    nonce: Annotated[int, Meta(ge=0, le=2**53 - 1)] = 0
    timestamp: TimestampMs
    parents: tuple[CID, ...] = ()


class StakeBonded(Signed, tag="StakeBonded"):
    """Tokens move from ``account``'s balance into its bond."""

    SIGNER: ClassVar[str] = "authority"
    authority: DID
    account: DID
    amount: Annotated[int, Meta(ge=1, le=2**53 - 1)]
    token: Annotated[str, Meta(min_length=1, max_length=32)] = "ICN"
    timestamp: TimestampMs
    parents: tuple[CID, ...] = ()


class StakeUnbonding(Signed, tag="StakeUnbonding"):
    """Tokens leave the bond and stay locked until ``unlock_at`` (the policy's lock period)."""

    SIGNER: ClassVar[str] = "authority"
    authority: DID
    account: DID
    amount: Annotated[int, Meta(ge=1, le=2**53 - 1)]
    unlock_at: TimestampMs
    timestamp: TimestampMs
    parents: tuple[CID, ...] = ()

    def _validate(self) -> None:
        if self.unlock_at < self.timestamp:
            raise ValueError("unlock_at must not be before timestamp")


class StakeWithdrawn(Signed, tag="StakeWithdrawn"):
    """Unlocked unbonding tokens return to ``account``'s balance."""

    SIGNER: ClassVar[str] = "authority"
    authority: DID
    account: DID
    amount: Annotated[int, Meta(ge=1, le=2**53 - 1)]
    timestamp: TimestampMs
    parents: tuple[CID, ...] = ()


class StakeSlashed(Signed, tag="StakeSlashed"):
    """A penalty: tokens leave ``account``'s bond for ``recipient`` (the federation treasury)."""

    SIGNER: ClassVar[str] = "authority"
    authority: DID
    account: DID
    recipient: DID
    amount: Annotated[int, Meta(ge=1, le=2**53 - 1)]
    task_cid: CID | None = None
    offence: Literal["wrong_result", "wrong_vote", "no_show"]
    timestamp: TimestampMs
    parents: tuple[CID, ...] = ()


class WorkRequest(Signed, tag="WorkRequest"):
    """The ledger authority asks one participant to act on a task, over a peer-to-peer mesh.

    ``execute`` / ``verify``: run the task and commit (ResultCommitment); ``reveal``: the
    commit phase is closed, send the ExecutionReceipt; ``verdict``: judge the receipt
    ``receipt_cid`` (VerificationReceipt). Signed by the authority so that a peer acts only on
    requests of the federation's ledger authority; not part of the ledger (the resulting
    participant objects are).
    """

    SIGNER: ClassVar[str] = "authority"
    authority: DID
    task_cid: CID
    target: DID
    action: Literal["execute", "verify", "reveal", "verdict"]
    receipt_cid: CID | None = None
    timestamp: TimestampMs
    parents: tuple[CID, ...] = ()
