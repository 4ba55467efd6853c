"""The verification table: what each scheme costs and lets through, per attacker class.

Every cell is a run of the simulator (the real protocol engine: signatures, commit-reveal,
quorum, audits, referee, escrow, slashing, clawbacks) with a fraction ``f`` of the peers
playing one attacker class. Schemes:

* ``quorum-k`` (k = 1, 2, 3, 5): every task re-executed by k verifiers, the quorum decides
  (the audit section off; minimum = maximum = k, so no escalation);
* ``boinc``: BOINC-style adaptive replication: a result is re-executed with probability
  1 / (verified results in a row) after 10 in a row, no stake rule, no referee (more replicas
  and the quorum decide a mismatch), nothing held, nothing re-checked;
* ``adaptive``: ours (:data:`ADAPTIVE`): a 5 % floor raised by the stake rule and the streak
  rule (n results in a row unaudited: the next audited with probability >= n / 200),
  probation for new identities, the authority as referee, payments held and re-checked
  when caught.

Measured per cell: executions per accepted task (every execution: worker, verifiers or
auditors, probation, disputes, the referee, re-checks) and the finalized wrong-accept rate
(wrong results accepted and never clawed back, once every challenge window has closed, per
task). ``bound`` is the closed form beside it: the binomial majority bound for quorums
(:func:`meshbench.core.quorum.binomial_wrong_accept_bound`), Sarmenta's spot-checking bound
``f / ((1 - f) q n e)`` (n tasks per saboteur) for the sampled schemes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from typing import Any, Final

from meshbench.core.policy import AuditPolicy, MeshPolicy, VerificationQuorum
from meshbench.core.quorum import binomial_wrong_accept_bound
from meshbench.sim.simulator import SAMPLING_ATTACKERS, SimConfig, run_simulation

__all__ = ["ADAPTIVE", "ATTACKER_NAMES", "SCHEMES", "scheme_policy", "verification_table"]

#: Our default adaptive policy (the ``adaptive`` rows).
ADAPTIVE: Final = AuditPolicy(enabled=True, rate_ppm=50_000, probation_tasks=5)
#: BOINC's adaptive replication, as an audit policy (the ``boinc`` rows).
BOINC: Final = AuditPolicy(
    enabled=True,
    rate_ppm=1,
    probation_tasks=10,
    rate_rule="inverse-streak",
    referee="panel",
    challenge_window_ms=0,
    unaudited_limit=0,
)
SCHEMES: Final = ("quorum-1", "quorum-2", "quorum-3", "quorum-5", "boinc", "adaptive")
#: table names of the simulator's classes
ATTACKER_NAMES: Final = {
    "wrong": "always-cheat",
    "trust-then-cheat": "trust-then-cheat",
    "colluding": "colluding",
    "lazy-auditor": "lazy-auditor",
    "sybil": "sybil",
}
#: the bond every peer posts in the table's runs: large enough that the stake rule keeps
#: q at the 5 % floor for prices up to the fee (bond >= price x (1 - q) / q = 1,900)
BOND: Final = 2_000


def scheme_policy(scheme: str) -> tuple[MeshPolicy, int]:
    """The policy of ``scheme`` and the verifiers a task asks for."""
    if scheme.startswith("quorum-"):
        k = int(scheme.split("-", 1)[1])
        vq = VerificationQuorum(minimum_verifiers=k, maximum_verifiers=k, required_percentage=51)
        return MeshPolicy(verification_quorum=vq), k
    if scheme == "boinc":
        return MeshPolicy(audit=BOINC), 1
    if scheme == "adaptive":
        return MeshPolicy(audit=ADAPTIVE), 1
    raise ValueError(f"unknown scheme {scheme!r}; known: {', '.join(SCHEMES)}")


def _bound(scheme: str, policy: MeshPolicy, f: float, k: int, tasks: int, workers: int) -> float:
    if scheme.startswith("quorum-"):
        return binomial_wrong_accept_bound(f, policy, k)
    n = max(1.0, tasks / workers)  # tasks per saboteur (each peer works about tasks/workers)
    q = 1.0 / n if scheme == "boinc" else policy.audit.rate_ppm / 1e6  # boinc: ~1/streak
    return min(1.0, f / ((1 - f) * q * n * math.e))


def verification_table(
    *,
    tasks: int = 10_000,
    workers: int = 20,
    fractions: Iterable[float] = (0.05, 0.1, 0.2, 0.3),
    schemes: Iterable[str] = SCHEMES,
    attackers: Iterable[str] = SAMPLING_ATTACKERS,
    seed: int = 1,
) -> dict[str, Any]:
    """Every (scheme, attacker, f) cell, measured; ``{"rows": [...], "seconds": ...}``."""
    started = time.perf_counter()
    rows = []
    for scheme in schemes:
        policy, k = scheme_policy(scheme)
        for attacker in attackers:
            for f in fractions:
                r = run_simulation(
                    SimConfig(
                        workers=workers,
                        malicious=f,
                        malicious_class=attacker,
                        tasks=tasks,
                        verifiers=k,
                        seed=seed,
                        policy=policy,
                        bond=BOND,
                    )
                )
                rows.append(
                    {
                        "scheme": scheme,
                        "attacker": ATTACKER_NAMES.get(attacker, attacker),
                        "f": f,
                        "tasks": r.tasks,
                        "accepted": r.accepted,
                        "executions_per_task": r.executions_per_accepted,
                        "wrong_accept": round(r.finalized_wrong_accepted / max(1, r.tasks), 6),
                        "wrong_accept_provisional": round(r.wrong_accepted / max(1, r.tasks), 6),
                        "clawed_back": r.clawed_back,
                        "bound": round(_bound(scheme, policy, f, k, tasks, workers), 6),
                        "tokens_conserved": r.tokens_before == r.tokens_after,
                        "seconds": r.seconds,
                    }
                )
    return {"rows": rows, "seconds": round(time.perf_counter() - started, 2)}
