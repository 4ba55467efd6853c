"""``meshbench bench memory``: what an authority holds in memory per settled task.

Tasks go through a whole in-process mesh (offers, selection, execution, two verifiers,
commit-reveal, quorum, escrow, ledger) in rounds; the Python heap is measured (tracemalloc)
after a first ``warm`` round and again after ``tasks`` more, and the growth is divided by the
tasks settled in between. Memory flat in history means that figure stays small (at most ~2 KB)
however many tasks were settled: a settled task leaves memory, the ledger keeps it. The
ledger's own checks are timed on the same history: ``ledger verify`` and a Polars frame of the
events and of the tasks, per 10k events.
"""

from __future__ import annotations

import gc
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

from meshbench.core.types import CapabilityScope

WASM = Path(__file__).resolve().parents[2] / "datasets" / "wasm" / "hello.wasm"
SCOPE = CapabilityScope(cpu_cycles=1_000_000, memory_mb=16)
ROUND = 50  # tasks published together, then awaited


def _settle(mesh: Any, wasm: bytes, start: int, count: int) -> None:
    handles = [
        mesh.publish(wasm, f"task {i}".encode(), fee=1_000, verifiers=2, scope=SCOPE)
        for i in range(start, start + count)
    ]
    for h in handles:
        if not h.result(timeout=120).accepted:
            raise RuntimeError(f"task {h.cid} was not accepted")


def _heap() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


def measure(tasks: int, *, warm: int = 100, keep_records: int = 16) -> dict[str, Any]:
    """Settle ``warm`` then ``tasks`` tasks; bytes held per settled task in between."""
    from meshbench.runtime.mesh import Mesh

    wasm = WASM.read_bytes()
    with tempfile.TemporaryDirectory(prefix="meshbench-memory-") as tmp:
        policy = {"verification_quorum": {"minimum_verifiers": 2}}
        with Mesh.in_process(workers=4, data_dir=tmp, policy=policy) as mesh:
            mesh.node.keep_settled_records = keep_records
            tracemalloc.start(1)
            try:
                for s in range(0, warm, ROUND):
                    _settle(mesh, wasm, s, min(ROUND, warm - s))
                before = _heap()
                started = time.perf_counter()
                for s in range(warm, warm + tasks, ROUND):
                    _settle(mesh, wasm, s, min(ROUND, warm + tasks - s))
                seconds = time.perf_counter() - started
                after = _heap()
            finally:
                tracemalloc.stop()
            events = len(mesh.node.ledger_events())
            t0 = time.perf_counter()
            report = mesh.node.verify_ledger()
            verify_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            mesh.events()
            mesh.tasks()
            frames_s = time.perf_counter() - t0
            open_tasks = len(mesh.node.state.tasks) if mesh.node.state else -1
    per_10k = 10_000 / max(1, events)
    return {
        "tasks": tasks,
        "warm_tasks": warm,
        "bytes_per_settled_task": round((after - before) / tasks, 1),
        "tasks_per_s": round(tasks / seconds, 1),
        "open_tasks_in_memory": open_tasks,
        "events": events,
        "ledger_verified": bool(report is not None and report.ok),
        "ledger_verify_s_per_10k_events": round(verify_s * per_10k, 3),
        "frames_s_per_10k_events": round(frames_s * per_10k, 3),
    }


def run(quick: bool = False) -> dict[str, Any]:
    sizes = (200,) if quick else (1_000, 10_000)
    return {f"{n}_tasks": measure(n) for n in sizes}
