"""The built-in ``wasm`` executor: deterministic, sandboxed, metered wasmtime execution.

Results are a pure function of (module bytes, input bytes, args, directories, scope, seed):
see :mod:`meshbench.exec.engine` for the engine settings and :mod:`meshbench.exec.wasi` for
the virtual system interface.

Limits from :class:`~meshbench.core.types.CapabilityScope`:

- **fuel** = ``cpu_cycles`` × :data:`FUEL_PER_CYCLE` (1): one unit of wasmtime fuel is
  about one executed wasm instruction (``nop``, ``drop``, ``block``, ``loop`` and friends are
  free), so a scope's ``cpu_cycles`` is its budget of wasm instructions. Each host call
  (WASI or ICN ABI) costs 100 fuel plus 1 per 64 bytes it moved, so host work is priced too.
- **memory**: ``memory_mb`` caps linear memory (plus :data:`MAX_TABLE_ELEMENTS` table
  elements, one instance, one memory). wasmtime refuses a ``memory.grow`` past the cap by
  returning -1 (no trap); modules are rewritten to record such refusals
  (:mod:`meshbench.exec.instrument`), and a run that fails (trap or non-zero exit) after one
  raises :class:`~meshbench.core.errors.MemoryLimitExceeded` instead of reporting the
  guest's own exit code. A guest that copes with the refusal and succeeds keeps its result.
- **I/O**: ``io_mb`` bounds all bytes in and out (see :mod:`meshbench.exec.wasi`).
- **wall clock**: a backstop only (epoch interruption), ``timeout_s`` or by default
  ``5 s + fuel / 20e6 s``; hitting it raises
  :class:`~meshbench.core.errors.ExecutionTimeout`, which is not a deterministic outcome and
  must never be reported as a result.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import wasmtime

from meshbench.core.encoding import CID, RAW, blob_cid, parse_cid
from meshbench.core.errors import (
    ExecutionError,
    ExecutionTimeout,
    GuestTrap,
    InvalidModule,
    IOLimitExceeded,
    MemoryLimitExceeded,
    OutOfFuel,
)
from meshbench.core.types import MB, CapabilityScope, ExecutionSummary, TaskIntent
from meshbench.exec.cache import LoadedModule, ModuleCache
from meshbench.exec.engine import (
    EPOCH_TICK_S,
    MAX_TABLE_ELEMENTS,
    engine_identity,
    epoch_ticking,
    get_engine,
    run_slot,
)
from meshbench.exec.hostcall import GuestStore
from meshbench.exec.instrument import REFUSED_EXPORT
from meshbench.exec.plugins import ExecutionResult
from meshbench.exec.wasi import GuestContext, ProcExit, Tree, bind
from meshbench.store.blobs import BlobStore

__all__ = [
    "FUEL_PER_CYCLE",
    "MAX_ARGV_BYTES",
    "MAX_TABLE_ELEMENTS",
    "WasmExecutor",
    "fuel_for",
    "tree_from_host_dir",
    "tree_from_manifest",
]

FUEL_PER_CYCLE: Final = 1
MAX_ARGS: Final = 4096
MAX_ARGV_BYTES: Final = 1024 * 1024
#: Largest single file and whole tree that ``tree_from_host_dir`` will read.
MAX_DIR_BYTES: Final = 1024 * MB


def fuel_for(scope: CapabilityScope) -> int:
    """The fuel budget of a scope (see the module docstring for the mapping)."""
    return scope.cpu_cycles * FUEL_PER_CYCLE


def tree_from_host_dir(path: str | os.PathLike[str]) -> dict[str, bytes | dict]:
    """Read a host directory into an input tree (symbolic links are skipped, not followed)."""
    total = 0

    def walk(p: Path) -> dict[str, bytes | dict]:
        nonlocal total
        out: dict[str, bytes | dict] = {}
        for child in sorted(p.iterdir()):
            if child.is_symlink():
                continue
            if child.is_dir():
                out[child.name] = walk(child)
            elif child.is_file():
                total += child.stat().st_size
                if total > MAX_DIR_BYTES:
                    raise ExecutionError(f"{path} holds more than {MAX_DIR_BYTES} bytes")
                out[child.name] = child.read_bytes()
        return out

    root = Path(path)
    if not root.is_dir():
        raise ExecutionError(f"{path} is not a directory")
    return walk(root)


def tree_from_manifest(manifest: Mapping[str, Any], store: BlobStore) -> dict[str, bytes | dict]:
    """An input tree from a directory manifest: names to raw CIDs (files) or sub-manifests.

    This is how a task carries directories by CID: the manifest (a small DAG-CBOR map or
    JSON object) names each file's CID; every blob is fetched from ``store`` and hash-checked.
    """
    out: dict[str, bytes | dict] = {}
    for name, ref in manifest.items():
        if isinstance(ref, Mapping):
            out[name] = tree_from_manifest(ref, store)
        else:
            out[name] = store.get(parse_cid(ref, codec=RAW))
    return out


class WasmExecutor:
    """Runs WASI command modules and ICN-ABI modules on wasmtime, deterministically.

    One executor can serve many tasks (and threads): modules are compiled once per host
    (:class:`~meshbench.exec.cache.ModuleCache`) and linked once per process.

    Example::

        result = WasmExecutor().run(wasm_bytes, b"input", args=("--fast",))
        result.output_cid, result.summary.fuel_used
    """

    name = "wasm"

    def __init__(
        self,
        cache: ModuleCache | None = None,
        *,
        cache_dir: str | os.PathLike[str] | None = None,
        pinned_engine: str | None = None,
    ) -> None:
        """``pinned_engine``: refuse to start unless this host's engine identity is that one
        (a policy that pins the engine makes every worker's fuel comparable)."""
        self.engine = engine_identity()
        if pinned_engine is not None and pinned_engine != self.engine:
            raise ExecutionError(
                f"this host runs engine {self.engine}, but {pinned_engine} is pinned; "
                "install the pinned wasmtime version"
            )
        self.cache = cache if cache is not None else ModuleCache(cache_dir)

    def load(self, wasm: bytes, cid: CID | None = None) -> LoadedModule:
        """Compile (or fetch from the cache) and link-check a module."""
        return self.cache.load(wasm, cid)

    def run_task(
        self,
        task: TaskIntent,
        wasm: bytes,
        input: bytes,
        *,
        dirs: Mapping[str, Tree] | None = None,
    ) -> ExecutionResult:
        """Run a TaskIntent whose module and input bytes the caller fetched (CIDs checked)."""
        if blob_cid(wasm) != task.wasm_cid:
            raise InvalidModule(f"the module bytes do not hash to the task's {task.wasm_cid}")
        if blob_cid(input) != task.input_cid:
            raise ExecutionError(f"the input bytes do not hash to the task's {task.input_cid}")
        return self.run(
            self.load(wasm, task.wasm_cid),
            input,
            args=task.args,
            dirs=dirs,
            scope=task.scope,
            seed=task.seed,
            output=task.output,
        )

    def run(
        self,
        wasm: bytes | LoadedModule,
        input: bytes = b"",
        *,
        args: tuple[str, ...] = (),
        dirs: Mapping[str, Tree] | None = None,
        scope: CapabilityScope = CapabilityScope(),  # noqa: B008 (frozen value type)
        seed: bytes = bytes(32),
        output: str = "stdout",
        timeout_s: float | None = None,
        entry: str = "_start",
        free_reads: tuple[str, ...] = (),
        env: Mapping[str, str] | None = None,
    ) -> ExecutionResult:
        """Run ``_start`` once and return what the guest produced.

        ``entry`` names another export to call instead, of type ``() -> ()`` or ``() -> i32``
        (a reactor's ``run``; a non-zero value it returns is the exit status).
        ``free_reads``: input dirs whose reads do not count against ``io_mb`` (see
        :class:`~meshbench.exec.wasi.GuestContext`); ``env``: the guest's environment
        (empty by default).

        A non-zero exit status is a result (``exit_code``), not an error. Errors: InvalidModule,
        OutOfFuel, MemoryLimitExceeded, IOLimitExceeded, ExecutionTimeout, GuestTrap, and
        ExecutionError for a missing output file; each carries ``fuel_used``.
        """
        loaded = wasm if isinstance(wasm, LoadedModule) else self.load(wasm)
        fuel = fuel_for(scope)
        memory_cap = scope.memory_mb * MB
        io_limit = scope.io_mb * MB
        _check_args(args, io_limit)
        if output != "stdout" and not output.startswith("/"):
            raise ExecutionError("output is 'stdout' or an absolute guest path")
        if loaded.min_memory_bytes > memory_cap:
            raise MemoryLimitExceeded(
                f"the module needs {loaded.min_memory_bytes} bytes of memory at start; "
                f"the scope allows {memory_cap} (memory_mb={scope.memory_mb})",
                fuel_used=0,
            )
        ctx = GuestContext(
            args=tuple(args),
            stdin=bytes(input),
            seed=seed,
            io_limit=io_limit,
            dirs=dirs,
            scratch=_scratch_dirs(output, dirs),
            free_reads=free_reads,
            env=env,
        )
        ctx.charge(sum(len(a.encode()) + 1 for a in args))
        timeout = timeout_s if timeout_s is not None else 5.0 + fuel / 20e6
        with run_slot():
            return self._run_in_slot(loaded, ctx, fuel, timeout, memory_cap, scope, output, entry)

    def _run_in_slot(
        self,
        loaded: LoadedModule,
        ctx: GuestContext,
        fuel: int,
        timeout: float,
        memory_cap: int,
        scope: CapabilityScope,
        output: str,
        entry: str = "_start",
    ) -> ExecutionResult:
        store = GuestStore(
            get_engine(),
            fuel=fuel,
            epoch_deadline=max(1, math.ceil(timeout / EPOCH_TICK_S)),
            limits=(memory_cap, MAX_TABLE_ELEMENTS, 1, 16, 1),
        )
        window = ctx.memory_window
        try:
            exit_code = 0
            instantiated = False
            t0 = time.perf_counter_ns()
            try:
                with epoch_ticking(), bind(ctx):
                    store.instantiate(loaded.pre)
                    instantiated = True
                    memory = store.memory()
                    if memory is not None:
                        window.attach(store.context, memory)
                    start = store.function(entry.encode())
                    if start is None:
                        raise InvalidModule(f"the module has no {entry!r} function")
                    if entry == "_start":
                        store.call(start)
                    else:
                        exit_code = store.call_entry(start)
            except BaseException as raised:
                e = ctx.pending if ctx.pending is not None else raised
                if isinstance(e, ProcExit):
                    exit_code = e.code
                else:
                    window.release()
                    refused = instantiated and _grow_refused(loaded, store, memory_cap)
                    raise _classify(e, store, fuel, refused, memory_cap) from None
            wall_us = (time.perf_counter_ns() - t0) // 1000
            fuel_used = fuel - store.get_fuel()
            if exit_code != 0 and instantiated and _grow_refused(loaded, store, memory_cap):
                raise MemoryLimitExceeded(
                    f"the guest exited with status {exit_code} after a memory.grow past its "
                    f"limit of {memory_cap} bytes was refused (memory_mb={scope.memory_mb})",
                    fuel_used=fuel_used,
                )
            peak = window.length()
        finally:
            window.release()
            store.close()
        result = _result_bytes(ctx, output, fuel_used)
        summary = ExecutionSummary(
            fuel_used=fuel_used,
            peak_memory_bytes=peak,
            wall_time_us=wall_us,
            io_bytes=ctx.io_used,
            engine=self.engine,
        )
        return ExecutionResult(
            output=result,
            stdout=bytes(ctx.stdout),
            stderr=bytes(ctx.stderr),
            exit_code=exit_code,
            summary=summary,
            logs=tuple(ctx.logs),
        )


def _check_args(args: tuple[str, ...], io_limit: int) -> None:
    if len(args) > MAX_ARGS:
        raise IOLimitExceeded(f"{len(args)} arguments; at most {MAX_ARGS}", fuel_used=0)
    size = sum(len(a.encode()) + 1 for a in args)
    if size > MAX_ARGV_BYTES:
        raise IOLimitExceeded(f"argv is {size} bytes; at most {MAX_ARGV_BYTES}", fuel_used=0)
    if any("\0" in a for a in args):
        raise ExecutionError("an argument contains a NUL byte", fuel_used=0)


def _scratch_dirs(output: str, dirs: Mapping[str, Tree] | None) -> tuple[str, ...]:
    scratch = ["/tmp"]
    if output != "stdout":
        parent = output.rsplit("/", 1)[0] or "/"
        if parent == "/":
            raise ExecutionError("the output file must be inside a directory, e.g. /out/result")
        if not any(parent == s or parent.startswith(s + "/") for s in scratch):
            if dirs and parent in dirs:
                raise ExecutionError(f"the output directory {parent} is a read-only input dir")
            scratch.append(parent)
    return tuple(scratch)


def _result_bytes(ctx: GuestContext, output: str, fuel_used: int) -> bytes:
    if ctx.output is not None:
        return bytes(ctx.output)
    if output == "stdout":
        return bytes(ctx.stdout)
    data = ctx.read_guest_file(output)
    if data is None:
        raise ExecutionError(
            f"the guest did not write its output file {output}", fuel_used=fuel_used
        )
    return data


def _grow_refused(loaded: LoadedModule, store: GuestStore, memory_cap: int) -> bool:
    """Was a ``memory.grow`` refused because of the scope's cap (not the module's own max)?

    Exact: the module was rewritten (:mod:`meshbench.exec.instrument`) to record the size
    every refused grow asked for.
    """
    if not loaded.records_refusals:
        return False
    pages = store.global_value(REFUSED_EXPORT.encode())
    return (
        isinstance(pages, int) and pages * 65536 > memory_cap and pages <= loaded.max_memory_pages
    )


def _fuel_used(store: GuestStore, fuel: int) -> int:
    try:
        return fuel - store.get_fuel()
    except wasmtime.WasmtimeError:
        return fuel


def _classify(
    exc: BaseException,
    store: GuestStore,
    fuel: int,
    exhausted: bool,
    memory_cap: int,
) -> BaseException:
    used = _fuel_used(store, fuel)
    if isinstance(exc, ExecutionError):
        exc.fuel_used = used
        if isinstance(exc, GuestTrap) and exhausted:
            return MemoryLimitExceeded(
                f"the guest trapped after a memory.grow past its limit of {memory_cap} bytes "
                f"was refused: {exc}",
                fuel_used=used,
            )
        return exc
    if isinstance(exc, wasmtime.Trap):
        code = exc.trap_code
        message = _trap_reason(exc)
        if code == wasmtime.TrapCode.OUT_OF_FUEL:
            return OutOfFuel(
                f"the guest used all {fuel} fuel its scope allows (cpu_cycles); raise cpu_cycles",
                fuel_used=used,
            )
        if code == wasmtime.TrapCode.INTERRUPT:
            return ExecutionTimeout(
                "the wall-clock backstop interrupted the guest (it is not a result)",
                fuel_used=used,
            )
        if exhausted:
            return MemoryLimitExceeded(
                f"the guest trapped ({message}) after a memory.grow past its limit of "
                f"{memory_cap} bytes was refused",
                fuel_used=used,
            )
        return GuestTrap(f"the guest trapped: {message}", fuel_used=used)
    if isinstance(exc, wasmtime.WasmtimeError):
        message = _first_line(exc)
        if "memory" in message and ("limit" in message or "minimum" in message):
            return MemoryLimitExceeded(
                f"the module's memory does not fit its limit of {memory_cap} bytes: {message}",
                fuel_used=used,
            )
        return GuestTrap(f"the guest failed: {message}", fuel_used=used)
    if isinstance(exc, MemoryError | RecursionError):
        return ExecutionError(f"the host ran out of resources: {exc!r}", fuel_used=used)
    return exc


def _trap_reason(trap: wasmtime.Trap) -> str:
    """``integer divide by zero (INTEGER_DIVISION_BY_ZERO)``: the cause, not the backtrace."""
    text = trap.message
    reason = next(
        (ln.split("wasm trap:", 1)[1].strip() for ln in text.splitlines() if "wasm trap:" in ln),
        _first_line(trap),
    )
    code = trap.trap_code
    return f"{reason} ({code.name})" if code is not None else reason


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return lines[0] if lines else type(exc).__name__
