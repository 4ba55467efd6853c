"""Quorum: from verifiers' votes to a decision, by the policy's ``verification_quorum``.

Rules (``q = policy.verification_quorum``, ``n`` votes cast, ``a`` approvals):

* fewer than ``q.minimum_verifiers`` votes: ``Insufficient`` (draw more, else no consensus);
* unanimous: ``Accepted`` (all approve) or ``Rejected`` (all reject);
* conflicting votes while more verifiers may still be drawn (``drawn < maximum_verifiers``
  and the mesh has candidates left): ``Conflict``, which opens a dispute and draws
  verifiers up to ``maximum_verifiers``;
* otherwise (final): ``Accepted`` when ``100 * a >= required_percentage * n``, ``Rejected``
  when ``100 * (n - a) >= required_percentage * n``, else ``NoConsensus`` (refund).

Safety: a result is accepted only with ``a >= ceil(required_percentage * n / 100)`` and
``n >= minimum_verifiers``; so if fewer verifiers than that approve a wrong result (every
honest verifier rejects it), the wrong result is never accepted.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from meshbench.core.policy import MeshPolicy

__all__ = [
    "Decision",
    "binomial_wrong_accept_bound",
    "needed_approvals",
    "sides",
    "tally",
]

Decision = Literal["Accepted", "Rejected", "Conflict", "Insufficient", "NoConsensus"]


def needed_approvals(n: int, policy: MeshPolicy) -> int:
    """Approvals needed among ``n`` votes: ``ceil(required_percentage * n / 100)``."""
    return -(-policy.verification_quorum.required_percentage * n // 100)


def tally(
    votes: Mapping[str, bool], *, drawn: int, policy: MeshPolicy, final: bool = False
) -> Decision:
    """The decision for ``votes`` among ``drawn`` verifiers. ``final``: no more verifiers
    can be drawn (the mesh has none left to ask), so a conflict is decided by the final
    rules instead of escalating (a small mesh must not shield a cheater)."""
    q = policy.verification_quorum
    n = len(votes)
    if n < max(1, q.minimum_verifiers):
        return "Insufficient"
    a = sum(1 for v in votes.values() if v)
    if a == n:
        return "Accepted"
    if a == 0:
        return "Rejected"
    if drawn < q.maximum_verifiers and not final:
        return "Conflict"
    if a >= needed_approvals(n, policy):
        return "Accepted"
    if n - a >= needed_approvals(n, policy):
        return "Rejected"
    return "NoConsensus"


def sides(decision: str, votes: Mapping[str, bool]) -> tuple[list[str], list[str]]:
    """(voters with the quorum, voters against it), each sorted; both empty unless the
    decision is ``Accepted`` or ``Rejected``. The authority settles with it and the auditor
    re-derives with it."""
    approve = sorted(v for v, ok in votes.items() if ok)
    reject = sorted(v for v, ok in votes.items() if not ok)
    if decision == "Accepted":
        return approve, reject
    if decision == "Rejected":
        return reject, approve
    return [], []


def binomial_wrong_accept_bound(f: float, policy: MeshPolicy, first_round: int) -> float:
    """P(a wrong result is accepted) when each peer is dishonest with probability ``f``.

    The worker must be dishonest (``f``) and then either all ``first_round`` verifiers are
    dishonest (unanimous approval), or the first round conflicts and, after escalation to
    ``maximum_verifiers``, dishonest verifiers reach the required percentage. Verifiers are
    independent draws (binomial), which is the bound the simulator is compared with.
    """
    from math import comb

    q = policy.verification_quorum
    k, m = first_round, max(first_round, q.maximum_verifiers)
    p_unanimous = f**k
    p_escalated = 0.0
    if m > k:
        for d1 in range(1, k):  # conflicting first round: 1..k-1 dishonest
            p1 = comb(k, d1) * f**d1 * (1 - f) ** (k - d1)
            extra = m - k
            for d2 in range(extra + 1):
                if d1 + d2 >= needed_approvals(m, policy):
                    p1d2 = comb(extra, d2) * f**d2 * (1 - f) ** (extra - d2)
                    p_escalated += p1 * p1d2
    return f * (p_unanimous + p_escalated)
