"""The one wasmtime engine of a process: its deterministic configuration and identity.

Every setting that can change what a guest computes, or how much fuel it burns, is listed in
:data:`ENGINE_SETTINGS`. The engine identity (``wasmtime-<version>/<hash of the settings>``)
goes into every :class:`~meshbench.core.types.ExecutionSummary`: two executions are
comparable fuel-for-fuel only when their identities match (outputs are always comparable).

Determinism choices:

- fuel metering on (``consume_fuel``), epoch interruption on (wall-clock backstop only: it can
  stop a run, never change its result);
- NaN canonicalisation on, so float results do not depend on the host CPU;
- threads and shared memory off; relaxed SIMD on but in its deterministic mode;
- the standard features real toolchains emit on: bulk memory, SIMD, multi-value, reference
  types, tail calls, exception handling;
- a fixed wasm stack limit, so deep recursion overflows at the same depth everywhere;
- linear memory reserved whole and never moved (host functions cache its address).
"""

from __future__ import annotations

import hashlib
import json
import queue
import threading
import time
from contextlib import AbstractContextManager
from importlib.metadata import version as _dist_version
from typing import Final

import wasmtime

from meshbench.exec.instrument import INSTRUMENT_VERSION

__all__ = [
    "ENGINE_SETTINGS",
    "EPOCH_TICK_S",
    "HOST_CALL_FUEL",
    "IO_BYTES_PER_FUEL",
    "MAX_CONCURRENT_RUNS",
    "MAX_TABLE_ELEMENTS",
    "POOLING",
    "WASMTIME_VERSION",
    "engine_identity",
    "epoch_ticking",
    "get_engine",
    "run_slot",
]

WASMTIME_VERSION: Final = _dist_version("wasmtime")

#: Every engine setting, in the order applied. Changing one changes the engine identity.
ENGINE_SETTINGS: Final[dict[str, object]] = {
    "consume_fuel": True,
    "epoch_interruption": True,
    "cranelift_nan_canonicalization": True,
    "cranelift_opt_level": "speed",
    "wasm_threads": False,
    "shared_memory": False,
    "wasm_simd": True,
    "wasm_relaxed_simd": True,
    "wasm_relaxed_simd_deterministic": True,
    "wasm_bulk_memory": True,
    "wasm_multi_value": True,
    "wasm_reference_types": True,
    "wasm_tail_call": True,
    "wasm_exceptions": True,
    "wasm_multi_memory": False,
    "wasm_memory64": False,
    "max_wasm_stack": 1024 * 1024,
    # 32-bit memories live in a fixed 4 GiB reservation and never move, so host functions
    # may keep the base address for the whole run (meshbench.exec.wasi).
    "memory_reservation": 4 * 1024**3,
    "memory_may_move": False,
}

#: Fuel a guest pays per host call, and bytes of I/O per further unit of fuel: host work is
#: priced too, so a guest cannot burn the host's CPU through cheap imports.
HOST_CALL_FUEL: Final = 100
IO_BYTES_PER_FUEL: Final = 64

#: How often the epoch advances while a run is in flight (the timeout's resolution).
EPOCH_TICK_S: Final = 0.01

#: Table elements a store allows (the pool's tables are this large; a larger table is refused
#: before compiling, meshbench.exec.prescan).
MAX_TABLE_ELEMENTS: Final = 1_000_000
#: Instances one process runs at once: the pooling allocator keeps this many slots (memory,
#: tables, instance) mapped and reuses them, so a run pays no mmap/munmap and few page faults
#: (for a small task that is a third of its time). More runs wait for a slot (run_slot).
MAX_CONCURRENT_RUNS: Final = 32
#: The pool's per-instance limits equal or exceed what a store allows (wasm.py sets
#: memory_size <= 4 GiB, MAX_TABLE_ELEMENTS, 16 tables, 1 memory), so the pool never refuses a
#: module the store limits would admit: it changes where memory comes from, not results.
POOLING: Final[dict[str, int]] = {
    "total_core_instances": MAX_CONCURRENT_RUNS,
    "total_memories": MAX_CONCURRENT_RUNS,
    "total_tables": MAX_CONCURRENT_RUNS * 16,
    "total_stacks": MAX_CONCURRENT_RUNS,
    "total_gc_heaps": MAX_CONCURRENT_RUNS,
    "max_memories_per_module": 1,
    "max_tables_per_module": 16,
    "table_elements": MAX_TABLE_ELEMENTS,
    "max_memory_size": 4 * 1024**3,
    "max_core_instance_size": 256 * 1024**2,
    # pages a slot keeps (zeroed, not unmapped) between runs: small memories reset by memset
    "linear_memory_keep_resident": 256 * 1024,
    "table_keep_resident": 64 * 1024,
}

_lock = threading.Lock()
_engine: wasmtime.Engine | None = None


class _Slots:
    """A counting semaphore on a C-implemented queue (threading's costs microseconds a run)."""

    __slots__ = ("_tokens",)

    def __init__(self, n: int) -> None:
        self._tokens: queue.SimpleQueue[None] = queue.SimpleQueue()
        for _ in range(n):
            self._tokens.put(None)

    def __enter__(self) -> None:
        self._tokens.get()

    def __exit__(self, *exc: object) -> None:
        self._tokens.put(None)


_slots = _Slots(MAX_CONCURRENT_RUNS)


def _make_config() -> wasmtime.Config:
    config = wasmtime.Config()
    for name, value in ENGINE_SETTINGS.items():
        setattr(config, name, value)
    # Not part of the identity: neither changes results, only compile speed and where
    # instances live (see POOLING).
    config.parallel_compilation = True
    _use_pooling(config)
    return config


def _use_pooling(config: wasmtime.Config) -> None:
    # wasmtime-py has no Python API for the pooling allocator; the C API has.
    from wasmtime import _ffi

    pool = _ffi.wasmtime_pooling_allocation_config_new()
    try:
        for name, value in POOLING.items():
            getattr(_ffi, f"wasmtime_pooling_allocation_config_{name}_set")(pool, value)
        _ffi.wasmtime_pooling_allocation_strategy_set(config.ptr(), pool)
    finally:
        _ffi.wasmtime_pooling_allocation_config_delete(pool)


def run_slot() -> AbstractContextManager[None]:
    """Context manager: hold one of the engine's instance slots while a store is alive.

    Every store created on :func:`get_engine` must be made inside it: a store past the
    pool's capacity would fail to instantiate, which must never look like a guest's fault.
    """
    return _slots


def get_engine() -> wasmtime.Engine:
    """The process-wide engine (created on first use; thread-safe)."""
    global _engine
    if _engine is None:
        with _lock:
            if _engine is None:
                _engine = wasmtime.Engine(_make_config())
    return _engine


def engine_identity() -> str:
    """``wasmtime-<version>/<16 hex of sha256(settings)>``: what fuel counts depend on."""
    # The memory.grow rewrite changes fuel counts, so its version is part of the identity.
    described = {
        **ENGINE_SETTINGS,
        "meshbench_instrument": INSTRUMENT_VERSION,
        "host_call_fuel": HOST_CALL_FUEL,
        "io_bytes_per_fuel": IO_BYTES_PER_FUEL,
    }
    blob = json.dumps(described, sort_keys=True, separators=(",", ":")).encode()
    return f"wasmtime-{WASMTIME_VERSION}/{hashlib.sha256(blob).hexdigest()[:16]}"


class _EpochTicker:
    """Advances the engine's epoch every :data:`EPOCH_TICK_S` while any run is active.

    The thread sleeps on a condition when nothing runs, so an idle process pays nothing.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._active = 0
        self._thread: threading.Thread | None = None

    def _loop(self) -> None:
        engine = get_engine()
        while True:
            with self._cond:
                while self._active == 0:
                    self._cond.wait()
            time.sleep(EPOCH_TICK_S)  # outside the lock: starting a run never waits on it
            engine.increment_epoch()

    def __enter__(self) -> None:
        with self._cond:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name="meshbench-epoch", daemon=True
                )
                self._thread.start()
            self._active += 1
            if self._active == 1:
                self._cond.notify()

    def __exit__(self, *exc: object) -> None:
        with self._cond:
            self._active -= 1


_ticker = _EpochTicker()


def epoch_ticking() -> AbstractContextManager[None]:
    """Context manager: keep the epoch advancing while the body runs a guest."""
    return _ticker
