"""``meshbench bench agent``: what keeping commitments on disk costs a worker.

A :class:`~meshbench.runtime.agent.WorkerAgent` executes tiny tasks (``sha256.wasm`` on a
few bytes), commits, reveals and forgets them, in three forms side by side in one run:
memory only (the baseline, as before commitments were kept), with a
:class:`~meshbench.runtime.commitments.CommitmentStore` (the default: no ``fsync``; a
SIGKILL loses nothing), and with ``fsync=True`` (a power loss loses nothing either). The
forms alternate in rounds, so that a machine busy with something else slows each alike;
each figure is the median of its rounds. Reported: cycles (execute + reveal) per second,
microseconds per cycle and the ratio to memory only.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["run"]

FORMS = ("memory", "store", "store_fsync")


def _cycles(agent: Any, tasks: list[Any], wasm: bytes) -> float:
    """Seconds to execute and reveal each of ``tasks`` (as the runtime does: it never
    forgets a task; the store's bounds drop old answers)."""
    started = time.perf_counter()
    for i, task in enumerate(tasks):
        agent.execute(task, wasm, b"x", 1 + i, role="worker")
        agent.reveal(task.cid, 2 + i)
    return time.perf_counter() - started


def run(quick: bool = False) -> dict[str, Any]:
    from meshbench.bench.memory import WASM
    from meshbench.exec.wasm import WasmExecutor
    from meshbench.runtime.agent import WorkerAgent
    from meshbench.runtime.commitments import CommitmentStore
    from meshbench.testing.factories import make_identity, make_task
    from meshbench.testing.faults import HARDWARE

    wasm = WASM.read_bytes()
    rounds, per_round = (3, 50) if quick else (5, 200)
    publisher, identity = make_identity(90), make_identity(91)
    tasks = [
        make_task(publisher, wasm=wasm, data=b"x", nonce=n, sign=True)
        for n in range(rounds * per_round)
    ]
    with tempfile.TemporaryDirectory(prefix="meshbench-bench-agent-") as tmp:
        executor = WasmExecutor()  # one module cache: the engine is measured alike
        stores = {
            "memory": None,
            "store": CommitmentStore(Path(tmp) / "a"),
            "store_fsync": CommitmentStore(Path(tmp) / "b", fsync=True),
        }
        agents = {
            form: WorkerAgent(
                identity, "did:key:fed", HARDWARE, executor=executor, commitments=store
            )
            for form, store in stores.items()
        }
        for agent in agents.values():
            _cycles(agent, tasks[:5], wasm)  # warm: module compiled, files created
        times: dict[str, list[float]] = {f: [] for f in FORMS}
        for r in range(rounds):
            batch = tasks[r * per_round : (r + 1) * per_round]
            order = FORMS[r % 3 :] + FORMS[: r % 3]
            for form in order:
                times[form].append(_cycles(agents[form], batch, wasm) / per_round)
    per = {f: statistics.median(t) for f, t in times.items()}
    out: dict[str, Any] = {"cycles": rounds * per_round, "rounds": rounds}
    for form in FORMS:
        out[f"{form}_cycles_per_s"] = round(1 / per[form], 1)
        out[f"{form}_us_per_cycle"] = round(per[form] * 1e6, 1)
    out["store_over_memory"] = round(per["store"] / per["memory"], 3)
    out["store_fsync_over_memory"] = round(per["store_fsync"] / per["memory"], 3)
    out["store_added_us_per_cycle"] = round((per["store"] - per["memory"]) * 1e6, 1)
    return out
