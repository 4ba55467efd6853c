"""Benchmarks, run with ``meshbench bench NAME``. Each reports ratios measured in one run.

A benchmark is a module ``meshbench.bench.<name>`` with ``run(quick: bool) -> dict``.
"""

from __future__ import annotations

import importlib
from typing import Any

from meshbench.core.errors import MeshError

#: name -> module path; add a line here to register a benchmark.
BENCHMARKS: dict[str, str] = {
    "encoding": "meshbench.bench.encoding",
    "exec": "meshbench.bench.exec",
    "protocol": "meshbench.bench.protocol",
    "net": "meshbench.bench.net",
    "mesh": "meshbench.bench.mesh",
    "python": "meshbench.bench.python",
    "verify": "meshbench.bench.verify",
    "memory": "meshbench.bench.memory",
    "agent": "meshbench.bench.agent",
    "reliability": "meshbench.bench.reliability",
    "reliability-p2p": "meshbench.bench.reliability_p2p",  # bench reliability --transport p2p
    "soak": "meshbench.bench.soak",
    # provided by the meshbench-cuda extension (extensions/meshbench-cuda)
    "gpu": "meshbench_cuda.bench",
}


#: Long runs left out of ``meshbench bench all`` (``make soak`` runs them).
ON_DEMAND: frozenset[str] = frozenset({"reliability", "reliability-p2p", "soak"})


def run_benchmark(name: str, *, quick: bool = False) -> dict[str, Any]:
    if name not in BENCHMARKS:
        raise MeshError(f"no benchmark {name!r}; known: {', '.join(BENCHMARKS)}")
    try:
        module = importlib.import_module(BENCHMARKS[name])
    except ModuleNotFoundError as exc:
        raise MeshError(
            f"benchmark {name!r} needs {exc.name!r}: install its extension "
            "(pip install -e extensions/meshbench-cuda)"
        ) from exc
    return module.run(quick=quick)
