"""``meshbench cluster run``: a headless batch of tasks on a Dask cluster, with a report.

TASKS.json is a list of tasks (or ``{"defaults": {...}, "tasks": [...]}``); each task has
``wasm`` (a path, relative to the JSON file) and optionally ``input`` (a path),
``input_text``, ``args``, ``fee``, ``verifiers``, ``cpu_cycles``, ``memory_mb``, ``io_mb``,
``output`` and ``deadline_s``. A Python task names ``python`` (a ``.py`` file) instead of
``wasm``, with ``entry`` (its function, default ``main``) and ``args`` (the function's
arguments, any JSON values); its limits default to the python executor's. Example::

    [{"wasm": "datasets/wasm/sha256.wasm", "input_text": "hello", "verifiers": 2},
     {"python": "stats.py", "entry": "summary", "args": [[1, 2, 4]], "verifiers": 1}]
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click

from meshbench.cli.common import InputFile, data_dir_option, emit, resolve_data_dir
from meshbench.core.errors import SchemaError
from meshbench.core.types import CapabilityScope

_KNOWN = {
    "wasm", "input", "input_text", "args", "fee", "verifiers", "cpu_cycles", "memory_mb",
    "io_mb", "output", "deadline_s", "python", "entry",
}  # fmt: skip


def load_batch(path: Path) -> list[dict[str, Any]]:
    """Read and check a TASKS.json file (typed errors, nothing published on a bad file)."""
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise SchemaError(f"{path} is not valid JSON: {exc}") from exc
    defaults: dict[str, Any] = {}
    if isinstance(data, dict):
        defaults = data.get("defaults", {})
        data = data.get("tasks")
    if not isinstance(data, list) or not data:
        raise SchemaError(f"{path} must hold a non-empty list of tasks")
    tasks = []
    for i, raw in enumerate(data):
        if not isinstance(raw, dict):
            raise SchemaError(f"task {i} is not an object")
        spec = {**defaults, **raw}
        unknown = set(spec) - _KNOWN
        if unknown:
            raise SchemaError(
                f"task {i} has unknown fields {sorted(unknown)}; known: {sorted(_KNOWN)}"
            )
        if "wasm" not in spec and "python" not in spec:
            raise SchemaError(f"task {i} names no wasm module (or python file)")
        if "wasm" in spec and "python" in spec:
            raise SchemaError(f"task {i} names both a wasm module and a python file")
        for key in ("wasm", "input", "python"):
            if key in spec:
                p = Path(spec[key])
                spec[key] = p if p.is_absolute() else (path.parent / p)
                if not spec[key].is_file():
                    raise SchemaError(f"task {i}: no such file {spec[key]}")
        tasks.append(spec)
    return tasks


def _publish(mesh: Any, spec: dict[str, Any]) -> Any:
    if "python" in spec:
        return _publish_python(mesh, spec)
    scope = CapabilityScope(
        memory_mb=spec.get("memory_mb", 128),
        cpu_cycles=spec.get("cpu_cycles", 1_000_000),
        io_mb=spec.get("io_mb", 50),
    )
    data: Any = spec["input"] if "input" in spec else spec.get("input_text", "")
    return mesh.publish(
        spec["wasm"],
        data,
        fee=spec.get("fee", 100),
        verifiers=spec.get("verifiers", 3),
        scope=scope,
        args=spec.get("args", ()),
        output=spec.get("output", "stdout"),
        deadline_s=spec.get("deadline_s", 300),
    )


def _publish_python(mesh: Any, spec: dict[str, Any]) -> Any:
    from meshbench.exec.python_task import PYTHON_SCOPE, PythonCall

    scope = CapabilityScope(
        memory_mb=spec.get("memory_mb", PYTHON_SCOPE.memory_mb),
        cpu_cycles=spec.get("cpu_cycles", PYTHON_SCOPE.cpu_cycles),
        io_mb=spec.get("io_mb", PYTHON_SCOPE.io_mb),
    )
    args = spec.get("args", [])
    if not isinstance(args, list):
        raise SchemaError(f"a python task's args are a list of JSON values, not {args!r}")
    call = PythonCall.from_file(spec["python"], *args, entry=spec.get("entry", "main"), scope=scope)
    return mesh.publish(
        python=call,
        fee=spec.get("fee"),
        verifiers=spec.get("verifiers", 3),
        scope=scope,
        deadline_s=spec.get("deadline_s", 300),
    )


@click.group()
def cluster() -> None:
    """Headless runs on a Dask cluster.

    \b
    Example:
      meshbench cluster run tasks.json --local 3
    """


@cluster.command("run")
@click.argument("tasks_file", type=InputFile())
@click.option("--scheduler", default=None, help="Dask scheduler address (tcp://host:8786).")
@click.option("--local", "local_workers", type=click.IntRange(2, 64), default=None,
              help="Start a LocalCluster of this many workers instead.")  # fmt: skip
@click.option("--report", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("report.json"), show_default=True)  # fmt: skip
@click.option("--timeout", type=float, default=600, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Also print the report's summary as JSON.")
@click.option("--progress/--no-progress", default=None,
              help="A progress bar on stderr (default: when stderr is a terminal).")  # fmt: skip
@data_dir_option
def cluster_run(
    tasks_file: Path,
    scheduler: str | None,
    local_workers: int | None,
    report: Path,
    timeout: float,
    as_json: bool,
    progress: bool | None,
    data_dir: Path | None,
) -> None:
    """Run every task of TASKS_FILE through the mesh and write a report.

    The mesh keeps its ledger and blobs in the data dir, so 'meshbench get OUTPUT_CID'
    reads any output of the report afterwards.

    \b
    Example:
      echo '[{"wasm": "datasets/wasm/sha256.wasm", "input_text": "hi"}]' > tasks.json
      meshbench cluster run tasks.json --local 3
    """
    import logging
    import sys

    from tqdm.auto import tqdm

    from meshbench.runtime.mesh import Mesh

    logging.getLogger("distributed").setLevel(logging.ERROR)
    specs = load_batch(tasks_file)
    if (scheduler is None) == (local_workers is None):
        raise click.UsageError("give exactly one of --scheduler ADDR or --local N")
    root = resolve_data_dir(data_dir)
    t0 = time.monotonic()
    executors = ("python",) if any("python" in s for s in specs) else ()
    if scheduler is not None:
        mesh = Mesh.connect(scheduler, data_dir=root, executors=executors)
    else:
        mesh = Mesh.local(workers=local_workers or 4, data_dir=root, executors=executors)
    with mesh:
        for line in verifier_warnings(specs, mesh.policy.verification_quorum, _workers(mesh)):
            click.echo(f"warning: {line}", err=True)
        handles = [_publish(mesh, s) for s in specs]
        rows = []
        show = sys.stderr.isatty() if progress is None else progress
        with tqdm(total=len(handles), disable=not show, desc="tasks", file=sys.stderr) as bar:
            for i, h in enumerate(handles):
                rows.append(_row(i, h, h.result(timeout=timeout)))
                bar.update(1)
        ledger = mesh.node.verify_ledger()
        outcomes = [row["outcome"] for row in rows]
        summary = {
            "tasks": len(rows),
            "accepted": outcomes.count("Accepted"),
            "rejected": outcomes.count("Rejected"),
            "other": len(rows) - outcomes.count("Accepted") - outcomes.count("Rejected"),
            "wall_s": round(time.monotonic() - t0, 3),
            "ledger_ok": ledger.ok,
            "workers": _workers(mesh),
            "data_dir": str(root),
        }
    report.write_text(json.dumps({"summary": summary, "tasks": rows}, indent=2))
    emit(summary, as_json=as_json)
    if not as_json:
        click.echo(f"report written to {report}")
        click.echo(f"outputs and ledger in {root}: meshbench get OUTPUT_CID --data-dir {root}")


def _workers(mesh: Any) -> int:
    return int(mesh.node.backend.worker_count())


def verifier_warnings(specs: list[dict[str, Any]], quorum: Any, workers: int) -> list[str]:
    """What the policy and the cluster's size will change in the tasks' verifier counts."""
    out = []
    for asked in sorted({int(s.get("verifiers", 3)) for s in specs}):
        given = quorum.verifiers_for(asked)
        if given != asked:
            bound = "minimum" if given > asked else "maximum"
            out.append(
                f'"verifiers": {asked} becomes {given}: the policy\'s {bound}_verifiers is {given}'
            )
        if given > workers - 1:
            out.append(
                f"{given} verifiers need {given + 1} workers (the worker never verifies "
                f"itself); this cluster has {workers}: tasks get at most {workers - 1}"
            )
    return out


def _row(i: int, h: Any, r: Any) -> dict[str, Any]:
    return {
        "index": i,
        "task_cid": str(h.cid),
        "outcome": r.outcome,
        "output_cid": None if r.output_cid is None else str(r.output_cid),
        "worker": None if r.receipt is None else r.receipt.worker,
        "fuel_used": None if r.receipt is None else r.receipt.summary.fuel_used,
        "approvals": sum(v.approved for v in r.verifications),
        "verifications": len(r.verifications),
        "payouts": []
        if r.settlement is None
        else [
            {"account": p.account, "role": p.role, "amount": p.amount} for p in r.settlement.payouts
        ],
    }
