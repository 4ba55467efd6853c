"""A ready-made governed federation for tests and notebooks.

The builders live in :mod:`meshbench.core.federation_acts` (production code uses them
from there); these are the same acts with the shapes the tests were written against.
"""

from __future__ import annotations

from collections.abc import Sequence

from meshbench.core import federation_acts as acts
from meshbench.core.events import AuthorityClock, MeshPolicyProposal, MeshPolicyVote
from meshbench.core.federation_acts import YEAR_MS, admit, propose
from meshbench.core.governance import FederationCreated, GovernanceRules
from meshbench.core.identity import Identity
from meshbench.core.model import Model

__all__ = [
    "YEAR_MS",
    "admit",
    "create_federation",
    "members_of",
    "propose",
    "stamped",
    "vote",
]


def create_federation(
    fed: Identity,
    authority: Identity,
    *,
    name: str = "demo-federation",
    rules: GovernanceRules | None = None,
    now_ms: int,
) -> FederationCreated:
    return acts.create_federation(fed, authority.did, name=name, rules=rules, now_ms=now_ms)


def vote(
    proposal: MeshPolicyProposal, voter: Identity, *, approve: bool, now_ms: int
) -> MeshPolicyVote:
    return acts.vote(proposal.cid, proposal.federation_did, voter, approve=approve, now_ms=now_ms)


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
