"""``meshbench bench gpu``: the cuda executor against Numba on the CPU and the wasm engine.

- ``matmul_*``: ``c = a @ b`` for the matrices of ``datasets/wasm/src/matmul.c`` (the same
  formulas), through the ``cuda`` executor (descriptor, bundle, launch, output bundle), Numba
  ``@njit`` on the CPU (i-k-j loop) and ``matmul.wasm`` under fuel metering: GFLOP/s of each,
  ratios, and whether the three outputs are bit-identical.
- ``kernels``: each shipped kernel once through the executor: FLOPs, GPU time, GFLOP/s.
- ``device``, ``simulated``, ``device_peak_gflops`` (None: Numba does not report it).

On Numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``) every GPU figure measures Python
emulating CUDA threads (~0.2 ms per thread), not a GPU: the report says so in ``note``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from meshbench.core.errors import MeshError
from meshbench.core.types import CapabilityScope
from meshbench_cuda.arrays import decode_arrays
from meshbench_cuda.call import KernelCall
from meshbench_cuda.device import device_name, engine_identity, simulated
from meshbench_cuda.executor import CudaExecutor

SIM_NOTE = (
    "CUDA simulator: GPU figures time Python emulating CUDA threads, not a GPU; "
    "they say nothing about GPU speed. Run on a machine with a GPU for real figures."
)
BIG = CapabilityScope(memory_mb=8192, cpu_cycles=10**13, io_mb=8192)


def _best(fn: Callable[[], Any], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _matrices(n: int) -> tuple[np.ndarray, np.ndarray]:
    i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    a = ((i * 7 + j * 3) % 13) / 13.0 - 0.5
    b = ((i * 5 + j * 11) % 17) / 17.0 - 0.25
    return a, b


def _numba_matmul() -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    from numba import njit

    @njit(cache=False, fastmath=False)
    def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        n = a.shape[0]
        c = np.zeros((n, n))
        for i in range(n):
            for k in range(n):
                aik = a[i, k]
                for j in range(n):
                    c[i, j] += aik * b[k, j]
        return c

    return matmul


def _wasm_matmul(n: int) -> tuple[Callable[[], Any], Callable[[], bytes]] | None:
    wasm_path = Path(__file__).resolve().parents[3] / "datasets" / "wasm" / "matmul.wasm"
    if not wasm_path.is_file():
        return None
    from meshbench.exec.wasm import WasmExecutor

    ex = WasmExecutor()
    loaded = ex.load(wasm_path.read_bytes())

    def run() -> bytes:
        return ex.run(loaded, args=(str(n),), scope=BIG).output

    return run, run


def run(quick: bool = False) -> dict[str, Any]:
    sim = simulated()
    if not device_name():
        raise MeshError("no CUDA device: run on a GPU, or set NUMBA_ENABLE_CUDASIM=1")
    out: dict[str, Any] = {"engine": engine_identity(), "device": device_name(), "quick": quick}
    out["simulated"] = sim
    out["device_peak_gflops"] = None
    if sim:
        out["note"] = SIM_NOTE
    n = (8 if quick else 16) if sim else (256 if quick else 1024)
    repeat = 2 if quick else 3
    ex = CudaExecutor()
    a, b = _matrices(n)
    payload = KernelCall(kernel="matmul", arrays={"a": a, "b": b}, memory_mb=8192,
                         io_mb=8192).task_payload()  # fmt: skip
    gpu = ex.run(payload.module, payload.input, scope=BIG)
    t_gpu = _best(lambda: ex.run(payload.module, payload.input, scope=BIG), repeat)
    flops = gpu.summary.flops
    numba_fn = _numba_matmul()
    c_numba = numba_fn(a, b)
    t_numba = _best(lambda: numba_fn(a, b), repeat)
    c_gpu = decode_arrays(gpu.output)["c"]
    out.update(
        {
            "matmul_n": n,
            "matmul_flops": flops,
            "matmul_gpu_s": round(t_gpu, 6),
            "matmul_gpu_gflops": round(flops / t_gpu / 1e9, 6),
            "matmul_numba_cpu_gflops": round(flops / t_numba / 1e9, 6),
            "matmul_gpu_vs_numba_cpu": round(t_gpu / t_numba, 3),
            "matmul_gpu_bit_identical_numba": c_gpu.tobytes() == c_numba.tobytes(),
        }
    )
    wasm = _wasm_matmul(n)
    if wasm is not None:
        run_wasm, _ = wasm
        c_wasm = run_wasm()
        t_wasm = _best(run_wasm, repeat)
        out["matmul_wasm_gflops"] = round(flops / t_wasm / 1e9, 6)
        out["matmul_gpu_vs_wasm"] = round(t_gpu / t_wasm, 3)
        out["matmul_gpu_bit_identical_wasm"] = c_gpu.tobytes() == c_wasm
    out["kernels"] = _kernels(ex, sim, quick)
    return out


def _kernels(ex: CudaExecutor, sim: bool, quick: bool) -> dict[str, Any]:
    s = 1 if sim else (64 if quick else 1024)
    rng = np.random.default_rng(0)
    calls = [
        KernelCall(kernel="saxpy", arrays={"x": rng.random(64 * s), "y": rng.random(64 * s)},
                   params={"a": 2.0}),
        KernelCall(kernel="heat", arrays={"u": rng.random((8 * s, 8 * s))},
                   params={"alpha": 0.2, "steps": 2}),
        KernelCall(kernel="sum", arrays={"x": rng.random(256 * s)}),
        KernelCall(kernel="mc_pi", params={"threads": 32 * s, "per_thread": 16}),
    ]  # fmt: skip
    report: dict[str, Any] = {}
    for call in calls:
        p = call.task_payload()
        r = ex.run(p.module, p.input, scope=BIG)
        us = max(1, r.summary.gpu_time_us)
        report[call.kernel] = {
            "flops": r.summary.flops,
            "gpu_time_us": us,
            "gflops": round(r.summary.flops / us / 1e3, 6),
        }
    return report
