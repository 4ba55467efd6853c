"""``meshbench bench mesh``: verified tasks through the mesh vs bare Dask, in one run.

N tasks of about 10 ms of wasm each (sha256 of 256 KiB), each with k verifiers, go through
the whole protocol (offers, selection, execution, k re-executions, commit-reveal, quorum,
escrow, ledger) on a Dask ``LocalCluster``; the baseline runs the same wasm function
(1 + k) * N times as plain Dask tasks on the same cluster. ``verified_efficiency`` is the
bare time over the mesh time (1.0 = verification costs nothing beyond the re-executions).
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


def _bare_run(wasm: bytes, data: bytes) -> int:
    """The baseline: one wasm execution in a Dask task (executor cached per process)."""
    global _EXECUTOR
    if _EXECUTOR is None:
        from meshbench.exec.wasm import WasmExecutor

        _EXECUTOR = WasmExecutor()
    return _EXECUTOR.run(wasm, data, scope=SCOPE).summary.fuel_used


def run(quick: bool = False) -> dict[str, Any]:
    import logging

    from meshbench.runtime.mesh import Mesh

    logging.getLogger("distributed").setLevel(logging.ERROR)
    n = 8 if quick else 48
    k = 2
    workers = 4
    wasm = WASM.read_bytes()
    inputs = [os.urandom(256 * 1024) for _ in range(n)]
    with tempfile.TemporaryDirectory(prefix="meshbench-bench-") as tmp:
        policy = {"verification_quorum": {"minimum_verifiers": k}}
        with Mesh.local(workers=workers, data_dir=tmp, policy=policy) as mesh:
            client = mesh.client
            # warm both paths (module compiled and cached in every worker)
            warm = client.scatter(wasm, broadcast=True)
            client.gather(client.map(_bare_run, [warm] * workers, [b"x"] * workers, pure=False))
            mesh.map(wasm, [b"warm"], fee=1_000, verifiers=k, scope=SCOPE, progress=False)

            t0 = time.perf_counter()
            futures = client.map(
                _bare_run, [warm] * (n * (1 + k)), [x for x in inputs for _ in range(1 + k)],
                pure=False,
            )  # fmt: skip
            client.gather(futures)
            bare = time.perf_counter() - t0

            t0 = time.perf_counter()
            starts = []
            handles = []
            for x in inputs:
                starts.append(time.perf_counter())
                handles.append(mesh.publish(wasm, x, fee=1_000, verifiers=k, scope=SCOPE))
            latencies = []
            accepted = 0
            for s, h in zip(starts, handles, strict=True):
                r = h.result(timeout=600)
                latencies.append(time.perf_counter() - s)
                accepted += r.accepted
            meshed = time.perf_counter() - t0
            ok = mesh.node.verify_ledger().ok
    latencies.sort()
    return {
        "tasks": n,
        "verifiers": k,
        "workers": workers,
        "accepted": accepted,
        "bare_s": round(bare, 3),
        "mesh_s": round(meshed, 3),
        "verified_efficiency": round(bare / meshed, 3),
        "tasks_per_s": round(n / meshed, 2),
        "p50_latency_s": round(statistics.median(latencies), 3),
        "p99_latency_s": round(latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))], 3),
        "overhead_us_per_task": round(max(0.0, meshed - bare) * 1e6 / n, 1),
        "ledger_verified": ok,
    }
