"""Reputation: a deterministic, recency-weighted score per peer, driven by the policy.

A new peer starts at ``NEW_PEER_SCORE`` (0.5). Each observation moves the score towards
its target by a step proportional to the policy weight of the observation's kind, so
recent work weighs more than old work (an exponential moving average):

======================================  =========  ==============================
observation                             target     step
======================================  =========  ==============================
execution accepted (quality q in 0..1)  q          ``alpha * RATE``
execution rejected or no-show           0          ``alpha * RATE``
verification voted with the quorum      1          ``beta * RATE``
verification voted against the quorum   0          ``(beta + gamma) * RATE``
======================================  =========  ==============================

so ``alpha`` weighs the execution record, ``beta`` the verification record, and ``gamma``
is the extra penalty for a wrong verification.

Reputation must be costly to earn and quick to lose (issue 18, item 8):

* an accepted execution's step is scaled by ``weight`` (the fold passes ``1 / (1 + n)``,
  ``n`` the tasks this worker already did for the same publisher, so a publisher feeding
  work to its own identities builds little) and by ``1 / (1 + 2 * executions_bad)`` (a caught
  cheater recovers slowly);
* a rejected execution or a no-show drops the score to at most a quarter of what it was;
* a score is trusted only as far as the record behind it: :func:`trusted` is the score
  times ``n / (n + CONFIDENCE)`` of independent observations, so a brand-new identity ranks
  below a veteran of the same score, and selection uses it unsaturated.

Inactivity decays the score by ``(1 - lambda)`` per whole day since the peer's last
observation (applied before each new observation and when the score is read at a later
time). Floats are only ever computed
from the same inputs in the same order, so every node folds the same value.
"""

from __future__ import annotations

from typing import Any, Final, Literal

from meshbench.core.policy import DAY_S, MeshPolicy

__all__ = [
    "CONFIDENCE",
    "MIN_VERIFIER_REPUTATION",
    "NEW_PEER_SCORE",
    "RATE",
    "Observation",
    "decayed",
    "new_record",
    "observe",
    "trusted",
]

NEW_PEER_SCORE: Final = 0.5
RATE: Final = 0.5
#: Observations at which a score is trusted half-way (see :func:`trusted`).
CONFIDENCE: Final = 10
#: Below this score a peer is not drawn as a verifier, whatever its bond.
MIN_VERIFIER_REPUTATION: Final = 0.2
DAY_MS: Final = DAY_S * 1000
Observation = Literal["exec_ok", "exec_bad", "verify_ok", "verify_bad"]
_COUNTER: Final = {
    "exec_ok": "executions_ok",
    "exec_bad": "executions_bad",
    "verify_ok": "verifications_ok",
    "verify_bad": "verifications_bad",
}


def new_record() -> dict[str, Any]:
    return {
        "score": NEW_PEER_SCORE,
        "executions_ok": 0,
        "executions_bad": 0,
        "verifications_ok": 0,
        "verifications_bad": 0,
        "last_active": None,
    }


def decayed(record: dict[str, Any] | None, now_ms: int, policy: MeshPolicy) -> float:
    """The score of ``record`` as of ``now_ms`` (daily decay for inactivity)."""
    if record is None:
        return NEW_PEER_SCORE
    last = record["last_active"]
    score = float(record["score"])
    if last is None or now_ms <= last:
        return score
    days = (now_ms - last) // DAY_MS
    return score * (1.0 - policy.lambda_) ** days if days else score


def trusted(record: dict[str, Any] | None, now_ms: int, policy: MeshPolicy) -> float:
    """The decayed score, discounted by how little record stands behind it."""
    if record is None:
        return 0.0
    n = sum(int(record[c]) for c in _COUNTER.values())
    return decayed(record, now_ms, policy) * n / (n + CONFIDENCE)


def observe(
    record: dict[str, Any] | None,
    kind: Observation,
    now_ms: int,
    policy: MeshPolicy,
    quality: float = 1.0,
    weight: float = 1.0,
) -> dict[str, Any]:
    """The record after one observation at ``now_ms`` (a new dict; the input is unchanged).

    ``weight`` (0..1) scales an accepted execution's step (repeated publisher-worker pairs
    count little)."""
    rec = dict(record) if record is not None else new_record()
    score = decayed(rec, now_ms, policy)
    if kind == "exec_ok":
        recovery = 1.0 / (1 + 2 * int(rec["executions_bad"]))
        target = min(1.0, max(0.0, quality))
        step = policy.alpha * RATE * min(1.0, max(0.0, weight)) * recovery
    elif kind == "exec_bad":
        target, step = 0.0, max(0.75, policy.alpha * RATE)
    elif kind == "verify_ok":
        target, step = 1.0, policy.beta * RATE
    else:
        target, step = 0.0, (policy.beta + policy.gamma) * RATE
    step = min(1.0, step)
    rec["score"] = min(1.0, max(0.0, score + step * (target - score)))
    rec[_COUNTER[kind]] += 1
    last = rec["last_active"]
    rec["last_active"] = now_ms if last is None else max(last, now_ms)
    return rec
