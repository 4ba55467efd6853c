"""A ready-made governed federation for tests, notebooks and the CLI walkthrough."""

from __future__ import annotations

from collections.abc import Sequence

from meshbench.core.books import Books
from meshbench.core.events import AuthorityClock, MeshPolicyProposal, MeshPolicyVote
from meshbench.core.governance import FederationCreated, GovernanceRules
from meshbench.core.identity import Identity
from meshbench.core.model import Model
from meshbench.core.policy import MeshPolicy, MeshPolicyFragment
from meshbench.core.types import Credential

__all__ = ["admit", "create_federation", "propose", "stamped", "vote"]

YEAR_MS = 365 * 24 * 3600 * 1000


def create_federation(
    fed: Identity,
    authority: Identity,
    *,
    name: str = "demo-federation",
    rules: GovernanceRules | None = None,
    now_ms: int,
) -> FederationCreated:
    return FederationCreated(
        federation_did=fed.did,
        name=name,
        authority=authority.did,
        rules=rules or GovernanceRules(),
        policy=MeshPolicy(federation=fed.did),
        timestamp=now_ms,
    ).sign(fed)


def admit(fed: Identity, member: str, *, now_ms: int, ttl_ms: int = YEAR_MS) -> Credential:
    return Credential(
        federation=fed.did, member=member, issued_at=now_ms, expires_at=now_ms + ttl_ms
    ).sign(fed)


def propose(
    books: Books,
    fed: str,
    proposer: Identity,
    fragment: MeshPolicyFragment,
    *,
    description: str,
    now_ms: int,
    open_ms: int = 3 * 24 * 3600 * 1000,
) -> MeshPolicyProposal:
    return MeshPolicyProposal(
        federation_did=fed,
        proposer_did=proposer.did,
        base_policy_cid=books.policy_for(fed).cid,
        fragment=fragment,
        description=description,
        timestamp=now_ms,
        expires_at=now_ms + open_ms,
    ).sign(proposer)


def vote(
    proposal: MeshPolicyProposal, voter: Identity, *, approve: bool, now_ms: int
) -> MeshPolicyVote:
    return MeshPolicyVote(
        policy_cid=proposal.cid,
        federation_did=proposal.federation_did,
        voter_did=voter.did,
        approved=approve,
        timestamp=now_ms,
        parents=(proposal.cid,),
    ).sign(voter)


def members_of(ids: Sequence[Identity]) -> list[str]:
    return [i.did for i in ids]


def stamped(authority: Identity, *events: Model) -> tuple[Model, ...]:
    """``events`` preceded by the ledger authority's clock stamp at the latest time they
    claim (what the authority's node does before it accepts proposals and votes)."""
    times = [getattr(e, "timestamp", 0) for e in events]
    clock = AuthorityClock(
        authority=authority.did, timestamp=max(times), subjects=tuple(e.cid for e in events)
    )
    return (clock.sign(authority), *events)
