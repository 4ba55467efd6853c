"""``meshbench bench mesh``: verified tasks through the mesh vs bare Dask, in one run.

N tasks of about 10 ms of wasm each (sha256 of 256 KiB), each with k verifiers, go through
the whole protocol (offers, selection, execution, k re-executions, commit-reveal, quorum,
escrow, ledger) on a Dask ``LocalCluster``; the baseline runs the same wasm function
(1 + k) * N times as plain Dask tasks on the same cluster. ``verified_efficiency`` is the
bare time over the mesh time (1.0 = verification costs nothing beyond the re-executions),
for each way the node reaches its Dask workers (:data:`PATHS`: direct calls on lanes, the default,
with and without batching, and executions as Dask tasks), in rounds turned round each time,
as a median with its spread.
``sampled``: the same with sampled audits (the policy's ``audit`` section) against bare Dask
running the N tasks once: ``price_of_trust_efficiency`` and the executions per task.

Where the time goes, per verified task, as CPU (not wall) time: ``authority_cpu_ms_per_task``
is the node's driver thread (every signature it makes, every fold, ledger write and
command), ``authority_intake_cpu_ms_per_task`` the checking of workers' answers (decoding and
every signature check, done on the threads the answers arrive on) and
``authority_protocol_cpu_ms_per_task`` the two together: the price of trust on the
authority. ``node_process_cpu_ms_per_task`` the whole
node process (with Dask's client and scheduler, which share it in a ``LocalCluster``) and
``workers_cpu_ms_per_task`` the worker processes; the baseline's per-execution figures are
``bare_workers_cpu_ms_per_execution`` and ``bare_node_process_cpu_ms_per_execution``.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from meshbench.core.types import CapabilityScope

WASM = Path(__file__).resolve().parents[2] / "datasets" / "wasm" / "sha256.wasm"
SCOPE = CapabilityScope(cpu_cycles=60_000_000, memory_mb=64)
_EXECUTOR: Any = None


def _bare_run(wasm: bytes, data: bytes, cycles: int = SCOPE.cpu_cycles) -> int:
    """The baseline: one wasm execution in a Dask task (executor cached per process)."""
    global _EXECUTOR
    if _EXECUTOR is None:
        from meshbench.exec.wasm import WasmExecutor

        _EXECUTOR = WasmExecutor()
    scope = CapabilityScope(cpu_cycles=cycles, memory_mb=64)
    return _EXECUTOR.run(wasm, data, scope=scope).summary.fuel_used


def _children_cpu_s() -> float:
    """CPU seconds used so far by this process's children (the Dask worker processes)."""
    import psutil

    total = 0.0
    for child in psutil.Process().children(recursive=True):
        try:
            t = child.cpu_times()
        except psutil.Error:  # a process that just ended
            continue
        total += t.user + t.system
    return total


def _through_mesh(
    mesh: Any, wasm: bytes, inputs: list[bytes], k: int, scope: CapabilityScope
) -> tuple[float, list[float], int]:
    t0 = time.perf_counter()
    starts, handles = [], []
    for x in inputs:
        starts.append(time.perf_counter())
        handles.append(mesh.publish(wasm, x, fee=1_000, verifiers=k, scope=scope))
    latencies, accepted = [], 0
    for s, h in zip(starts, handles, strict=True):
        r = h.result(timeout=600)
        latencies.append(time.perf_counter() - s)
        accepted += r.accepted
    return time.perf_counter() - t0, sorted(latencies), accepted


def _bare(client: Any, warm: Any, inputs: list[bytes], k: int) -> float:
    t0 = time.perf_counter()
    payloads = [x for x in inputs for _ in range(1 + k)]
    client.gather(client.map(_bare_run, [warm] * len(payloads), payloads, pure=False))
    return time.perf_counter() - t0


def _ms(seconds: float, count: int) -> float:
    return round(seconds * 1000 / count, 2)


def _p99(latencies: list[float]) -> float:
    return round(latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))], 3)


#: The mesh's ways of reaching its Dask workers that ``bench mesh`` runs side by side:
#: (label, direct calls, batching, lanes). ``direct`` is the default (see ``DaskBackend``):
#: direct calls on a lane to each worker; ``direct_dask_comm`` makes them over Dask's comms.
PATHS = (
    ("direct", True, True, True),
    ("direct_unbatched", True, False, True),
    ("direct_dask_comm", True, True, False),
    ("dask_tasks", False, True, False),
)


def _spread(values: list[float]) -> list[float]:
    return [round(min(values), 3), round(max(values), 3)]


def run(quick: bool = False) -> dict[str, Any]:
    """Each task size in ``rounds`` rounds; a round runs bare Dask and then every path of
    :data:`PATHS`, in an order turned round each round (so a slow moment of the machine does
    not fall on one side only). A path's efficiency is the median of its rounds' (each its
    own round's bare time over its mesh time), with the spread (min, max)."""
    import logging
    import warnings

    from meshbench.runtime.mesh import Mesh

    logging.getLogger("distributed").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message="Sending large graph")
    n = 8 if quick else 48
    rounds = 1 if quick else 3
    k = 2
    workers = 4
    wasm = WASM.read_bytes()
    # input size, and a scope that fits (the backend batches executions of short scopes)
    sizes = {
        "10ms": (256 * 1024, SCOPE),
        "1ms": (16 * 1024, CapabilityScope(cpu_cycles=4_000_000, memory_mb=64)),
    }
    figures: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="meshbench-bench-") as tmp:
        policy = {"verification_quorum": {"minimum_verifiers": k}}
        with Mesh.local(workers=workers, data_dir=tmp, policy=policy) as mesh:
            client = mesh.client
            backend = mesh.node.backend
            node = mesh.node
            # warm both paths (module compiled and cached in every worker)
            warm = client.scatter(wasm, broadcast=True)
            client.gather(client.map(_bare_run, [warm] * workers, [b"x"] * workers, pure=False))
            for _, direct, _, lanes in PATHS:
                backend.direct, backend.lanes = direct, lanes
                mesh.map(wasm, [b"warm"], fee=1_000, verifiers=k, scope=SCOPE, progress=False)
            main: dict[str, Any] = {}
            execs = (1 + k) * n
            for label, (size, scope) in sizes.items():
                samples: dict[str, list[dict[str, Any]]] = {p[0]: [] for p in PATHS}
                samples["bare"] = []
                for r in range(rounds):
                    order = list(PATHS) if r % 2 == 0 else list(reversed(PATHS))
                    bare_first = r % 2 == 0
                    runs: list[Any] = [None, *order] if bare_first else [*order, None]
                    for path in runs:
                        inputs = [os.urandom(size) for _ in range(n)]
                        cpu0 = (time.process_time(), _children_cpu_s(), node.cpu_seconds())
                        intake0 = node.intake_cpu_seconds()
                        if path is None:
                            took = _bare(client, warm, inputs, k)
                            latencies: list[float] = []
                            accepted = 0
                        else:
                            name, direct, batching, lanes = path
                            backend.direct, backend.batching = direct, batching
                            backend.lanes = lanes
                            took, latencies, accepted = _through_mesh(mesh, wasm, inputs, k, scope)
                        cpu1 = (time.process_time(), _children_cpu_s(), node.cpu_seconds())
                        sample = {
                            "s": took,
                            "round": r,
                            "node_cpu_s": cpu1[0] - cpu0[0],
                            "workers_cpu_s": cpu1[1] - cpu0[1],
                            "driver_cpu_s": cpu1[2] - cpu0[2],
                            "intake_cpu_s": node.intake_cpu_seconds() - intake0,
                            "latencies": latencies,
                            "accepted": accepted,
                        }
                        samples["bare" if path is None else path[0]].append(sample)
                backend.direct, backend.batching, backend.lanes = True, True, True
                bare = samples["bare"]
                bare_s = statistics.median(b["s"] for b in bare)
                row: dict[str, Any] = {
                    "bare_s": round(bare_s, 3),
                    "bare_workers_cpu_ms_per_execution": _ms(
                        statistics.median(b["workers_cpu_s"] for b in bare), execs
                    ),
                    "bare_node_process_cpu_ms_per_execution": _ms(
                        statistics.median(b["node_cpu_s"] for b in bare), execs
                    ),
                }
                for name, *_ in PATHS:
                    got = samples[name]
                    effs = [bare[m["round"]]["s"] / m["s"] for m in got]
                    mid = sorted(got, key=lambda m: m["s"])[len(got) // 2]  # the median run
                    protocol = mid["driver_cpu_s"] + mid["intake_cpu_s"]
                    lat = sorted(x for m in got for x in m["latencies"])
                    figs = {
                        "s": round(statistics.median(m["s"] for m in got), 3),
                        "efficiency": round(statistics.median(effs), 3),
                        "efficiency_spread": _spread(effs),
                        "p99_latency_s": _p99(lat),
                        "authority_cpu_ms_per_task": _ms(mid["driver_cpu_s"], n),
                        "authority_protocol_cpu_ms_per_task": _ms(protocol, n),
                        "node_process_cpu_ms_per_task": _ms(mid["node_cpu_s"], n),
                        "workers_cpu_ms_per_task": _ms(mid["workers_cpu_s"], n),
                    }
                    row.update({f"{name}_{key}": value for key, value in figs.items()})
                    if label == "10ms" and name == "direct":
                        main = {
                            "bare_s": round(bare_s, 3),
                            "mesh_s": figs["s"],
                            "accepted": sum(m["accepted"] for m in got),
                            "rounds": rounds,
                            "verified_efficiency": figs["efficiency"],
                            "verified_efficiency_spread": figs["efficiency_spread"],
                            "tasks_per_s": round(n / figs["s"], 2),
                            "p50_latency_s": round(statistics.median(lat), 3),
                            "p99_latency_s": figs["p99_latency_s"],
                            "overhead_us_per_task": round(
                                max(0.0, figs["s"] - bare_s) * 1e6 / n, 1
                            ),
                            "authority_cpu_ms_per_task": figs["authority_cpu_ms_per_task"],
                            "authority_intake_cpu_ms_per_task": _ms(mid["intake_cpu_s"], n),
                            "authority_protocol_cpu_ms_per_task": figs[
                                "authority_protocol_cpu_ms_per_task"
                            ],
                            "node_process_cpu_ms_per_task": figs["node_process_cpu_ms_per_task"],
                            "workers_cpu_ms_per_task": figs["workers_cpu_ms_per_task"],
                        }
                figures[label] = row
            stats = backend.batch_stats()
            ok = mesh.node.verify_ledger().ok
        sampled = _sampled(Path(tmp) / "sampled", wasm, n, workers)
    return {
        "tasks": n,
        "verifiers": k,
        "workers": workers,
        **main,
        "by_task_size": figures,
        "batching": stats,
        "ledger_verified": ok,
        "sampled": sampled,
    }


def _sampled(data_dir: Path, wasm: bytes, n: int, workers: int) -> dict[str, Any]:
    """The price of trust end to end with sampled audits (the policy's ``audit`` section, as
    in ``meshbench.sim.table.ADAPTIVE``): N verified tasks through the mesh against bare Dask
    running the same N tasks once. Probation is served first (every worker's first results
    are audited), so the figure is the steady state."""
    from meshbench.runtime.agent import CostModel
    from meshbench.runtime.mesh import Mesh

    policy = {"audit": {"enabled": True, "rate_ppm": 50_000, "probation_tasks": 5}}
    # offers at the policy's minimum fee for the scope (16), well below the workers' bond
    # (200): the stake rule (q >= price / (price + bond)) then audits 7.4 %; at the default
    # cost model's 650 against a bond of 200 it would audit 76 %
    costs = dict.fromkeys(range(workers), CostModel(base=16, per_million_cycles=0))
    with Mesh.local(workers=workers, data_dir=data_dir, policy=policy, costs=costs) as mesh:
        client = mesh.client
        warm = client.scatter(wasm, broadcast=True)
        client.gather(client.map(_bare_run, [warm] * workers, [b"x"] * workers, pure=False))
        probation = [f"probation {i}".encode() for i in range(6 * workers)]
        mesh.map(wasm, probation, fee=1_000, scope=SCOPE, progress=False)
        ev = mesh.events()
        before = ev.filter(type="VerificationReceipt").height, ev.filter(type="AuditDrawn").height
        inputs = [os.urandom(256 * 1024) for _ in range(n)]
        bare = _bare(client, warm, inputs, 0)
        meshed, latencies, accepted = _through_mesh(mesh, wasm, inputs, 1, SCOPE)
        ev = mesh.events()
        audits = ev.filter(type="VerificationReceipt").height - before[0]
        drawn = ev.filter(type="AuditDrawn").height - before[1]
        referee = ev.filter(type="RefereeRuled").height
        rates = [e.rate_ppm for e in mesh.node.ledger_events() if type(e).__name__ == "AuditDrawn"]
        return {
            "bare_once_s": round(bare, 3),
            "mesh_s": round(meshed, 3),
            "accepted": accepted,
            "price_of_trust_efficiency": round(bare / meshed, 3),
            "executions_per_task": round((n + audits + referee) / n, 3),
            "audited": audits,
            "drawn": drawn,
            "audit_rate": round(statistics.median(rates[-n:]) / 1e6, 4) if rates else None,
            "p99_latency_s": _p99(latencies),
            "ledger_verified": mesh.node.verify_ledger().ok,
        }
