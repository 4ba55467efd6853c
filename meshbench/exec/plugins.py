"""Executor and validator plug-ins, found through entry points.

An executor runs a task and returns an :class:`ExecutionResult`; a validator decides whether
a verifier's re-execution confirms a worker's claimed result. Both are looked up by name in
the entry point groups ``meshbench.executors`` and ``meshbench.validators``; the built-in
``wasm`` executor and ``exact`` validator register themselves there (``pyproject.toml``), and
packages under ``extensions/`` add more (a GPU executor with a tolerance validator, say).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from importlib.metadata import entry_points
from typing import Any, Final, Protocol, runtime_checkable

from meshbench.core.encoding import CID, blob_cid
from meshbench.core.errors import MeshError
from meshbench.core.types import CapabilityScope, ExecutionSummary

__all__ = [
    "EXECUTOR_GROUP",
    "VALIDATOR_GROUP",
    "ExactCIDValidator",
    "ExecutionResult",
    "Executor",
    "TaskPayload",
    "Validator",
    "executor_names",
    "judge_outputs",
    "load_executor",
    "load_validator",
    "validator_names",
]

EXECUTOR_GROUP: Final = "meshbench.executors"
VALIDATOR_GROUP: Final = "meshbench.validators"


@dataclass(frozen=True, kw_only=True)
class ExecutionResult:
    """What one execution produced. ``output``/``output_cid`` is the result that counts."""

    output: bytes
    stdout: bytes
    stderr: bytes
    exit_code: int
    summary: ExecutionSummary
    #: ``(level, message)`` lines the guest sent through ``env.log``.
    logs: tuple[tuple[int, str], ...] = field(default=())

    @cached_property
    def output_cid(self) -> CID:
        """The raw CID of ``output`` (computed on first use)."""
        return blob_cid(self.output)

    def to_jsonable(self) -> dict[str, Any]:
        s = self.summary
        return {
            "output_cid": str(self.output_cid),
            "output_bytes": len(self.output),
            "exit_code": self.exit_code,
            "fuel_used": s.fuel_used,
            "peak_memory_bytes": s.peak_memory_bytes,
            "wall_time_s": s.wall_time_us / 1e6,
            "io_bytes": s.io_bytes,
            "engine": s.engine,
            "stderr": self.stderr.decode("utf-8", "replace"),
            "logs": [list(entry) for entry in self.logs],
        }


@dataclass(frozen=True, kw_only=True)
class TaskPayload:
    """What a non-wasm task publishes, built by its executor's package (e.g. a kernel call).

    ``Mesh.publish(kernel=obj)`` calls ``obj.task_payload()`` and publishes a TaskIntent with
    ``module`` and ``input`` stored as the task's ``wasm_cid`` and ``input_cid`` blobs.
    """

    executor: str
    validator: str = "exact"
    module: bytes
    input: bytes
    args: tuple[str, ...] = ()
    scope: CapabilityScope = field(default_factory=CapabilityScope)


@runtime_checkable
class Executor(Protocol):
    """Runs a module on an input within a CapabilityScope, deterministically."""

    name: str

    def run(
        self,
        wasm: bytes,
        input: bytes = b"",
        *,
        args: tuple[str, ...] = (),
        dirs: Mapping[str, Any] | None = None,
        scope: CapabilityScope = ...,
        seed: bytes = ...,
        output: str = "stdout",
    ) -> ExecutionResult: ...


@runtime_checkable
class Validator(Protocol):
    """Decides whether a re-execution confirms a claimed result."""

    name: str

    def confirms(
        self,
        claimed_output_cid: CID,
        claimed: ExecutionSummary,
        recomputed: ExecutionResult,
        *,
        claimed_output: bytes | None = None,
    ) -> tuple[bool, str]:
        """``(approved, reason)``; the reason is empty when approved.

        ``claimed_output`` is the worker's revealed output (hash-checked by the caller), for
        validators that compare contents rather than CIDs (floating point tolerance).
        """
        ...

    def compare(self, claimed: bytes, recomputed: bytes, *, module: bytes) -> tuple[bool, str]:
        """``(approved, reason)`` from two outputs' bytes alone, with the tolerance the task
        itself names (read from ``module``, the task's module or descriptor), never one a
        participant supplies: the authority judges verdicts of content validators with it."""
        ...


def judge_outputs(
    validator_name: str,
    claimed: bytes | None,
    recomputed: bytes | None,
    *,
    module: bytes | None,
) -> tuple[bool, str]:
    """The authority's judgement of a verdict under a content validator: does ``recomputed``
    (a verifier's output) confirm ``claimed`` (the worker's), by the named validator's
    :meth:`Validator.compare` with the task's own tolerance (read from ``module``)? Bytes
    that are missing judge as disagreeing: a verifier cannot vote without evidence."""
    if claimed is None or recomputed is None:
        return False, "the outputs' bytes are not both at hand"
    if claimed == recomputed:
        return True, ""
    try:
        validator = load_validator(validator_name)
    except MeshError as exc:
        return False, f"cannot judge with validator {validator_name!r}: {exc}"
    compare = getattr(validator, "compare", None)
    if compare is None:
        return False, f"validator {validator_name!r} cannot compare two outputs"
    try:
        approved, reason = compare(claimed, recomputed, module=module or b"")
    except MeshError as exc:
        return False, f"{type(exc).__name__}: {exc}"
    return bool(approved), str(reason)


class ExactCIDValidator:
    """The default validator: the outputs' CIDs must be equal.

    Fuel is compared too, but only when both sides ran the same engine identity (fuel counts
    differ between wasmtime versions; outputs must not).
    """

    name = "exact"

    def confirms(
        self,
        claimed_output_cid: CID,
        claimed: ExecutionSummary,
        recomputed: ExecutionResult,
        *,
        claimed_output: bytes | None = None,
    ) -> tuple[bool, str]:
        if claimed_output_cid != recomputed.output_cid:
            return False, f"output {claimed_output_cid} != recomputed {recomputed.output_cid}"
        mine = recomputed.summary
        if claimed.engine and claimed.engine == mine.engine and claimed.fuel_used != mine.fuel_used:
            return (
                False,
                f"fuel {claimed.fuel_used} != recomputed {mine.fuel_used} on {mine.engine}",
            )
        return True, ""

    def compare(self, claimed: bytes, recomputed: bytes, *, module: bytes) -> tuple[bool, str]:
        """Two outputs confirm each other exactly when they are the same bytes."""
        if claimed == recomputed:
            return True, ""
        return False, f"output {blob_cid(claimed)} != recomputed {blob_cid(recomputed)}"


def _group(group: str) -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=group)}


def executor_names() -> list[str]:
    return sorted(_group(EXECUTOR_GROUP))


def validator_names() -> list[str]:
    return sorted(_group(VALIDATOR_GROUP))


def load_executor(name: str = "wasm", **kwargs: Any) -> Executor:
    """Instantiate the executor plug-in ``name`` (``kwargs`` go to its constructor)."""
    eps = _group(EXECUTOR_GROUP)
    if name not in eps:
        raise MeshError(
            f"no executor plug-in {name!r} (installed: {', '.join(sorted(eps)) or 'none'}); "
            "is the package that provides it installed?"
        )
    executor = eps[name].load()(**kwargs)
    if not isinstance(executor, Executor):
        raise MeshError(f"executor plug-in {name!r} does not implement the Executor protocol")
    return executor


def load_validator(name: str = "exact") -> Validator:
    """Instantiate the validator plug-in ``name``."""
    eps = _group(VALIDATOR_GROUP)
    if name not in eps:
        raise MeshError(
            f"no validator plug-in {name!r} (installed: {', '.join(sorted(eps)) or 'none'})"
        )
    validator = eps[name].load()()
    if not isinstance(validator, Validator):
        raise MeshError(f"validator plug-in {name!r} does not implement the Validator protocol")
    return validator
