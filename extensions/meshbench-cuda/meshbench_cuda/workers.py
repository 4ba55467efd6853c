"""GPU workers for the embedded mesh: ``Mesh.in_process(agent_factory=gpu_agents(...))``."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from meshbench.core.identity import Identity
from meshbench.core.types import HardwareProfile
from meshbench.runtime.agent import Behaviour, WorkerAgent
from meshbench_cuda.calibrate import gpu_hardware
from meshbench_cuda.executor import CudaExecutor

__all__ = ["gpu_agents"]


def gpu_agents(
    gpu: Iterable[int] | None = None,
    *,
    gpu_flops: int | None = None,
    memory_mb: int = 4096,
    executor: CudaExecutor | None = None,
    behaviours: Mapping[int, Behaviour] | None = None,
) -> Callable[[Identity, str, int], WorkerAgent]:
    """An agent factory: workers whose index is in ``gpu`` (default: all) get this process's
    GPU (calibrated once: its measured FLOP/s and device name) and the ``cuda`` executor;
    the others are CPU-only workers (``gpu_flops=0``), which never offer for GPU tasks."""
    chosen = None if gpu is None else set(gpu)
    hardware: list[HardwareProfile] = []
    shared = executor

    def make(identity: Identity, federation: str, index: int) -> WorkerAgent:
        nonlocal shared
        behaviour = (behaviours or {}).get(index, "honest")
        if chosen is not None and index not in chosen:
            cpu = HardwareProfile(memory_mb=memory_mb)
            return WorkerAgent(identity, federation, cpu, behaviour=behaviour)
        if not hardware:
            hardware.append(gpu_hardware(memory_mb, gpu_flops=gpu_flops))
        shared = shared or CudaExecutor()
        return WorkerAgent(
            identity, federation, hardware[0], executors={"cuda": shared}, behaviour=behaviour
        )

    return make
