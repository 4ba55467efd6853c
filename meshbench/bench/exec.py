"""``meshbench bench exec``: the execution engine against its baselines, in one run.

- ``hello_ms``: one cached task (store, instantiate, ``_start``, output CID) of
  ``datasets/wasm/hello.wasm`` through :class:`~meshbench.exec.wasm.WasmExecutor`;
  ``hello_vs_bare`` divides it by a bare wasmtime call on the same pre-compiled module
  (default engine, wasmtime's own WASI, no fuel, no limits).
- ``kernel_vs_numba``: the 5-point stencil (``stencil.c``, SIMD build) under fuel metering,
  seconds divided by the same loop in Numba ``@njit`` (below 1: wasm is faster); the outputs
  are compared bit for bit (``stencil_bit_identical``). ``matmul_vs_numba`` likewise.
- ``fuel_overhead``: the stencil on the deterministic engine with fuel metering divided by the
  same engine without it (both through wasmtime's own WASI, so only metering differs);
  ``matmul_fuel_overhead`` likewise.
- ``cold_compile_s`` / ``cached_load_s``: a large generated module, compiled into an empty
  cache, then loaded by a fresh cache from disk (what a second process pays).

Times are the best of several runs.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import wasmtime

from meshbench.core.types import CapabilityScope
from meshbench.exec.cache import ModuleCache
from meshbench.exec.engine import ENGINE_SETTINGS, engine_identity
from meshbench.exec.wasm import WasmExecutor

DATASETS = Path(__file__).resolve().parents[2] / "datasets" / "wasm"
BIG = CapabilityScope(memory_mb=1024, cpu_cycles=10**13, io_mb=1024)


def _best(fn: Callable[[], Any], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _per_call(fn: Callable[[], Any], n: int, repeat: int = 3) -> float:
    def many() -> None:
        for _ in range(n):
            fn()

    return _best(many, repeat) / n


def _bare_runner(wasm: bytes, args: list[str], *, fuel: bool) -> Callable[[], None]:
    """A runner on a plain engine with wasmtime's own WASI (stdout to a temp file)."""
    config = wasmtime.Config()
    if fuel:
        for name, value in ENGINE_SETTINGS.items():
            setattr(config, name, value)
    else:
        for name, value in ENGINE_SETTINGS.items():
            if name not in ("consume_fuel", "epoch_interruption"):
                setattr(config, name, value)
    engine = wasmtime.Engine(config)
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    pre = linker.instantiate_pre(wasmtime.Module(engine, wasm))
    out = tempfile.NamedTemporaryFile(prefix="meshbench-bench-", delete=False)  # noqa: SIM115
    out.close()

    def run() -> None:
        store = wasmtime.Store(engine)
        wasi = wasmtime.WasiConfig()
        wasi.argv = ["main.wasm", *args]
        wasi.stdout_file = out.name
        store.set_wasi(wasi)
        if fuel:
            store.set_fuel(10**15)
            store.set_epoch_deadline(10**9)
        try:
            pre.instantiate(store).exports(store)["_start"](store)
        except wasmtime.ExitTrap as e:
            if e.code != 0:
                raise

    return run


def _bare_hello(wasm: bytes) -> Callable[[], None]:
    engine = wasmtime.Engine()
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    pre = linker.instantiate_pre(wasmtime.Module(engine, wasm))

    def run() -> None:
        store = wasmtime.Store(engine)
        store.set_wasi(wasmtime.WasiConfig())
        pre.instantiate(store).exports(store)["_start"](store)

    return run


def _numba_kernels() -> tuple[Callable[..., np.ndarray], Callable[..., np.ndarray]]:
    from numba import njit

    @njit(cache=False, fastmath=False)
    def stencil(n: int, iters: int) -> np.ndarray:
        u = np.empty(n * n)
        for i in range(n):
            for j in range(n):
                u[i * n + j] = ((i * 31 + j * 17) % 101) / 101.0
        v = u.copy()
        for _ in range(iters):
            for i in range(1, n - 1):
                for j in range(1, n - 1):
                    up, down = u[(i - 1) * n + j], u[(i + 1) * n + j]
                    v[i * n + j] = 0.25 * (up + down + u[i * n + j - 1] + u[i * n + j + 1])
            u, v = v, u
        return u

    @njit(cache=False, fastmath=False)
    def matmul(n: int) -> np.ndarray:
        a = np.empty(n * n)
        b = np.empty(n * n)
        for i in range(n):
            for j in range(n):
                a[i * n + j] = ((i * 7 + j * 3) % 13) / 13.0 - 0.5
                b[i * n + j] = ((i * 5 + j * 11) % 17) / 17.0 - 0.25
        c = np.zeros(n * n)
        for i in range(n):
            for k in range(n):
                aik = a[i * n + k]
                for j in range(n):
                    c[i * n + j] += aik * b[k * n + j]
        return c

    return stencil, matmul


def _large_module(functions: int) -> bytes:
    """A generated module of ``functions`` arithmetic-heavy functions (a stand-in for a big app)."""
    body = " ".join(
        f"(local.set 1 (i64.add (i64.mul (local.get 1) (i64.const {k * 2 + 3})) (local.get 0)))"
        f" (local.set 0 (i64.xor (local.get 0) (i64.shr_u (local.get 1) (i64.const {k % 63 + 1}))))"
        for k in range(60)
    )
    funcs = "\n".join(
        f"(func $f{i} (param i64) (result i64) (local i64) {body} (local.get 1))"
        for i in range(functions)
    )
    calls = " ".join(f"(drop (call $f{i} (i64.const {i})))" for i in range(min(functions, 50)))
    wat = f'(module (memory (export "memory") 1) {funcs} (func (export "_start") {calls}))'
    return wasmtime.wat2wasm(wat)


def run(quick: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {"engine": engine_identity(), "quick": quick}
    with tempfile.TemporaryDirectory(prefix="meshbench-bench-") as tmp:
        executor = WasmExecutor(cache_dir=Path(tmp) / "cache")
        out.update(_hello(executor, quick))
        out.update(_kernels(executor, quick))
        out.update(_large(Path(tmp) / "large", quick))
    return out


def _hello(executor: WasmExecutor, quick: bool) -> dict[str, Any]:
    hello = (DATASETS / "hello.wasm").read_bytes()
    n = 200 if quick else 2000
    executor.run(hello)

    def task() -> None:
        r = executor.run(hello)
        r.output_cid  # noqa: B018 (a real task needs its output's CID)

    bare_task = _bare_hello(hello)
    # interleaved rounds, best of each: both sides see the same machine load
    ours = bare = float("inf")
    for _ in range(5 if quick else 20):
        ours = min(ours, _per_call(task, n // 10, repeat=1))
        bare = min(bare, _per_call(bare_task, n // 10, repeat=1))
    return {
        "hello_ms": round(ours * 1e3, 4),
        "hello_bare_ms": round(bare * 1e3, 4),
        "hello_vs_bare": round(ours / bare, 2),
    }


def _kernels(executor: WasmExecutor, quick: bool) -> dict[str, Any]:
    stencil_nb, matmul_nb = _numba_kernels()
    repeat = 2 if quick else 5
    res: dict[str, Any] = {}
    sn, si = (64, 4) if quick else (512, 200)
    mn = 48 if quick else 300
    for name, args, numba_fn in [
        ("stencil", [str(sn), str(si)], lambda: stencil_nb(sn, si)),
        ("matmul", [str(mn)], lambda: matmul_nb(mn)),
    ]:
        wasm = (DATASETS / f"{name}.wasm").read_bytes()
        loaded = executor.load(wasm)
        result = executor.run(loaded, args=tuple(args), scope=BIG)
        expected = numba_fn()  # also compiles it
        t_wasm = _best(lambda: executor.run(loaded, args=tuple(args), scope=BIG), repeat)  # noqa: B023
        t_numba = _best(numba_fn, repeat)
        on, off = _bare_runner(wasm, args, fuel=True), _bare_runner(wasm, args, fuel=False)
        on()
        off()
        t_on, t_off = _best(on, repeat), _best(off, repeat)
        prefix = "kernel" if name == "stencil" else name
        res[f"{name}_size"] = " ".join(args)
        res[f"{name}_wasm_s"] = round(t_wasm, 5)
        res[f"{name}_numba_s"] = round(t_numba, 5)
        res[f"{prefix}_vs_numba"] = round(t_wasm / t_numba, 3)
        res[f"{name}_bit_identical"] = result.output == expected.tobytes()
        res[f"{name}_fuel"] = result.summary.fuel_used
        res[f"{name}_fuel_on_s"] = round(t_on, 5)
        res[f"{name}_fuel_off_s"] = round(t_off, 5)
        res["fuel_overhead" if name == "stencil" else f"{name}_fuel_overhead"] = round(
            t_on / t_off, 3
        )
    return res


def _large(cache_dir: Path, quick: bool) -> dict[str, Any]:
    wasm = _large_module(200 if quick else 4000)
    cold = ModuleCache(cache_dir)
    t0 = time.perf_counter()
    cold.load(wasm)
    t_cold = time.perf_counter() - t0
    warm = ModuleCache(cache_dir)  # a fresh process's view: disk only
    t0 = time.perf_counter()
    loaded = warm.load(wasm)
    t_cached = time.perf_counter() - t0
    assert loaded.from_disk and warm.compiled == 0
    return {
        "large_module_mb": round(len(wasm) / 1e6, 2),
        "cold_compile_s": round(t_cold, 4),
        "cached_load_s": round(t_cached, 4),
        "compile_vs_cached": round(t_cold / t_cached, 1),
    }
