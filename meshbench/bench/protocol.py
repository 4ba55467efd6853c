"""Protocol engine throughput: simulated tasks per second, against signing alone.

The baseline is the cost of making, signing and addressing the same number of events
with no protocol logic (a Mint per event), measured in the same run; the ratio is the
protocol's overhead on top of the cryptography and encoding it cannot avoid.

``node_authority_cpu_ms_per_task`` is the same price measured inside the real node: the CPU
time of an :class:`~meshbench.runtime.node.AuthorityNode`'s driver thread (every signature it
makes and checks, every fold, ledger commit and command) per task settled through an
in-process mesh (4 workers, 2 verifiers), beside the simulator's ``sim_ms_per_task``.
"""

from __future__ import annotations

import time
from typing import Any

from meshbench.core.events import Mint
from meshbench.sim.simulator import SimConfig, run_simulation
from meshbench.testing.factories import make_identity


def node_cpu_per_task(tasks: int) -> float:
    """Driver-thread CPU ms per task settled through an in-process mesh (after a warm-up)."""
    import tempfile

    from meshbench.bench.memory import SCOPE, WASM
    from meshbench.runtime.mesh import Mesh

    wasm = WASM.read_bytes()
    with tempfile.TemporaryDirectory(prefix="meshbench-protocol-") as tmp:
        policy = {"verification_quorum": {"minimum_verifiers": 2}}
        with Mesh.in_process(workers=4, data_dir=tmp, policy=policy) as mesh:

            def settle(start: int, count: int) -> None:
                handles = [
                    mesh.publish(wasm, f"t{i}".encode(), fee=1_000, verifiers=2, scope=SCOPE)
                    for i in range(start, start + count)
                ]
                for h in handles:
                    h.result(timeout=120)

            settle(0, 10)
            before = mesh.node.cpu_seconds()
            for start in range(10, 10 + tasks, 50):
                settle(start, min(50, 10 + tasks - start))
            return (mesh.node.cpu_seconds() - before) * 1000 / tasks


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
        "sim_ms_per_task": round(report.seconds * 1000 / tasks, 3),
        "node_authority_cpu_ms_per_task": round(node_cpu_per_task(40 if quick else 200), 3),
    }
