"""Publishing Python functions to a mesh: what ``Mesh.publish(python=fn)`` and
``Mesh.map(fn, inputs)`` use, and the Polars view of their results.

The runtime blob (~100 MB) enters the mesh's blob store once, by file; every task names it
by CID, and each worker receives and compiles it once (the executors' module caches).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import polars as pl

from meshbench.core.encoding import CID
from meshbench.core.types import CapabilityScope
from meshbench.exec.pyruntime import find_runtime
from meshbench.exec.python_task import PythonCall, PythonTaskFailed, python_args, result_value
from meshbench.store.blobs import BlobStore

__all__ = ["MeshFunction", "PythonPublication", "prepare_python", "python_fee", "results_frame"]

#: What a default worker asks per million cycles (CostModel), plus its base price.
_BASE_COST, _PER_MILLION = 50, 10


def python_fee(scope: CapabilityScope) -> int:
    """A fee a default-priced worker accepts for ``scope`` (its CostModel's price)."""
    return _BASE_COST + -(-scope.cpu_cycles * _PER_MILLION // 1_000_000)


@dataclass(frozen=True, slots=True)
class PythonPublication:
    """The parts of a TaskIntent for one Python call."""

    module_cid: CID
    input: bytes
    args: tuple[str, ...]
    scope: CapabilityScope


def prepare_python(
    store: BlobStore,
    python: Callable[..., Any] | PythonCall,
    args: Iterable[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    scope: CapabilityScope | None = None,
) -> PythonPublication:
    """The runtime stored once in ``store``, and ``python(*args, **kwargs)``'s bundle."""
    if isinstance(python, PythonCall):
        call = python
    else:
        call = PythonCall.from_function(python, *tuple(args), scope=scope, **dict(kwargs or {}))
    runtime = find_runtime()
    if not store.has(runtime.module_cid):
        store.put_file(runtime.module_path)
    return PythonPublication(
        module_cid=runtime.module_cid,
        input=call.bundle(runtime),
        args=python_args(),
        scope=scope or call.scope,
    )


def results_frame(handles: Iterable[Any]) -> pl.DataFrame:
    """One row per task handle: ``task``, ``outcome``, ``error`` and the return value, whose
    keys become columns when it is a map (a column ``value`` otherwise)."""
    rows = []
    for handle in handles:
        result = handle.result()
        row: dict[str, Any] = {"task": str(handle.cid), "outcome": result.outcome, "error": None}
        if result.output is None:
            rows.append(row)
            continue
        try:
            value = result_value(result.output)
        except PythonTaskFailed as exc:
            row["error"] = str(exc).splitlines()[0]
            rows.append(row)
            continue
        if isinstance(value, dict):
            row.update({k: v for k, v in value.items() if k not in row})
        else:
            row["value"] = value
        rows.append(row)
    return pl.DataFrame(rows, strict=False)


class MeshFunction:
    """A function bound to a mesh (``@mesh.task``): calling it runs it there, verified.

    ``f(x)`` publishes one task and returns its verified value; ``f.publish(x)`` returns the
    handle without waiting; ``f.map(inputs)`` is ``mesh.map(f, inputs)``; ``f.local(x)``
    calls the plain function here.
    """

    def __init__(self, mesh: Any, fn: Callable[..., Any], **publish: Any) -> None:
        self.mesh = mesh
        self.fn = fn
        self.options = publish
        self.__name__ = fn.__name__
        self.__doc__ = fn.__doc__
        self.__wrapped__ = fn

    def publish(self, *args: Any) -> Any:
        return self.mesh.publish(python=self.fn, args=args, **self.options)

    def __call__(self, *args: Any) -> Any:
        return self.publish(*args).result().value()

    def map(self, inputs: Iterable[Any], **kwargs: Any) -> list[Any]:
        return self.mesh.map(self.fn, inputs, **{**self.options, **kwargs})

    def local(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"MeshFunction({self.fn.__name__} on {self.mesh!r})"
