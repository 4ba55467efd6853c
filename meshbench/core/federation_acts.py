"""The signed acts of a governed federation, built one way for every caller.

A federation's key founds it (:func:`create_federation`) and admits members
(:func:`admit`); a member proposes a policy change against the active policy
(:func:`propose`) and members vote on it (:func:`vote`). ``icn-wallet``, the workbench's
``FederationDesk`` and the tests sign exactly these objects; the fold
(:mod:`meshbench.core.governance`) decides whether each one is allowed.
"""

from __future__ import annotations

from meshbench.core.books import Books
from meshbench.core.encoding import CID
from meshbench.core.events import MeshPolicyProposal, MeshPolicyVote
from meshbench.core.governance import FederationCreated, GovernanceRules
from meshbench.core.identity import Identity
from meshbench.core.policy import MeshPolicy, MeshPolicyFragment
from meshbench.core.types import Credential

__all__ = ["PROPOSAL_OPEN_MS", "YEAR_MS", "admit", "create_federation", "propose", "vote"]

YEAR_MS = 365 * 24 * 3600 * 1000
#: How long a proposal stays open unless the proposer says otherwise (three days).
PROPOSAL_OPEN_MS = 3 * 24 * 3600 * 1000


def create_federation(
    fed: Identity,
    authority: str,
    *,
    name: str,
    now_ms: int,
    rules: GovernanceRules | None = None,
    policy: MeshPolicy | None = None,
) -> FederationCreated:
    """``fed`` founds itself with ``authority`` (a DID) keeping its ledger; ``policy`` is
    its first policy (by default the default policy, for this federation)."""
    return FederationCreated(
        federation_did=fed.did,
        name=name,
        authority=authority,
        rules=rules or GovernanceRules(),
        policy=policy or MeshPolicy(federation=fed.did),
        timestamp=now_ms,
    ).sign(fed)


def admit(fed: Identity, member: str, *, now_ms: int, ttl_ms: int = YEAR_MS) -> Credential:
    """The federation's credential for ``member`` (a DID), valid ``ttl_ms`` from now."""
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
    open_ms: int = PROPOSAL_OPEN_MS,
) -> MeshPolicyProposal:
    """``proposer``'s proposal to apply ``fragment`` to ``fed``'s active policy in ``books``."""
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
    proposal_cid: CID, federation: str, voter: Identity, *, approve: bool, now_ms: int
) -> MeshPolicyVote:
    """``voter``'s vote on the proposal ``proposal_cid`` of ``federation``."""
    return MeshPolicyVote(
        policy_cid=proposal_cid,
        federation_did=federation,
        voter_did=voter.did,
        approved=approve,
        timestamp=now_ms,
        parents=(proposal_cid,),
    ).sign(voter)
