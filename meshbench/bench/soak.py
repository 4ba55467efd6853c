"""``meshbench bench soak``: many tasks through one mesh, looking for what grows.

N verified tasks (sha256 of a small input, one verifier) go through a Dask ``LocalCluster``
in chunks; after each chunk the suite prints the chunk's latency percentiles and this
process's memory (RSS), open files and threads, and the workers' memory. Flat means: after
the first chunk (warm-up: modules compiled, pools started) open files and threads do not
grow and memory grows by no more than the books' rows for the tasks added (reported per
task). 10,000 tasks with ``make soak`` (``MESHBENCH_SOAK_TASKS=100000`` for the long form,
printed per 10,000); 500 with ``--quick``.
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from meshbench.core.types import CapabilityScope

WASM = Path(__file__).resolve().parents[2] / "datasets" / "wasm" / "sha256.wasm"
SCOPE = CapabilityScope(cpu_cycles=4_000_000, memory_mb=64)


def rss_mb() -> float:
    """This process's resident memory, in MiB (Linux)."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return round(pages * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)


def open_files() -> int:
    return len(os.listdir("/proc/self/fd"))


FEE = 200

#: Samples each Dask system monitor keeps in the soak (at 0.5 s: a minute). Dask's default
#: is an hour's (7,200), held in this process by the scheduler's monitor and each worker's
#: nanny's, ~11 MB at 3 workers reached after an hour whatever the tasks: with the default
#: a soak shorter than that would report time, not history, as growth per task.
MONITOR_SAMPLES = 120


def _fund(mesh: Any, size: int) -> None:
    """Top the publisher up from the demo federation's faucet when it cannot pay the
    chunk's fees (the publisher's funds paid for 10,000 tasks at a fee of 200: the
    100,000-task form ran out there). Minted tokens are counted: the ledger check at the
    end still balances."""
    from meshbench.core.protocol import Faucet
    from meshbench.runtime.mesh import PUBLISHER_FUNDS

    need = size * FEE
    have = mesh.node.balance(mesh.publisher.did)
    if have < need:
        amount = max(PUBLISHER_FUNDS, need - have)
        mesh.node.submit(Faucet(account=mesh.publisher.did, amount=amount, memo="soak top-up"))


def _chunk(mesh: Any, wasm: bytes, start: int, size: int) -> list[float]:
    """Publish ``size`` tasks at once and wait for all; their latencies (s), sorted."""
    _fund(mesh, size)
    handles = [
        # published at once: the last of a chunk waits for all before it (the default 120 s
        # deadline expired tasks of a 1,000-task chunk); the wait below allows 600 s
        mesh.publish(wasm, f"soak-{i}".encode(), fee=FEE, verifiers=1, scope=SCOPE, deadline_s=600)
        for i in range(start, start + size)
    ]
    latencies = []
    for h in handles:
        result = h.result(timeout=600)
        if not result.accepted or result.settlement is None:
            raise RuntimeError(f"soak task {h.cid} ended {result.outcome}")
        # each task's own: publication to settlement, by the authority's clock (waiting on
        # the handles in turn would give the first one's time to all that settled before it)
        latencies.append(max(0, result.settlement.timestamp - h.task.created_at) / 1000)
    return sorted(latencies)


def _pct(xs: list[float], q: float) -> float:
    return round(xs[min(len(xs) - 1, int(q * len(xs)))], 3)


def run_soak(
    tasks: int = 10_000, chunk: int = 1_000, workers: int = 3, every: int | None = None
) -> dict[str, Any]:
    """``tasks`` in chunks of ``chunk`` published at once; a row every ``every`` tasks (a
    chunk by default) with that stretch's latency percentiles and the memory then."""
    import logging

    import dask

    from meshbench.runtime.mesh import Mesh

    logging.getLogger("distributed").setLevel(logging.ERROR)
    wasm = WASM.read_bytes()
    rows: list[dict[str, Any]] = []
    every = max(chunk, every or chunk)
    policy = {"verification_quorum": {"minimum_verifiers": 1}}
    with (
        tempfile.TemporaryDirectory(prefix="meshbench-soak-") as tmp,
        dask.config.set({"distributed.admin.system-monitor.log-length": MONITOR_SAMPLES}),
        Mesh.local(workers=workers, data_dir=tmp, policy=policy) as mesh,
    ):
        t0 = time.perf_counter()
        stretch: list[float] = []
        for start in range(0, tasks, chunk):
            size = min(chunk, tasks - start)
            stretch += _chunk(mesh, wasm, start, size)
            if (start + size) % every and start + size < tasks:
                continue
            latencies, stretch = sorted(stretch), []
            worker_rss = mesh.client.run(rss_mb)
            row = {
                "tasks": start + size,
                "p50_s": _pct(latencies, 0.5),
                "p90_s": _pct(latencies, 0.9),
                "p99_s": _pct(latencies, 0.99),
                "rss_mb": rss_mb(),
                "workers_rss_mb": round(max(worker_rss.values()), 1),
                "open_files": open_files(),
                "threads": threading.active_count(),
                "elapsed_s": round(time.perf_counter() - t0, 1),
            }
            rows.append(row)
            print(" ".join(f"{k}={v}" for k, v in row.items()), file=sys.stderr, flush=True)
        wall = time.perf_counter() - t0
        t1 = time.perf_counter()
        report = mesh.node.verify_ledger()
        verify_s = time.perf_counter() - t1
    first, last = rows[0], rows[-1]
    added = last["tasks"] - first["tasks"]
    return {
        "tasks": tasks,
        "chunk": chunk,
        "tasks_per_s": round(tasks / wall, 1),
        "chunks": rows,
        "rss_growth_kb_per_task": round((last["rss_mb"] - first["rss_mb"]) * 1024 / added, 2)
        if added
        else 0.0,
        "workers_rss_growth_mb": round(last["workers_rss_mb"] - first["workers_rss_mb"], 1),
        "open_files_growth": last["open_files"] - first["open_files"],
        "threads_growth": last["threads"] - first["threads"],
        "ledger_verified": report is not None and report.ok,
        "ledger_events": report.events if report is not None else 0,
        "ledger_verify_s": round(verify_s, 1),
    }


def run(quick: bool = False) -> dict[str, Any]:
    """500 tasks with ``--quick``; else ``MESHBENCH_SOAK_TASKS`` (default 10,000, the
    ``make soak`` form; 100,000 on demand), printed per tenth."""
    if quick:
        return run_soak(500, 100)
    tasks = int(os.environ.get("MESHBENCH_SOAK_TASKS", "10000"))
    # chunks of at most 1,000 published at once (their deadline allows 600 s), a row per tenth
    return run_soak(tasks, min(1_000, max(1, tasks // 10)), every=max(1, tasks // 10))
