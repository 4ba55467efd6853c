"""meshbench.exec: deterministic, sandboxed, fuel-metered WebAssembly execution.

The public API of the execution engine; see the README's "Execution" section.
"""

from __future__ import annotations

from meshbench.exec.cache import LoadedModule, ModuleCache
from meshbench.exec.engine import engine_identity
from meshbench.exec.plugins import (
    ExactCIDValidator,
    ExecutionResult,
    Executor,
    Validator,
    executor_names,
    load_executor,
    load_validator,
    validator_names,
)
from meshbench.exec.wasm import WasmExecutor, fuel_for, tree_from_host_dir, tree_from_manifest

__all__ = [
    "ExactCIDValidator",
    "ExecutionResult",
    "Executor",
    "LoadedModule",
    "ModuleCache",
    "Validator",
    "WasmExecutor",
    "engine_identity",
    "executor_names",
    "fuel_for",
    "load_executor",
    "load_validator",
    "tree_from_host_dir",
    "tree_from_manifest",
    "validator_names",
]
