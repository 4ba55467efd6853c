"""Adaptive verification's rules: who is audited, how the draw is made, what is held.

One function per rule, called by the authority (:mod:`meshbench.core.protocol`), the auditor
(:mod:`meshbench.core.audit`, ``ledger verify``) and the simulator alike:

* :func:`adaptive` -- whether a task is verified by sampled audits (the policy's ``audit``
  section is enabled, the fee is below its full-verification tier, the input is not
  private) or by the full quorum as before;
* :func:`audit_rate` -- the probability (ppm) that a worker's result is audited: 1 on
  probation (fewer than ``probation_tasks`` verified results since the identity appeared or
  last failed), else the policy's floor, raised so that cheating has negative expected value
  for the worker's bond: ``q >= price / (price + bond)`` (equivalently bond >= price x
  (1 - q) / q); never below the floor;
* :func:`draw_message` / :func:`draw_ppm` -- the draw: the authority signs a message bound to
  the worker's commitment (Ed25519 signatures are deterministic: the worker cannot compute
  it without the authority's key, and anyone can verify it with the authority's DID), and
  the draw is the signature's SHA-256 read as a number below one million; audited exactly
  when it is below the rate;
* :func:`hold_worker_payment` -- an accepted result's worker payment is held for the
  challenge window (the payout line's role becomes ``held``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Final

from meshbench.core.encoding import CID
from meshbench.core.events import Payout
from meshbench.core.policy import MeshPolicy
from meshbench.core.types import TaskIntent

__all__ = [
    "PPM",
    "adaptive",
    "audit_rate",
    "draw_message",
    "draw_ppm",
    "expected_escapes",
    "hold_worker_payment",
    "holds",
]

PPM: Final = 1_000_000


def adaptive(policy: MeshPolicy, task: TaskIntent, *, private: bool) -> bool:
    """Sampled audits for this task (else the full quorum, as with the audit section off):
    not for a private input, a fee at or above the policy's tier, or a publisher that asks
    for the full quorum (the task's ``assurance``)."""
    a = policy.audit
    if not a.enabled or private or task.assurance == "full":
        return False
    return not (a.full_fee and task.fee >= a.full_fee)


def audit_rate(
    policy: MeshPolicy, *, price: int, bond: int, clean: int, since: int = 0
) -> tuple[int, str]:
    """(probability in ppm that the result is audited, why): ``clean`` is the worker's count
    of verified results since it appeared or last failed, ``since`` its results in a row not
    audited, ``bond`` its slashable stake."""
    a = policy.audit
    if clean < a.probation_tasks:
        return PPM, "probation"
    if a.rate_rule == "inverse-streak":  # BOINC: trusted with probability 1 - 1/streak
        return max(a.rate_ppm, PPM // max(1, clean)), "sampled"
    rate, reason = a.rate_ppm, "sampled"
    stake = PPM if bond <= 0 else -(-PPM * price // (price + bond))
    if stake > rate:
        rate, reason = min(PPM, stake), "stake"
    streak = min(PPM, since * PPM // a.unaudited_limit) if a.unaudited_limit else 0
    if streak > rate:
        rate, reason = streak, "streak"
    return rate, reason


def draw_message(commitment_cid: CID) -> bytes:
    """What the authority signs to draw the audit of a result: bound to the commitment."""
    return b"meshbench/audit/v1\0" + bytes(commitment_cid)


def draw_ppm(signature: bytes) -> int:
    """The draw, uniform in 0..999,999, from the authority's signature over the message."""
    return int.from_bytes(hashlib.sha256(signature).digest()[:8], "big") * PPM >> 64


def holds(policy: MeshPolicy) -> bool:
    """Whether accepted worker payments are held for a challenge window."""
    return policy.audit.challenge_window_ms > 0


def hold_worker_payment(payouts: Sequence[Payout]) -> list[Payout]:
    """The payouts with the worker's line held (role ``held``) for the challenge window."""
    return [
        Payout(account=p.account, amount=p.amount, role="held") if p.role == "worker" else p
        for p in payouts
    ]


def expected_escapes(rate_ppm: int, *, bond: int, price: int) -> dict[str, float]:
    """The economic bound of one identity that cheats until caught (each cheat audited with
    probability q, independently): expected cheats that pass before it is caught,
    ``(1 - q) / q``; all of them fall in the challenge window while it keeps cheating, so the
    finalized ones are those of an identity that stops before it is caught. Per token of
    attacker budget (the bond it loses when caught): ``(1 - q) / (q x bond)``. Cheating pays
    nothing in expectation when ``bond >= price x (1 - q) / q``."""
    q = rate_ppm / PPM
    per_identity = (1 - q) / q
    return {
        "q": q,
        "escapes_per_identity": per_identity,
        "escapes_per_token": per_identity / bond if bond else float("inf"),
        "min_bond": price * (1 - q) / q,
    }
