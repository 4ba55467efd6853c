"""Protocol engine throughput: simulated tasks per second, against signing alone.

The baseline is the cost of making, signing and addressing the same number of events
with no protocol logic (a Mint per event), measured in the same run; the ratio is the
protocol's overhead on top of the cryptography and encoding it cannot avoid.
"""

from __future__ import annotations

import time
from typing import Any

from meshbench.core.events import Mint
from meshbench.sim.simulator import SimConfig, run_simulation
from meshbench.testing.factories import make_identity


def run(quick: bool = False) -> dict[str, Any]:
    tasks = 200 if quick else 2000
    report = run_simulation(SimConfig(workers=50, malicious=0.1, tasks=tasks, seed=0))
    auth, acct = make_identity(1), make_identity(2)
    started = time.perf_counter()
    for i in range(report.events):
        Mint(authority=auth.did, account=acct.did, amount=i + 1, timestamp=i).sign(auth).cid  # noqa: B018
    baseline = time.perf_counter() - started
    return {
        "tasks": tasks,
        "events": report.events,
        "events_per_task": round(report.events / tasks, 2),
        "sim_seconds": report.seconds,
        "tasks_per_second": round(tasks / report.seconds, 1),
        "sign_only_seconds": round(baseline, 3),
        "ratio_vs_sign_only": round(report.seconds / baseline, 2),
    }
