"""Federation governance: membership, MeshPolicy proposals, votes, activation, lineage.

The spec routes policy changes through a ``mesh-policy-update.ccl`` contract. We have no CCL
runtime, so its rules are implemented here, natively, as fold handlers of the ledger's
books (:mod:`meshbench.core.books`): every node folds the same signed events with the same
code and reaches the same active policy. The rules:

* A federation is created by a :class:`FederationCreated` event signed by its own key, naming
  its ledger authority, its :class:`GovernanceRules` and its initial policy (version 1).
* Members are admitted by :class:`~meshbench.core.types.Credential`\\ s signed by the
  federation (valid from ``issued_at`` until ``expires_at``) and removed by
  :class:`CredentialRevoked`.
* A :class:`~meshbench.core.events.MeshPolicyProposal` by a current member names the policy it
  amends (``base_policy_cid``), which must be the active one; its fragment must give a
  valid policy; it is open until ``expires_at`` (at most the voting period).
* Votes (:class:`~meshbench.core.events.MeshPolicyVote`) come from current members, one per
  member per proposal: a **second vote is refused** (:class:`DoubleVote`); votes cannot be
  changed. A proposal is *Approved* once approvals reach the rules' quorum and *Rejected*
  once enough members reject that it can no longer pass.
* The ledger authority then activates it (:class:`MeshPolicyActivated`, version + 1,
  ``previous_policy_cid``); every node checks that the activated policy is exactly the base
  policy with the fragment applied. Every version is kept (``policy_history``).
* A proposal whose base is no longer the active policy (another proposal was activated
  first) is **refused, not rebased**: it becomes *Superseded*, and votes on it are refused
  (:class:`StaleProposal`). Its proposer re-proposes against the new policy. Rebasing
  silently would let members' votes approve a change they never saw.
* Lineage: a :class:`FederationSucceeded` event, signed by the old federation, hands its
  members (credentials), and optionally its active policy, to one successor (rename, merge)
  or several (split, each with its share of members). Reputation is kept per peer DID, so it
  carries over unchanged. The old federation is closed to new proposals and admissions.

A federation that has no :class:`FederationCreated` event is *ungoverned*: its ledger
authority may set its policy directly with a ``MeshPolicyActivated`` that names no proposal
(the embedded demo, and tests that change the policy mid-run).

Times: whatever decides a vote is the **ledger authority's time**, the latest
:class:`~meshbench.core.events.AuthorityClock` it stamped before the events it accepts
(``Tables.ledger_time``). A proposal fixes its **electorate** (the members at that time) and
the **required approvals** when it is accepted; a vote counts only from a member of that
electorate who is still a member, inside the proposal's window by the authority's time; and
a participant's own timestamp must lie within :data:`MAX_CLOCK_SKEW_MS` of it. So nobody can
backdate a vote to a moment when the federation was smaller, vote after expiry, or vote as
an ex-member. Nothing here reads a clock.
"""

from __future__ import annotations

import math
from types import MappingProxyType
from typing import Annotated, Any, ClassVar, Final, Literal

import msgspec
from msgspec import Meta

from meshbench.core.encoding import CID, parse_cid
from meshbench.core.errors import (
    DoubleVote,
    GovernanceError,
    LedgerError,
    NotAMember,
    ProposalClosed,
    StaleProposal,
    UnknownFederation,
)
from meshbench.core.events import (
    AuthorityClock,
    MeshPolicyActivated,
    MeshPolicyProposal,
    MeshPolicyVote,
)
from meshbench.core.identity import Identity
from meshbench.core.model import DID, Model, Signed, TimestampMs
from meshbench.core.policy import DAY_S, MAX_CLOCK_SKEW_MS, MeshPolicy, MeshPolicyFragment
from meshbench.core.tables import FoldRules, Tables, cid_key
from meshbench.core.types import Credential

__all__ = [
    "GOVERNANCE_RULES",
    "MAX_CLOCK_SKEW_MS",
    "BooksMembership",
    "CredentialRevoked",
    "FederationCreated",
    "FederationSucceeded",
    "GovernanceRules",
    "SuccessorShare",
    "Tally",
    "activation_for",
    "clock_stamp",
    "federation",
    "is_member",
    "member",
    "member_key",
    "members",
    "pending_activations",
    "policy_history",
    "policy_version",
    "proposal",
    "proposals",
    "resolve_federation",
    "tally",
]

ProposalStatus = Literal["Open", "Approved", "Rejected", "Activated", "Superseded", "Expired"]
CLOSED: Final = frozenset({"Rejected", "Activated", "Superseded"})


class GovernanceRules(Model, tag="GovernanceRules"):
    """How a federation decides. ``approval_count`` > 0 overrides the percentage."""

    approval_percentage: Annotated[int, Meta(ge=1, le=100)] = 51
    approval_count: Annotated[int, Meta(ge=0, le=100_000)] = 0
    voting_period: Annotated[int, Meta(ge=60, le=365 * DAY_S)] = 7 * DAY_S

    def required_approvals(self, member_count: int) -> int:
        """Approvals a proposal needs among ``member_count`` members (at least 1)."""
        if self.approval_count:
            return self.approval_count
        return max(1, math.ceil(self.approval_percentage * member_count / 100))


class FederationCreated(Signed, tag="FederationCreated"):
    """A federation comes into being, signed by its own key."""

    SIGNER: ClassVar[str] = "federation_did"
    federation_did: DID
    name: Annotated[str, Meta(min_length=1, max_length=128)]
    authority: DID
    rules: GovernanceRules = GovernanceRules()
    policy: MeshPolicy
    timestamp: TimestampMs
    parents: tuple[CID, ...] = ()

    def _validate(self) -> None:
        if self.policy.federation != self.federation_did:
            raise ValueError("the initial policy must name this federation")


class CredentialRevoked(Signed, tag="CredentialRevoked"):
    SIGNER: ClassVar[str] = "federation"
    federation: DID
    member: DID
    reason: Annotated[str, Meta(max_length=1024)] = ""
    timestamp: TimestampMs
    parents: tuple[CID, ...] = ()


class SuccessorShare(Model, tag="SuccessorShare"):
    """One successor of a lineage event and the members it takes (empty: all of them)."""

    federation: DID
    members: tuple[DID, ...] = ()


class FederationSucceeded(Signed, tag="FederationSucceeded"):
    """Lineage: the federation hands its members (and policy) to its successor(s)."""

    SIGNER: ClassVar[str] = "federation_did"
    federation_did: DID
    kind: Literal["rename", "merge", "split"]
    successors: Annotated[tuple[SuccessorShare, ...], Meta(min_length=1, max_length=64)]
    carry_policy: bool = True
    timestamp: TimestampMs
    parents: tuple[CID, ...] = ()

    def _validate(self) -> None:
        n = len(self.successors)
        if self.kind in ("rename", "merge") and n != 1:
            raise ValueError(f"a {self.kind} has exactly one successor, not {n}")
        if self.kind == "split" and n < 2:
            raise ValueError("a split has at least two successors")
        if self.federation_did in {s.federation for s in self.successors}:
            raise ValueError("a federation cannot succeed itself")


class Tally(msgspec.Struct, frozen=True, kw_only=True):
    proposal_cid: str
    status: ProposalStatus
    approvals: int
    rejections: int
    required: int
    members: int


# --- reading --------------------------------------------------------------------------------
def federation(books: Tables, did: str) -> dict[str, Any]:
    row = books.get("federations", did)
    if row is None:
        raise UnknownFederation(f"no federation {did} in this ledger")
    return row


def is_member(books: Tables, fed: str, did: str, at_ms: int) -> bool:
    row = books.get("members", _member_key(fed, did))
    return bool(row) and not row["revoked"] and row["issued_at"] <= at_ms < row["expires_at"]


def members(books: Tables, fed: str, at_ms: int) -> list[str]:
    """Current members of ``fed`` at ``at_ms``, sorted."""
    prefix = fed + "|"
    return sorted(
        row["member"]
        for key, row in books.table("members").items()
        if key.startswith(prefix) and is_member(books, fed, row["member"], at_ms)
    )


def proposal(books: Tables, proposal_cid: CID | str) -> dict[str, Any]:
    row = books.get("proposals", _key(proposal_cid))
    if row is None:
        raise GovernanceError(f"no proposal {proposal_cid} in this ledger")
    return row


def proposals(books: Tables, fed: str | None = None, at_ms: int | None = None) -> list[dict]:
    """Proposals (newest first), with status ``Expired`` for open ones past their time."""
    rows = [
        dict(r, status=_status(r, at_ms))
        for r in books.table("proposals").values()
        if fed is None or r["federation"] == fed
    ]
    return sorted(rows, key=lambda r: (r["timestamp"], r["cid"]), reverse=True)


def tally(books: Tables, proposal_cid: CID | str, at_ms: int | None = None) -> Tally:
    """Where a proposal stands: against the electorate and the required approvals fixed
    when it was accepted."""
    row = proposal(books, proposal_cid)
    return Tally(
        proposal_cid=row["cid"],
        status=_status(row, at_ms),
        approvals=len(row["approvals"]),
        rejections=len(row["rejections"]),
        required=row["required"],
        members=len(row["electorate"]),
    )


def policy_history(books: Tables, fed: str) -> list[MeshPolicy]:
    """Every policy version of ``fed``, oldest first."""
    rows = [r for r in books.table("policy_history").values() if r["federation"] == fed]
    return [MeshPolicy.from_json(r["json"]) for r in sorted(rows, key=lambda r: r["version"])]


def policy_version(books: Tables, fed: str, version: int) -> MeshPolicy:
    for p in policy_history(books, fed):
        if p.policy_version == version:
            return p
    raise GovernanceError(f"federation {fed} has no policy version {version}")


def resolve_federation(books: Tables, did: str) -> str:
    """Follow rename/merge lineage to the federation that carries ``did`` on now."""
    seen = {did}
    row = books.get("federations", did)
    while row and row["status"] == "succeeded" and len(row["successors"]) == 1:
        did = row["successors"][0]
        if did in seen:
            break
        seen.add(did)
        row = books.get("federations", did)
    return did


def clock_stamp(
    books: Tables, authority: Identity, events: tuple[Model, ...], now_ms: int
) -> AuthorityClock | None:
    """The ``AuthorityClock`` the ledger authority puts before ``events`` when one of them
    is decided by its time (a proposal or a vote); None when none is. Never goes back."""
    if not any(isinstance(e, MeshPolicyProposal | MeshPolicyVote) for e in events):
        return None
    return AuthorityClock(
        authority=authority.did,
        timestamp=max(now_ms, books.ledger_time()),
        subjects=tuple(e.cid for e in events),
    ).sign(authority)


def pending_activations(books: Tables) -> list[str]:
    """Approved proposals waiting for the ledger authority's activation (CIDs, oldest first)."""
    rows = [r for r in books.table("proposals").values() if r["status"] == "Approved"]
    return [r["cid"] for r in sorted(rows, key=lambda r: (r["timestamp"], r["cid"]))]


def activation_for(
    books: Tables, proposal_cid: CID | str, authority: Identity, now_ms: int
) -> MeshPolicyActivated:
    """The activation event the ledger authority signs for an approved proposal."""
    row = proposal(books, proposal_cid)
    if row["status"] != "Approved":
        raise ProposalClosed(f"proposal {row['cid']} is {row['status']}, not Approved")
    base = books.policy_for(row["federation"])
    new = base.apply(MeshPolicyFragment(updates=row["updates"]))
    return MeshPolicyActivated(
        authority=authority.did,
        policy_cid=new.cid,
        federation_did=row["federation"],
        policy_version=new.policy_version,
        proposer_did=row["proposer"],
        previous_policy_cid=base.cid,
        proposal_cid=parse_cid(row["cid"]),
        policy=new,
        timestamp=now_ms,
        parents=(parse_cid(row["cid"]),),
    ).sign(authority)


# --- fold handlers --------------------------------------------------------------------------
def _fold_created(books: Tables, ev: FederationCreated) -> None:
    ev.verify()
    if books.get("federations", ev.federation_did) is not None:
        raise GovernanceError(f"federation {ev.federation_did} already exists")
    if ev.authority != books.authority:
        raise LedgerError(
            f"federation names {ev.authority} as its ledger authority; this ledger's is "
            f"{books.authority}"
        )
    books.put(
        "federations",
        ev.federation_did,
        {
            "did": ev.federation_did,
            "name": ev.name,
            "authority": ev.authority,
            "rules": ev.rules.to_json(),
            "created_at": ev.timestamp,
            "cid": cid_key(ev.cid),
            "status": "active",
            "successors": [],
            "predecessors": [],
        },
    )
    _set_policy(books, ev.federation_did, ev.policy, at=ev.timestamp, proposal=None)


def _fold_credential(books: Tables, ev: Credential) -> None:
    ev.verify()
    _active_federation(books, ev.federation)
    row = books.get("members", _member_key(ev.federation, ev.member))
    if row is not None and ev.issued_at < row["issued_at"]:
        # a replay of an older credential must not replace the current one
        raise GovernanceError(
            f"credential issued at {ev.issued_at} is older than {ev.member}'s current one "
            f"(issued at {row['issued_at']}) in {ev.federation}"
        )
    if row is not None and row.get("revoked") and ev.issued_at <= row.get("revoked_at", 0):
        # a replay of a credential from before the revocation must not re-admit the member
        raise GovernanceError(
            f"{ev.member}'s membership of {ev.federation} was revoked at {row['revoked_at']}; "
            f"a credential issued at {ev.issued_at} does not restore it (issue a new one)"
        )
    books.put(
        "members",
        _member_key(ev.federation, ev.member),
        {
            "federation": ev.federation,
            "member": ev.member,
            "credential": cid_key(ev.cid),
            "roles": list(ev.roles),
            "issued_at": ev.issued_at,
            "expires_at": ev.expires_at,
            "revoked": False,
            "via": "credential",
        },
    )


def _fold_revoked(books: Tables, ev: CredentialRevoked) -> None:
    ev.verify()
    _active_federation(books, ev.federation)
    key = _member_key(ev.federation, ev.member)
    row = books.get("members", key)
    if row is None:
        raise NotAMember(f"{ev.member} holds no credential of {ev.federation}")
    if ev.timestamp < row["issued_at"]:
        # a replay of an old revocation must not revoke a credential issued after it
        raise GovernanceError(
            f"revocation at {ev.timestamp} predates {ev.member}'s current credential "
            f"(issued at {row['issued_at']})"
        )
    books.put("members", key, dict(row, revoked=True, revoked_at=ev.timestamp))


def _fold_proposal(books: Tables, ev: MeshPolicyProposal) -> None:
    ev.verify()
    fed = _active_federation(books, ev.federation_did)
    key = cid_key(ev.cid)
    if books.get("proposals", key) is not None:
        raise GovernanceError(f"proposal {key} is already recorded")
    now = _authority_time(books, ev.timestamp, "proposal")
    _require_member(books, ev.federation_did, ev.proposer_did, now, "propose")
    rules = GovernanceRules.from_json(fed["rules"])
    if ev.expires_at > now + rules.voting_period * 1000:
        raise GovernanceError(
            f"proposal stays open past the federation's voting period of {rules.voting_period} s"
        )
    if ev.expires_at <= now:
        raise GovernanceError("proposal expires before the ledger authority accepted it")
    electorate = members(books, ev.federation_did, now)
    active = books.policy_for(ev.federation_did)
    if ev.base_policy_cid != active.cid:
        raise StaleProposal(
            f"proposal amends policy {ev.base_policy_cid}, but the active policy is "
            f"{active.cid} (version {active.policy_version}); propose against the active one"
        )
    active.apply(ev.fragment)  # PolicyValidationError if the result would be invalid
    books.put(
        "proposals",
        key,
        {
            "cid": key,
            "federation": ev.federation_did,
            "proposer": ev.proposer_did,
            "base": cid_key(ev.base_policy_cid),
            "updates": ev.fragment.updates,
            "description": ev.description,
            "timestamp": ev.timestamp,
            "accepted_at": now,
            "expires_at": ev.expires_at,
            "status": "Open",
            "approvals": [],
            "rejections": [],
            "electorate": electorate,
            "required": rules.required_approvals(len(electorate)),
        },
    )


def _fold_vote(books: Tables, ev: MeshPolicyVote) -> None:
    ev.verify()
    key = cid_key(ev.policy_cid)
    row = books.get("proposals", key)
    if row is None:
        raise GovernanceError(f"vote on unknown proposal {key}")
    if row["federation"] != ev.federation_did:
        raise GovernanceError("vote names another federation than its proposal")
    _active_federation(books, ev.federation_did)
    now = _authority_time(books, ev.timestamp, "vote")
    status = _status(row, now)
    if status != "Open":
        raise ProposalClosed(f"proposal {key} is {status}; votes are closed")
    if row["base"] != cid_key(books.policy_for(ev.federation_did).cid):
        raise StaleProposal(f"proposal {key} amends a policy that is no longer active")
    _require_member(books, ev.federation_did, ev.voter_did, now, "vote")
    if ev.voter_did not in row["electorate"]:
        raise NotAMember(
            f"{ev.voter_did} was not a member when proposal {key} was accepted; the electorate "
            "is fixed then"
        )
    if ev.voter_did in row["approvals"] or ev.voter_did in row["rejections"]:
        raise DoubleVote(f"{ev.voter_did} has already voted on proposal {key}")
    approvals = list(row["approvals"]) + ([ev.voter_did] if ev.approved else [])
    rejections = list(row["rejections"]) + ([] if ev.approved else [ev.voter_did])
    count, need = len(row["electorate"]), row["required"]
    new_status = "Open"
    if len(approvals) >= need:
        new_status = "Approved"
    elif count - len(rejections) < need:
        new_status = "Rejected"
    books.put(
        "proposals", key, dict(row, approvals=approvals, rejections=rejections, status=new_status)
    )


def _fold_activated(books: Tables, ev: MeshPolicyActivated) -> None:
    if ev.authority != books.authority:
        raise LedgerError(f"MeshPolicyActivated signed by {ev.authority}, not the authority")
    ev.verify()
    fed = books.get("federations", ev.federation_did)
    active = books.policy_for(ev.federation_did)
    if fed is None:  # ungoverned: the authority sets the policy
        if ev.proposal_cid is not None:
            raise UnknownFederation(f"no federation {ev.federation_did} to hold that proposal")
        _set_policy(books, ev.federation_did, ev.policy, at=ev.timestamp, proposal=None)
        return
    if fed["status"] != "active":
        raise GovernanceError(f"federation {ev.federation_did} has been succeeded")
    if ev.proposal_cid is None:
        raise GovernanceError("a governed federation's policy changes only through a proposal")
    key = cid_key(ev.proposal_cid)
    row = books.get("proposals", key)
    if row is None or row["federation"] != ev.federation_did:
        raise GovernanceError(f"no proposal {key} in federation {ev.federation_did}")
    if row["status"] != "Approved":
        raise ProposalClosed(f"proposal {key} is {row['status']}, not Approved")
    if row["base"] != cid_key(active.cid):
        raise StaleProposal(f"proposal {key} amends a policy that is no longer active")
    expected = active.apply(MeshPolicyFragment(updates=row["updates"]))
    if expected.cid != ev.policy_cid or ev.previous_policy_cid != active.cid:
        raise GovernanceError(
            "activated policy is not the active policy amended by the approved fragment"
        )
    if ev.proposer_did != row["proposer"]:
        raise GovernanceError("activation names another proposer than the proposal's")
    _set_policy(books, ev.federation_did, expected, at=ev.timestamp, proposal=key)
    books.put("proposals", key, dict(row, status="Activated", activated_at=ev.timestamp))
    for other in books.table("proposals").values():  # the rest amend an old policy now
        same = other["federation"] == ev.federation_did and other["cid"] != key
        if same and other["status"] in ("Open", "Approved"):
            books.put("proposals", other["cid"], dict(other, status="Superseded"))


def _fold_succeeded(books: Tables, ev: FederationSucceeded) -> None:
    ev.verify()
    old = _active_federation(books, ev.federation_did)
    prefix = ev.federation_did + "|"
    rows = [r for k, r in books.table("members").items() if k.startswith(prefix)]
    current = {r["member"] for r in rows if not r["revoked"]}
    for share in ev.successors:
        succ = _active_federation(books, share.federation)
        unknown = set(share.members) - current
        if unknown:
            raise NotAMember(f"split names non-members {sorted(unknown)}")
        moving = set(share.members) or current
        for r in rows:
            if r["member"] in moving and not r["revoked"]:
                key = _member_key(share.federation, r["member"])
                books.put(
                    "members",
                    key,
                    dict(r, federation=share.federation, via=f"lineage:{ev.federation_did}"),
                )
        if ev.carry_policy:
            carried = books.policy_for(ev.federation_did)
            mine = books.policy_for(share.federation)
            version = max(carried.policy_version, mine.policy_version) + 1
            policy = msgspec.structs.replace(
                carried,
                federation=share.federation,
                policy_version=version,
                previous_policy_cid=carried.cid,
            )
            _set_policy(books, share.federation, policy, at=ev.timestamp, proposal=None)
        preds = [*succ["predecessors"], ev.federation_did]
        books.put("federations", share.federation, dict(succ, predecessors=preds))
    books.put(
        "federations",
        ev.federation_did,
        dict(
            old,
            status="succeeded",
            successors=[s.federation for s in ev.successors],
            lineage=ev.kind,
        ),
    )


def member_key(fed: str, did: str) -> str:
    """The key of ``did``'s row in the ``members`` table of ``fed``."""
    return _member_key(fed, did)


def member(books: Tables, fed: str, did: str) -> dict[str, Any] | None:
    """``did``'s membership row in ``fed`` (issued_at, expires_at, via, revoked), or None."""
    return books.get("members", _member_key(fed, did))


# --- internals ------------------------------------------------------------------------------
def _key(cid: CID | str) -> str:
    return cid if isinstance(cid, str) else cid_key(cid)


def _member_key(fed: str, did: str) -> str:
    return f"{fed}|{did}"


def _status(row: dict[str, Any], at_ms: int | None) -> ProposalStatus:
    status = row["status"]
    if status == "Open" and at_ms is not None and at_ms >= row["expires_at"]:
        return "Expired"
    return status


def _authority_time(books: Tables, claimed: int, what: str) -> int:
    """The ledger authority's time for a participant's event claiming ``claimed``."""
    now = books.ledger_time()
    if now <= 0:
        raise GovernanceError(
            f"a {what} needs the ledger authority's time: it stamps an AuthorityClock before "
            "the events it accepts"
        )
    if abs(claimed - now) > MAX_CLOCK_SKEW_MS:
        raise GovernanceError(
            f"the {what}'s timestamp {claimed} is {claimed - now:+d} ms from the ledger "
            f"authority's time {now} (at most {MAX_CLOCK_SKEW_MS} ms allowed)"
        )
    return now


def _active_federation(books: Tables, did: str) -> dict[str, Any]:
    row = federation(books, did)
    if row["status"] != "active":
        raise GovernanceError(
            f"federation {did} has been succeeded by {', '.join(row['successors'])}"
        )
    return row


def _require_member(books: Tables, fed: str, did: str, at_ms: int, action: str) -> None:
    if not is_member(books, fed, did, at_ms):
        raise NotAMember(f"{did} is not a current member of {fed} and cannot {action}")


def _set_policy(
    books: Tables, fed: str, policy: MeshPolicy, *, at: int, proposal: str | None
) -> None:
    key = cid_key(policy.cid)
    row = {"cid": key, "version": policy.policy_version, "json": policy.to_json()}
    books.put("policies", fed, row)
    books.put(
        "policy_history",
        key,
        dict(
            row,
            federation=fed,
            previous=cid_key(policy.previous_policy_cid) if policy.previous_policy_cid else None,
            proposal=proposal,
            activated_at=at,
        ),
    )


class BooksMembership:
    """The :class:`~meshbench.core.views.MembershipView` of governed federations.

    A federation with a :class:`FederationCreated` event admits exactly its credentialed,
    unrevoked members, and its tasks go to its own members (and those of federations it
    was renamed or merged into). An ungoverned federation is open to everyone.
    """

    def __init__(self, books: Tables) -> None:
        self.books = books

    def _governed(self, fed: str) -> bool:
        return self.books.get("federations", fed) is not None

    def is_member(self, federation: str, did: str, now_ms: int) -> bool:
        if not self._governed(federation):
            return True
        return is_member(self.books, resolve_federation(self.books, federation), did, now_ms)

    def has_credential(self, federation: str, did: str, now_ms: int) -> bool:
        return self._governed(federation) and self.is_member(federation, did, now_ms)

    def federations_allowed(self, task_federation: str) -> frozenset[str]:
        if not self._governed(task_federation):
            return frozenset()  # no restriction
        return frozenset({task_federation, resolve_federation(self.books, task_federation)})


#: Federations, credentials, proposals, votes, activation and lineage (folded by every ledger).
GOVERNANCE_RULES: Final[FoldRules] = MappingProxyType(
    {
        FederationCreated: _fold_created,
        Credential: _fold_credential,
        CredentialRevoked: _fold_revoked,
        MeshPolicyProposal: _fold_proposal,
        MeshPolicyVote: _fold_vote,
        MeshPolicyActivated: _fold_activated,
        FederationSucceeded: _fold_succeeded,
    }
)
