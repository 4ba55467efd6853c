"""The participant side of the protocol: what a worker or verifier does when asked.

A :class:`WorkerAgent` lives wherever its machine is (a Dask worker process, a thread of the
node, a libp2p peer). It makes offers for tasks its hardware can run, executes tasks under
the deterministic executor, commits to results before anyone reveals, reveals when the
commit phase closes, and judges a worker's receipt by its own re-execution. Its secrets
(salts, outputs between commit and reveal) never leave it before they are due.

``behaviour`` exists for demos and simulations of dishonest peers: ``honest``, ``wrong``
(reports a wrong output as worker, honest as verifier) or ``lazy`` (skips the work and
reports the input as its output). A dishonest agent still signs with its own key, so the
protocol catches it by re-execution, not by trusting anyone.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from meshbench.core.encoding import CID, blob_cid
from meshbench.core.errors import ExecutionError, MeshError, ProtocolError
from meshbench.core.events import StakeRequest
from meshbench.core.identity import Identity
from meshbench.core.types import (
    ComputeOffer,
    ExecutionReceipt,
    ExecutionSummary,
    HardwareProfile,
    PeerInfo,
    ResultCommitment,
    TaskIntent,
    VerificationReceipt,
    result_commitment,
)

__all__ = ["Behaviour", "CostModel", "WorkerAgent", "error_output"]

Behaviour = Literal["honest", "wrong", "lazy"]
BEHAVIOURS: Final = ("honest", "wrong", "lazy")


def error_output(exc: ExecutionError) -> bytes:
    """The result of a task that failed deterministically (out of fuel, trap, ...).

    Such a failure is a result like any other: every honest re-execution reaches the same
    error, so verifiers can confirm it and the worker is paid for the work it did.
    """
    return f"meshbench-error {type(exc).__name__}\n".encode()


@dataclass(frozen=True, kw_only=True)
class CostModel:
    """How a worker prices its offers: a base plus a price per million fuel units (cycles)
    and per GFLOP/s of GPU throughput the task's scope asks for."""

    base: int = 50
    per_million_cycles: int = 10
    #: Tokens per GFLOP/s of ``scope.gpu_flops`` (above the default policy's 1, so a GPU
    #: offer clears the scope-scaled minimum fee).
    per_gflops_gpu: int = 2
    #: Estimated cycles per millisecond of this machine, for the ETA.
    cycles_per_ms: int = 200_000

    def cost(self, task: TaskIntent) -> int:
        scope = task.scope
        gpu = -(-scope.gpu_flops * self.per_gflops_gpu // 10**9)
        return self.base + -(-scope.cpu_cycles * self.per_million_cycles // 1_000_000) + gpu

    def eta_ms(self, task: TaskIntent) -> int:
        return 2_000 + task.scope.cpu_cycles // self.cycles_per_ms


@dataclass
class _Pending:
    output: bytes
    output_cid: CID
    salt: bytes
    summary: ExecutionSummary
    exit_code: int
    validator: str = "exact"
    #: The full result of this agent's own run (None when it failed), for content validators.
    result: Any = None


class WorkerAgent:
    """One mesh participant's worker and verifier roles."""

    def __init__(
        self,
        identity: Identity,
        federation: str,
        hardware: HardwareProfile,
        *,
        executor: object | None = None,
        cost: CostModel | None = None,
        behaviour: Behaviour = "honest",
        capacity: int = 1,
        executors: Mapping[str, Any] | None = None,
    ) -> None:
        """``executors``: plug-ins for tasks whose ``executor`` is not ``wasm`` (by name, e.g.
        ``{"cuda": CudaExecutor()}``); a task for an executor this agent lacks gets no offer.
        """
        if behaviour not in BEHAVIOURS:
            raise ValueError(f"behaviour must be one of {BEHAVIOURS}, not {behaviour!r}")
        self.identity = identity
        self.did = identity.did
        self.federation = federation
        self.hardware = hardware
        self.cost = cost or CostModel()
        self.behaviour = behaviour
        self.capacity = capacity
        self._executor = executor
        self._executors = dict(executors or {})
        self._pending: dict[tuple[CID, str], _Pending] = {}
        self._lock = threading.Lock()

    @property
    def executor(self):  # noqa: ANN201  (WasmExecutor; imported lazily: wasmtime is heavy)
        if self._executor is None:
            from meshbench.exec.wasm import WasmExecutor

            self._executor = WasmExecutor()
        return self._executor

    def executor_for(self, task: TaskIntent) -> Any | None:
        """The executor that runs ``task`` here, or None when this agent has none for it."""
        if task.executor == "wasm":
            return self.executor
        return self._executors.get(task.executor)

    def can_run(self, task: TaskIntent) -> bool:
        """An executor for the task that accepts it (e.g. its kernel is approved here)."""
        executor = self.executor_for(task)
        if executor is None:
            return False
        accepts = getattr(executor, "accepts", None)
        return accepts is None or bool(accepts(task))

    # --- membership ------------------------------------------------------------------
    def peer_info(self, now_ms: int, *, addresses: tuple[str, ...] = ()) -> PeerInfo:
        return PeerInfo(
            did=self.did,
            federation=self.federation,
            hardware=self.hardware,
            addresses=addresses,
            updated_at=now_ms,
        ).sign(self.identity)

    def stake_request(self, amount: int, now_ms: int, *, nonce: int = 0) -> StakeRequest:
        return StakeRequest(
            account=self.did,
            federation=self.federation,
            action="bond",
            amount=amount,
            nonce=nonce,
            timestamp=now_ms,
        ).sign(self.identity)

    # --- offers ----------------------------------------------------------------------
    def offer(self, task: TaskIntent, now_ms: int) -> ComputeOffer | None:
        """An offer for ``task``, or None when this machine cannot run it at the fee."""
        if not self.hardware.satisfies(task.scope) or task.publisher == self.did:
            return None
        if not self.can_run(task):
            return None
        cost = self.cost.cost(task)
        if cost > task.fee:
            return None
        return ComputeOffer(
            task_cid=task.cid,
            worker=self.did,
            federation=self.federation,
            cost=cost,
            capacity=self.capacity,
            eta_ms=self.cost.eta_ms(task),
            hardware=self.hardware,
            created_at=now_ms,
            parents=(task.cid,),
        ).sign(self.identity)

    # --- executing and committing ----------------------------------------------------
    def execute(
        self, task: TaskIntent, wasm: bytes, data: bytes, now_ms: int, *, role: str
    ) -> ResultCommitment:
        """Run ``task`` (as ``worker`` or ``verifier``) and commit to the result."""
        output, summary, exit_code, result = self._run(task, wasm, data, role)
        if role == "worker" and self.behaviour == "wrong":
            output = hashlib.sha256(b"wrong" + output).digest()
        salt = os.urandom(16)
        cid = blob_cid(output)
        pending = _Pending(output, cid, salt, summary, exit_code, task.validator, result)
        with self._lock:
            self._pending[(task.cid, role)] = pending
        return ResultCommitment(
            task_cid=task.cid,
            worker=self.did,
            commitment=result_commitment(task.cid, self.did, cid, salt),
            created_at=now_ms,
        ).sign(self.identity)

    def _run(
        self, task: TaskIntent, wasm: bytes, data: bytes, role: str
    ) -> tuple[bytes, ExecutionSummary, int, Any]:
        if role == "worker" and self.behaviour == "lazy":
            lazy = ExecutionSummary(fuel_used=0, peak_memory_bytes=0, wall_time_us=0)
            return data, lazy, 0, None
        executor = self.executor_for(task)
        if executor is None:
            raise ProtocolError(f"{self.did} has no {task.executor!r} executor for this task")
        try:
            result = executor.run_task(task, wasm, data)
        except ExecutionError as exc:
            summary = ExecutionSummary(
                fuel_used=exc.fuel_used or 0,
                peak_memory_bytes=0,
                wall_time_us=0,
                engine=executor.engine,
            )
            return error_output(exc), summary, -1, None
        return result.output, result.summary, result.exit_code, result

    def reveal(self, task_cid: CID, now_ms: int) -> tuple[ExecutionReceipt, bytes]:
        """Open the worker commitment: the signed receipt, and the output bytes."""
        p = self._take(task_cid, "worker")
        receipt = ExecutionReceipt(
            task_cid=task_cid,
            worker=self.did,
            output_cid=p.output_cid,
            result_commitment=result_commitment(task_cid, self.did, p.output_cid, p.salt),
            salt=p.salt,
            exit_code=p.exit_code,
            summary=p.summary,
            created_at=now_ms,
            parents=(task_cid,),
        ).sign(self.identity)
        return receipt, p.output

    def verdict(
        self,
        task_cid: CID,
        receipt: ExecutionReceipt,
        now_ms: int,
        *,
        output: bytes | None = None,
    ) -> VerificationReceipt:
        """Judge ``receipt`` by this verifier's own committed re-execution.

        Under the ``exact`` validator the verdict is whether the output CIDs are equal. Under
        another validator (the task names it) an identical output is approved and a different
        one is judged by that validator on ``output``, the worker's revealed bytes.
        """
        p = self._take(task_cid, "verifier")
        approved = p.output_cid == receipt.output_cid
        reason = "" if approved else f"re-execution gave {p.output_cid}"
        if not approved and p.validator != "exact":
            approved, reason = self._judge(p, receipt, output)
        return VerificationReceipt(
            task_cid=task_cid,
            receipt_cid=receipt.cid,
            verifier=self.did,
            approved=approved,
            output_cid=p.output_cid,
            salt=p.salt,
            fuel_used=p.summary.fuel_used,
            engine=p.summary.engine,
            reason=reason,
            created_at=now_ms,
            parents=(receipt.cid,),
        ).sign(self.identity)

    @staticmethod
    def _judge(p: _Pending, receipt: ExecutionReceipt, output: bytes | None) -> tuple[bool, str]:
        from meshbench.exec.plugins import load_validator

        if p.result is None:
            return False, f"re-execution failed ({p.output[:80]!r}); nothing to compare"
        if output is None or blob_cid(output) != receipt.output_cid:
            return False, f"the worker's output bytes were not supplied for {p.validator!r}"
        try:
            validator = load_validator(p.validator)
        except MeshError as exc:
            return False, f"cannot judge with validator {p.validator!r}: {exc}"
        return validator.confirms(
            receipt.output_cid, receipt.summary, p.result, claimed_output=output
        )

    def _take(self, task_cid: CID, role: str) -> _Pending:
        with self._lock:
            p = self._pending.pop((task_cid, role), None)
        if p is None:
            raise ProtocolError(f"{self.did} holds no {role} commitment for task {task_cid}")
        return p

    def forget(self, task_cid: CID) -> None:
        with self._lock:
            for role in ("worker", "verifier"):
                self._pending.pop((task_cid, role), None)
