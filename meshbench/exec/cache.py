"""Compiled-module cache: on disk across processes, in memory across tasks.

A module is compiled once per host, not once per task:

- **disk**: ``<dir>/<engine identity>/<wasm CID>.cwasm``, written atomically (temporary file
  then rename), so processes of one host share it and never see half a file. The engine
  identity in the path covers the wasmtime version and every engine setting; a file wasmtime
  refuses to load (another CPU, a corrupt file) is recompiled and replaced.
- **memory**: an LRU of :class:`LoadedModule` (module, pre-linked instance, its imports
  checked), so a task on a hot module pays only for a store and an instantiation.

A ``.cwasm`` is native code that wasmtime loads without validation: the cache directory
must be writable only by the user running the worker (it is created ``0700``).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import platformdirs
import wasmtime

from meshbench.core.encoding import CID, blob_cid
from meshbench.core.errors import InvalidModule
from meshbench.exec.engine import engine_identity, get_engine
from meshbench.exec.instrument import REFUSED_EXPORT, instrument_memory_grow
from meshbench.exec.prescan import prescan
from meshbench.exec.wasi import define_host_functions, provided_imports, provided_signatures

__all__ = [
    "DEFAULT_LRU_SIZE",
    "LoadedModule",
    "ModuleCache",
    "default_cache_dir",
    "shared_linker",
]

DEFAULT_LRU_SIZE: Final = 64
_WASM_MAGIC: Final = b"\0asm\x01\0\0\0"

_SIGNATURES_BY_IMPORT: Final = provided_signatures()

_linker_lock = threading.Lock()
_linker: wasmtime.Linker | None = None


def shared_linker() -> wasmtime.Linker:
    """The process's one linker with every host function defined (built on first use)."""
    global _linker
    if _linker is None:
        with _linker_lock:
            if _linker is None:
                linker = wasmtime.Linker(get_engine())
                define_host_functions(linker)
                _linker = linker
    return _linker


def default_cache_dir() -> Path:
    """``$MESHBENCH_HOME/cache/wasm`` when set, else the user's cache dir."""
    home = os.environ.get("MESHBENCH_HOME")
    if home:
        return Path(home).expanduser() / "cache" / "wasm"
    return Path(platformdirs.user_cache_dir("meshbench", appauthor=False)) / "wasm"


@dataclass(frozen=True, slots=True)
class LoadedModule:
    """A compiled, import-checked module, ready to instantiate in a new store."""

    cid: CID
    module: wasmtime.Module
    pre: wasmtime.InstancePre
    #: Minimum linear memory the module declares, in bytes (checked against the scope).
    min_memory_bytes: int
    #: The most pages the module's own memory type allows (a grow past it is the guest's bug).
    max_memory_pages: int
    #: Whether the module was rewritten to record refused grows (it has a memory.grow).
    records_refusals: bool
    size: int
    from_disk: bool = field(default=False, compare=False)


class ModuleCache:
    """Turns wasm bytes into a :class:`LoadedModule`, compiling at most once per host."""

    def __init__(self, directory: str | os.PathLike[str] | None = None, *, lru_size: int = 0):
        self.directory = Path(directory) if directory is not None else default_cache_dir()
        self._dir = self.directory / engine_identity().replace("/", "-")
        self._lru: OrderedDict[bytes, LoadedModule] = OrderedDict()
        self._lru_size = lru_size or DEFAULT_LRU_SIZE
        self._lock = threading.Lock()
        self.compiled = 0  # how many modules this cache compiled (tests and benchmarks)

    def path_for(self, cid: CID) -> Path:
        return self._dir / f"{cid}.cwasm"

    def load(self, wasm: bytes, cid: CID | None = None) -> LoadedModule:
        """The loaded module for ``wasm``; ``cid`` skips hashing when the caller has it."""
        # The LRU is keyed by the sha2-256 digest; a CID object is built only on a miss.
        key = cid.digest if cid is not None else hashlib.sha256(wasm).digest()
        with self._lock:
            hit = self._lru.get(key)
            if hit is not None:
                self._lru.move_to_end(key)
                return hit
        loaded = self._load_uncached(wasm, cid if cid is not None else blob_cid(wasm))
        with self._lock:
            self._lru[key] = loaded
            self._lru.move_to_end(key)
            while len(self._lru) > self._lru_size:
                self._lru.popitem(last=False)
        return loaded

    def load_uninstrumented(self, wasm: bytes, cid: CID) -> tuple[wasmtime.Module, bool]:
        """``(module, from_disk)``: ``wasm`` compiled as it is, for an embedder's own linking.

        For a large trusted runtime (the ``python`` executor's CPython): no memory.grow rewrite
        and no import or ``_start`` check here (the embedder links and checks it). Compiled at
        most once per host even when several processes ask at once: a file lock beside the
        ``.cwasm`` serialises them, and the ones that waited load what the first one wrote.
        """
        path = self._dir / f"{cid}.plain.cwasm"
        module = self._deserialize(path)
        if module is not None:
            return module, True
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            lock = open(path.with_suffix(".lock"), "a+b")  # noqa: SIM115 (held across compile)
        except OSError:
            lock = None  # a read-only cache: compile without sharing
        try:
            if lock is not None:
                fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
                module = self._deserialize(path)
                if module is not None:
                    return module, True
            validate_module_bytes(wasm)
            try:
                module = wasmtime.Module(get_engine(), wasm)
            except wasmtime.WasmtimeError as e:
                raise InvalidModule(f"invalid WebAssembly module: {_first_line(e)}") from None
            self.compiled += 1
            self._store(path, module)
            return module, False
        finally:
            if lock is not None:
                lock.close()  # releases the lock

    @staticmethod
    def _deserialize(path: Path) -> wasmtime.Module | None:
        if not path.is_file():
            return None
        try:
            return wasmtime.Module.deserialize_file(get_engine(), str(path))
        except wasmtime.WasmtimeError:
            path.unlink(missing_ok=True)  # incompatible or corrupt: compile again
            return None

    def forget(self) -> None:
        """Drop the in-memory LRU (the disk cache stays)."""
        with self._lock:
            self._lru.clear()

    def _load_uncached(self, wasm: bytes, cid: CID) -> LoadedModule:
        engine = get_engine()
        path = self.path_for(cid)
        module, from_disk = None, False
        if path.is_file():
            try:
                module = wasmtime.Module.deserialize_file(engine, str(path))
                from_disk = True
            except wasmtime.WasmtimeError:
                path.unlink(missing_ok=True)  # incompatible or corrupt: compile again
        if module is None:
            module = compile_module(wasm)
            self.compiled += 1
            self._store(path, module)
        return _prepare(module, cid, len(wasm), from_disk)

    def _store(self, path: Path, module: wasmtime.Module) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".cwasm")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(module.serialize())
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError:
            pass  # a read-only or full disk costs a recompile next time, nothing more


def validate_module_bytes(wasm: bytes) -> None:
    """InvalidModule unless ``wasm`` starts like a core WebAssembly module."""
    if not wasm.startswith(b"\0asm"):
        raise InvalidModule(
            "not a WebAssembly module (no \\0asm magic); "
            "expected a .wasm binary (text .wat must be assembled first)"
        )
    if wasm[:8] != _WASM_MAGIC:
        raise InvalidModule("not a core WebAssembly module (a component or an unknown version)")


def compile_module(wasm: bytes) -> wasmtime.Module:
    """Compile ``wasm`` on the shared engine; bytes that are not a module raise InvalidModule.

    What its bytes alone can refuse (size, imports, huge bodies: :mod:`~meshbench.exec.prescan`)
    is refused before wasmtime validates or compiles anything.
    """
    if not wasm.startswith(b"\0asm"):
        raise InvalidModule(
            "not a WebAssembly module (no \\0asm magic); "
            "expected a .wasm binary (text .wat must be assembled first)"
        )
    if wasm[:8] != _WASM_MAGIC:
        raise InvalidModule("not a core WebAssembly module (a component or an unknown version)")
    prescan(wasm, _SIGNATURES_BY_IMPORT)
    engine = get_engine()
    try:
        wasmtime.Module.validate(engine, wasm)
    except wasmtime.WasmtimeError as e:
        raise InvalidModule(f"invalid WebAssembly module: {_first_line(e)}") from None
    try:
        return wasmtime.Module(engine, instrument_memory_grow(wasm))
    except wasmtime.WasmtimeError as e:  # pragma: no cover (a bug in the rewrite)
        raise InvalidModule(f"the instrumented module does not compile: {_first_line(e)}") from e


def _prepare(module: wasmtime.Module, cid: CID, size: int, from_disk: bool) -> LoadedModule:
    provided = provided_imports()
    unknown = [f"{i.module}.{i.name}" for i in module.imports if (i.module, i.name) not in provided]
    if unknown:
        raise InvalidModule(
            f"the module imports {', '.join(sorted(unknown)[:8])}, which this executor does not "
            "provide (it offers wasi_snapshot_preview1 and the ICN ABI: env.input_load, "
            "env.output_store, env.log)"
        )
    exports = {e.name: e.type for e in module.exports}
    start = exports.get("_start")
    if not isinstance(start, wasmtime.FuncType) or start.params or start.results:
        raise InvalidModule("the module has no '_start' export of type () -> ()")
    min_memory, max_pages = 0, 65536
    for e in module.exports:
        if isinstance(e.type, wasmtime.MemoryType):
            min_memory += e.type.limits.min * 65536
            if e.type.limits.max is not None:
                max_pages = min(max_pages, e.type.limits.max)
    records = REFUSED_EXPORT in exports
    try:
        pre = shared_linker().instantiate_pre(module)
    except wasmtime.WasmtimeError as e:
        raise InvalidModule(f"the module's imports do not link: {_first_line(e)}") from None
    return LoadedModule(cid, module, pre, min_memory, max_pages, records, size, from_disk)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
