"""meshbench-cuda: approved Numba CUDA kernels as verifiable mesh tasks.

A GPU task names an installed, operator-approved kernel by name, version and content hash
(a :class:`KernelCall` descriptor, stored as the task's ``wasm_cid`` blob) and gives its
input arrays as an array bundle (:mod:`meshbench_cuda.arrays`, the ``input_cid`` blob).
Workers run it with :class:`CudaExecutor` (entry point ``meshbench.executors: cuda``);
verifiers judge floating point results with :class:`ToleranceValidator`
(``meshbench.validators: tolerance``). Without a GPU everything runs on Numba's CUDA
simulator (``NUMBA_ENABLE_CUDASIM=1``), whose timings say nothing about a GPU.
"""

from __future__ import annotations

from meshbench_cuda.arrays import decode_arrays, encode_arrays
from meshbench_cuda.calibrate import calibrate_gpu_flops, gpu_hardware
from meshbench_cuda.call import Descriptor, KernelCall, parse_descriptor
from meshbench_cuda.device import device_name, engine_identity, simulated
from meshbench_cuda.executor import CudaExecutor, KernelResult
from meshbench_cuda.registry import KernelRegistry, installed_kernels
from meshbench_cuda.spec import KernelSpec, Param
from meshbench_cuda.validator import ToleranceValidator, compare_bundles
from meshbench_cuda.workers import gpu_agents

__all__ = [
    "CudaExecutor",
    "Descriptor",
    "KernelCall",
    "KernelRegistry",
    "KernelResult",
    "KernelSpec",
    "Param",
    "ToleranceValidator",
    "calibrate_gpu_flops",
    "compare_bundles",
    "decode_arrays",
    "device_name",
    "encode_arrays",
    "engine_identity",
    "gpu_agents",
    "gpu_hardware",
    "installed_kernels",
    "parse_descriptor",
    "simulated",
]
