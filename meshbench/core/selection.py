"""Worker selection and verifier draws: pure functions of offers, books and policy.

Eligibility (:func:`offer_problems`): an offer is dropped when its hardware is below the
task's CapabilityScope, its cost is below the scope-scaled minimum fee or above the task's
fee, its worker is the publisher, outside the federations allowed to serve the task, not a
member, lacks a valid federation credential when the policy requires one, has a bond below
``bonding_requirements.min_stake``, or already holds ``scheduling.max_queue_length`` tasks.

Score (:func:`offer_score`), higher is better, with ``w_*`` from ``policy.selection``::

    rep   = (1 - stake_weight) * reputation + stake_weight * min(1, bond / (2 * min_stake))
    score = w_rep  * rep          (reputation: ``reputation.trusted``, not saturated)
          + w_cost * (1 - cost / fee)
          + w_eta  * 1 / (1 + eta / task_timeout)
          + w_cap  * capacity / (capacity + 1)
    if use_fair_queuing: score /= 1 + (tasks the worker holds now)

Ties break on the offer CID, so every node ranks the same offers identically.

Verifiers (:func:`draw_verifiers`) are drawn from eligible peers by a keyed hash of a seed
that the ledger authority derives by signing the task CID (deterministic, but unknown to the
publisher beforehand), never the worker or the publisher, optionally never the worker's
federation. Peers that missed their last assignment (a ``no_show`` slash, folded into the
books' ``absent`` table until the peer signs something again or :data:`ABSENT_FOR_MS` pass)
come last in the draw: a dead machine is not drawn again while live peers are there, and an
absent peer is still drawn when too few others are (it may be back).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from meshbench.core.policy import MeshPolicy
from meshbench.core.types import ComputeOffer, TaskIntent
from meshbench.core.views import MembershipView

__all__ = [
    "ABSENT_FOR_MS",
    "ScoreBreakdown",
    "absent_peers",
    "draw_verifiers",
    "offer_problems",
    "offer_score",
    "rank_offers",
    "score_breakdown",
]


def offer_problems(
    task: TaskIntent,
    offer: ComputeOffer,
    policy: MeshPolicy,
    membership: MembershipView,
    *,
    bond: int,
    load: int | None,
    now_ms: int,
) -> list[str]:
    """Why ``offer`` cannot serve ``task`` (empty when it can). ``load``: the tasks the
    worker has in hand now, or None to leave the queue unchecked (an offer as it arrives:
    the queue is checked when the task is assigned)."""
    out: list[str] = []
    if offer.worker == task.publisher:
        out.append("the publisher cannot execute its own task")
    minimum = policy.min_fee_for(task.scope)
    if offer.cost < minimum:
        out.append(f"cost {offer.cost} is below the minimum fee {minimum} for this scope")
    if offer.cost > task.fee:
        out.append(f"cost {offer.cost} is above the task's fee {task.fee}")
    if not offer.hardware.satisfies(task.scope):
        out.append(
            "hardware below the task scope: " + ", ".join(offer.hardware.shortfall(task.scope))
        )
    allowed = membership.federations_allowed(task.federation)
    if allowed and offer.federation not in allowed:
        out.append(f"federation {offer.federation} may not serve tasks of {task.federation}")
    if not membership.is_member(offer.federation, offer.worker, now_ms):
        out.append(f"{offer.worker} is not a member of {offer.federation}")
    elif policy.require_credentials and not membership.has_credential(
        offer.federation, offer.worker, now_ms
    ):
        out.append(f"{offer.worker} holds no valid credential of {offer.federation}")
    if bond < policy.bonding_requirements.min_stake:
        out.append(f"bond {bond} is below min_stake {policy.bonding_requirements.min_stake}")
    if load is not None and load >= policy.scheduling.max_queue_length:
        out.append(f"worker queue is full ({load} of {policy.scheduling.max_queue_length})")
    return out


@dataclass(frozen=True)
class ScoreBreakdown:
    """The terms of :func:`offer_score` for one offer (the workbench shows them)."""

    reputation: float
    cost: float
    eta: float
    capacity: float
    fair_queue_divisor: float

    @property
    def total(self) -> float:
        return (self.reputation + self.cost + self.eta + self.capacity) / self.fair_queue_divisor


def score_breakdown(
    task: TaskIntent,
    offer: ComputeOffer,
    policy: MeshPolicy,
    *,
    reputation: float,
    bond: int,
    load: int,
) -> ScoreBreakdown:
    """The score of ``offer`` term by term; :func:`offer_score` is its ``total``."""
    sel, sched = policy.selection, policy.scheduling
    min_stake = max(1, policy.bonding_requirements.min_stake)
    rep = (1 - policy.stake_weight) * reputation + policy.stake_weight * min(
        1.0, bond / (2 * min_stake)
    )
    return ScoreBreakdown(
        reputation=sel.reputation_weight * rep,
        cost=sel.cost_weight * (1 - offer.cost / task.fee if task.fee else 0.0),
        eta=sel.eta_weight / (1 + offer.eta_ms / (sched.task_timeout * 1000)),
        capacity=sel.capacity_weight * offer.capacity / (offer.capacity + 1),
        fair_queue_divisor=float(1 + load) if sched.use_fair_queuing else 1.0,
    )


def offer_score(
    task: TaskIntent,
    offer: ComputeOffer,
    policy: MeshPolicy,
    *,
    reputation: float,
    bond: int,
    load: int,
) -> float:
    return score_breakdown(task, offer, policy, reputation=reputation, bond=bond, load=load).total


def rank_offers(
    task: TaskIntent,
    offers: Iterable[ComputeOffer],
    policy: MeshPolicy,
    *,
    reputation_of: Callable[[str], float],
    bond_of: Callable[[str], int],
    load_of: Callable[[str], int],
) -> list[ComputeOffer]:
    """Offers best first (already-eligible offers; ties by CID bytes)."""
    scored = [
        (
            -offer_score(
                task,
                o,
                policy,
                reputation=reputation_of(o.worker),
                bond=bond_of(o.worker),
                load=load_of(o.worker),
            ),
            bytes(o.cid),
            o,
        )
        for o in offers
    ]
    scored.sort(key=lambda t: (t[0], t[1]))
    return [o for _, _, o in scored]


#: How long (ledger authority time) a no-show keeps a peer at the back of the draw when it
#: signs nothing meanwhile: a restarted verifier-only peer comes back by itself.
ABSENT_FOR_MS: Final = 600_000


def absent_peers(absent: Mapping[str, int], now_ms: int) -> frozenset[str]:
    """Peers whose last no-show (``absent[peer]``, authority time) is within
    :data:`ABSENT_FOR_MS` of ``now_ms``."""
    return frozenset(p for p, at in absent.items() if now_ms - at < ABSENT_FOR_MS)


def draw_verifiers(
    seed: bytes, candidates: Sequence[str], k: int, absent: frozenset[str] = frozenset()
) -> list[str]:
    """``k`` of ``candidates`` (fewer if there are not enough), ordered by keyed hash, the
    ``absent`` ones (:func:`absent_peers`) after every present one."""
    keyed = sorted(
        candidates,
        key=lambda did: (did in absent, hashlib.sha256(seed + did.encode()).digest()),
    )
    return keyed[: max(0, k)]
