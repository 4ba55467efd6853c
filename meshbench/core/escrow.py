"""Settlement arithmetic: integer splits with a named owner for every remainder.

For an accepted result, the escrowed ``fee`` is split as follows (all integers):

* ``refund  = fee - price`` (competition set the price below the fee);
* of ``price``: ``worker_share = price * worker% // 100``, ``verifier_pool = price *
  verifier% // 100``, and the **platform** (federation treasury) owns the rest, i.e. its own
  percentage plus the rounding remainder of the two floors;
* the worker earns ``worker_share * timeliness% * quality_ppm // (100 * 10**6)``
  (``WorkerRewardRules``); the unearned part is refunded to the publisher;
* the verifier pool goes to the verifiers who voted with the final quorum: each gets one
  token, and the rest is split weighted by reputation (ppm) when
  ``use_reputation_weighting``, else equally; each gets the floor of its share and the
  **heaviest verifier** (ties: smallest DID) owns the remainder. A pool smaller than the
  number of such verifiers is first topped up from the platform's share, then from the
  worker's, so that every one of them earns something. With no such verifier the pool is
  refunded.

A rejected result, no consensus, or an expired task refunds the whole fee. Payouts always
sum to the escrowed fee, so settlement never creates or destroys a token.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from meshbench.core.events import Payout
from meshbench.core.policy import MeshPolicy

__all__ = [
    "refund_payouts",
    "settle_accepted",
    "split_weighted",
    "verifier_weights",
]

PPM = 1_000_000


def split_weighted(total: int, weights: Sequence[tuple[str, int]]) -> list[tuple[str, int]]:
    """Split ``total`` by integer ``weights``; the heaviest (then smallest DID) gets the rest."""
    if not weights:
        return []
    wsum = sum(w for _, w in weights)
    if wsum <= 0:
        weights = [(d, 1) for d, _ in weights]
        wsum = len(weights)
    base = 1 if total >= len(weights) else 0  # everyone earns something when it can
    rest_total = total - base * len(weights)
    shares = [(d, base + rest_total * w // wsum) for d, w in weights]
    rest = total - sum(a for _, a in shares)
    owner = min(range(len(weights)), key=lambda i: (-weights[i][1], weights[i][0]))
    d, a = shares[owner]
    shares[owner] = (d, a + rest)
    return shares


def verifier_weights(reputations: Mapping[str, float]) -> list[tuple[str, int]]:
    """Settlement weights of the verifiers with the quorum: reputation in parts per million
    (at least 1), sorted by DID. Used by the authority and by the auditor alike."""
    return sorted((v, max(1, int(r * 1_000_000))) for v, r in reputations.items())


def settle_accepted(
    *,
    fee: int,
    price: int,
    publisher: str,
    worker: str,
    treasury: str,
    verifiers: Sequence[tuple[str, int]],
    policy: MeshPolicy,
    on_time: bool,
    quality_ppm: int,
) -> list[Payout]:
    """Payouts of an accepted task; ``verifiers`` are (DID, reputation ppm) with the quorum."""
    if not 0 <= price <= fee:
        raise ValueError(f"price {price} must be within 0..fee {fee}")
    r, rules = policy.reward_settings, policy.worker_rewards
    worker_share = price * r.worker_percentage // 100
    pool = price * r.verifier_percentage // 100
    platform = price - worker_share - pool
    timeliness = 100 if on_time else rules.late_percentage
    quality = quality_ppm if rules.scale_by_quality else PPM
    earned = worker_share * timeliness * quality // (100 * PPM)
    refund = fee - price + (worker_share - earned)
    weights = list(verifiers) if r.use_reputation_weighting else [(d, 1) for d, _ in verifiers]
    # every verifier with the quorum earns at least one token: a pool smaller than the
    # number of verifiers is topped up from the platform's share, then the worker's
    short = max(0, len(weights) - pool)
    from_platform = min(short, platform)
    from_worker = min(short - from_platform, earned)
    platform -= from_platform
    earned -= from_worker
    pool += from_platform + from_worker
    verifier_lines = split_weighted(pool, sorted(weights))
    if not verifier_lines:
        refund += pool
    out = [Payout(account=worker, amount=earned, role="worker")]
    out += [Payout(account=d, amount=a, role="verifier") for d, a in verifier_lines]
    if platform:
        out.append(Payout(account=treasury, amount=platform, role="platform"))
    if refund:
        out.append(Payout(account=publisher, amount=refund, role="refund"))
    return out


def refund_payouts(*, fee: int, publisher: str) -> list[Payout]:
    return [Payout(account=publisher, amount=fee, role="refund")]
