"""The ``cuda`` executor: runs an approved kernel on array bundles with Numba CUDA.

``run(descriptor, bundle, scope=..., seed=...)``; ``run_task(task, descriptor, bundle)``.
Before anything is launched, in this order (each a typed error, ``fuel_used=0``):

1. the descriptor parses (:class:`LaunchParameterError`);
2. the kernel is installed (:class:`UnknownKernel`), its code hash is the one named
   (:class:`KernelHashMismatch`), and the operator approved it (:class:`KernelNotApproved`);
3. the input bundle fits ``io_mb`` (:class:`IOLimitExceeded`) and parses; the arrays have
   the kernel's names, dtypes and shapes (:class:`ArrayFormatError`);
4. scalar parameters and the thread block are in range, the grid within CUDA's limits
   (:class:`LaunchParameterError`);
5. the call's device bytes fit ``memory_mb`` (:class:`MemoryLimitExceeded`) and its exact
   FLOP count fits ``max_flops`` (:class:`KernelBudgetExceeded`).

Then the kernel runs; a run longer than ``max_time_ms`` raises :class:`ExecutionTimeout`
(a wall-clock fact, never a result). The output is a canonical array bundle.
``ExecutionSummary``: ``flops`` (the kernel's exact count), ``gpu_time_us`` (launches and
transfers, synchronised), ``peak_memory_bytes`` (device bytes), ``io_bytes``, ``engine``
(``numba-<version>/<device>``); ``fuel_used`` is 0 (there is no fuel on a GPU).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from meshbench.core.encoding import blob_cid
from meshbench.core.errors import (
    ExecutionError,
    ExecutionTimeout,
    IOLimitExceeded,
    KernelBudgetExceeded,
    LaunchParameterError,
    MemoryLimitExceeded,
)
from meshbench.core.types import (
    MB,
    CapabilityScope,
    ExecutionSummary,
    HardwareProfile,
    TaskIntent,
)
from meshbench.exec.plugins import ExecutionResult
from meshbench_cuda.arrays import decode_arrays, encode_arrays
from meshbench_cuda.call import Descriptor, parse_descriptor
from meshbench_cuda.device import LAUNCH_LOCK, engine_identity
from meshbench_cuda.registry import KernelRegistry
from meshbench_cuda.spec import KernelSpec

__all__ = ["CudaExecutor", "KernelResult"]


@dataclass(frozen=True, kw_only=True)
class KernelResult(ExecutionResult):
    """An execution result with what the tolerance validator needs."""

    kernel: str
    rtol: float = 0.0
    atol: float = 0.0


@dataclass(frozen=True)
class _Plan:
    spec: KernelSpec
    call: Descriptor
    arrays: Mapping[str, Any]
    params: dict[str, float | int]
    block: tuple[int, ...]
    flops: int
    device_bytes: int


class CudaExecutor:
    """Runs approved Numba CUDA kernels; publishers never supply code, only data.

    ``approved``: see :class:`~meshbench_cuda.registry.KernelRegistry` (default: the kernels
    shipped with meshbench-cuda). ``kernels``: the installed kernels (default: the
    ``meshbench.kernels`` entry points).
    """

    name = "cuda"

    def __init__(
        self,
        *,
        approved: Iterable[str] | None = None,
        kernels: Mapping[str, KernelSpec] | Iterable[KernelSpec] | None = None,
        registry: KernelRegistry | None = None,
    ) -> None:
        self.registry = registry or KernelRegistry(kernels, approved=approved)
        self.engine = engine_identity()

    def advertise(self, hardware: HardwareProfile) -> HardwareProfile:
        """``hardware`` with this host's calibrated GPU throughput and class (Dask workers
        call this at start); unchanged when there is no CUDA device."""
        from meshbench_cuda.calibrate import calibrate_gpu_flops
        from meshbench_cuda.device import device_name

        if not device_name():
            return hardware
        return msgspec.structs.replace(
            hardware, gpu_flops=calibrate_gpu_flops(), gpu_class=device_name()
        )

    def accepts(self, task: TaskIntent) -> bool:
        """Would this worker run ``task``'s kernel (named in its args)? For offers."""
        if task.executor != self.name or len(task.args) != 2:
            return False
        name, _, version = task.args[0].partition("@")
        return self.registry.approves(name, version, task.args[1])

    def plan(self, descriptor: bytes, input: bytes, scope: CapabilityScope) -> _Plan:
        """Every check of the module docstring; nothing is launched."""
        call = parse_descriptor(descriptor)
        spec = self.registry.resolve(call.kernel, call.version, call.code_hash)
        if len(input) > scope.io_mb * MB:
            raise IOLimitExceeded(
                f"the input bundle is {len(input)} bytes; io_mb={scope.io_mb}", fuel_used=0
            )
        arrays = decode_arrays(input)
        spec.check_inputs(arrays)
        params = spec.resolve_params(call.params)
        block = spec.check_block(call.block)
        spec.check(arrays, params)
        device_bytes = spec.device_bytes(arrays, params)
        if device_bytes > scope.memory_mb * MB:
            raise MemoryLimitExceeded(
                f"kernel {call.ref} needs {device_bytes} device bytes; the scope allows "
                f"memory_mb={scope.memory_mb}",
                fuel_used=0,
            )
        flops = spec.flops(arrays, params)
        if flops > call.max_flops:
            raise KernelBudgetExceeded(
                f"kernel {call.ref} needs {flops} FLOPs; its budget max_flops={call.max_flops}",
                fuel_used=0,
            )
        return _Plan(spec, call, arrays, params, block, flops, device_bytes)

    def run_task(self, task: TaskIntent, wasm: bytes, input: bytes) -> KernelResult:
        """Run a GPU TaskIntent: ``wasm`` is the descriptor blob, ``input`` the bundle."""
        if blob_cid(wasm) != task.wasm_cid:
            raise LaunchParameterError(
                f"the descriptor does not hash to the task's {task.wasm_cid}", fuel_used=0
            )
        if blob_cid(input) != task.input_cid:
            raise ExecutionError(
                f"the input bytes do not hash to the task's {task.input_cid}", fuel_used=0
            )
        call = parse_descriptor(wasm)
        if task.args != (call.ref, call.code_hash):
            raise LaunchParameterError(
                f"the task's args {task.args!r} do not name its descriptor's kernel "
                f"({call.ref}, {call.code_hash[:16]}...)",
                fuel_used=0,
            )
        return self.run(wasm, input, scope=task.scope, seed=task.seed)

    def run(
        self,
        wasm: bytes,
        input: bytes = b"",
        *,
        args: tuple[str, ...] = (),
        dirs: Mapping[str, Any] | None = None,
        scope: CapabilityScope = CapabilityScope(),  # noqa: B008 (frozen value type)
        seed: bytes = bytes(32),
        output: str = "stdout",
    ) -> KernelResult:
        """Run the kernel call ``wasm`` (descriptor bytes) on the bundle ``input``."""
        if dirs:
            raise ExecutionError("GPU tasks take no input directories", fuel_used=0)
        if output != "stdout":
            raise ExecutionError("a GPU task's output is its array bundle ('stdout')", fuel_used=0)
        plan = self.plan(wasm, input, scope)
        with LAUNCH_LOCK:
            t0 = time.perf_counter_ns()
            outputs = plan.spec.launch(plan.arrays, plan.params, plan.block, seed)
            _synchronize()
            gpu_us = (time.perf_counter_ns() - t0) // 1000
        if gpu_us > plan.call.max_time_ms * 1000:
            raise ExecutionTimeout(
                f"kernel {plan.call.ref} ran {gpu_us / 1000:.1f} ms; its budget is "
                f"max_time_ms={plan.call.max_time_ms} (a wall-clock fact, not a result)",
                fuel_used=0,
            )
        data = encode_arrays(outputs)
        if len(input) + len(data) > scope.io_mb * MB:
            raise IOLimitExceeded(
                f"input and output bundles are {len(input) + len(data)} bytes; io_mb={scope.io_mb}",
                fuel_used=0,
            )
        summary = ExecutionSummary(
            fuel_used=0,
            peak_memory_bytes=plan.device_bytes,
            wall_time_us=gpu_us,
            io_bytes=len(input) + len(data),
            gpu_time_us=gpu_us,
            flops=plan.flops,
            engine=self.engine,
        )
        return KernelResult(
            output=data,
            stdout=b"",
            stderr=b"",
            exit_code=0,
            summary=summary,
            kernel=plan.call.ref,
            rtol=plan.call.rtol,
            atol=plan.call.atol,
        )


def _synchronize() -> None:
    from numba import cuda

    cuda.synchronize()
