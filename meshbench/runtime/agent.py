"""The participant side of the protocol: what a worker or verifier does when asked.

A :class:`WorkerAgent` lives wherever its machine is (a Dask worker process, a thread of the
node, a libp2p peer). It makes offers for tasks its hardware can run, executes tasks under
the deterministic executor, commits to results before anyone reveals, reveals when the
commit phase closes, and judges a worker's receipt by its own re-execution. Its secrets
(salts, outputs between commit and reveal) never leave it before they are due. The signed
commit-reveal objects themselves are made by :class:`~meshbench.core.participant.Participant`.

``behaviour`` exists for demos and simulations of dishonest peers: ``honest``, ``wrong``
(reports a wrong output as worker, honest as verifier) or ``lazy`` (skips the work and
reports the input as its output). A dishonest agent still signs with its own key, so the
protocol catches it by re-execution, not by trusting anyone.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from meshbench.core.encoding import CID, blob_cid
from meshbench.core.errors import (
    DecryptionError,
    ExecutionError,
    InvalidModule,
    MeshError,
    ProtocolError,
    StoreError,
)
from meshbench.core.events import StakeRequest
from meshbench.core.identity import Identity
from meshbench.core.participant import Participant
from meshbench.core.types import (
    ComputeOffer,
    ExecutionReceipt,
    ExecutionSummary,
    HardwareProfile,
    PeerInfo,
    ResultCommitment,
    TaskIntent,
    VerificationReceipt,
)
from meshbench.runtime.commitments import Answer, CommitmentStore, OpenCommitment

__all__ = ["Behaviour", "CostModel", "WorkerAgent", "error_output"]

Behaviour = Literal["honest", "wrong", "lazy", "trust-then-cheat"]
BEHAVIOURS: Final = ("honest", "wrong", "lazy", "trust-then-cheat")
#: executions a ``trust-then-cheat`` worker does honestly before it cheats (on about half
#: of its tasks after that, chosen by the task's CID)
TRUST_TASKS: Final = 3
#: How many reveals and verdicts an agent keeps to answer a repeated request (a restarted
#: authority asks again only for the tasks in flight: a few per agent; a constant, so an
#: agent's memory does not grow with history).
ANSWERS_KEPT: Final = 8
log = logging.getLogger("meshbench.agent")


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
        commitments: CommitmentStore | None = None,
    ) -> None:
        """``executors``: plug-ins for tasks whose ``executor`` is not ``wasm`` (by name, e.g.
        ``{"cuda": CudaExecutor()}``); a task for an executor this agent lacks gets no offer.
        ``commitments``: where this agent keeps what opens its commitments, so that its
        process can be killed and started again between committing and revealing (the
        commitments kept there are taken up now); without it they live in memory only.
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
        # the commit-reveal objects are made by the core's Participant, with exactly the
        # rules the authority checks; the agent keeps the output bytes until they are due
        self.participant = Participant(identity)
        self._outputs: dict[CID, bytes] = {}
        #: (validator, own ExecutionResult or None) of tasks judged by a content validator
        self._judging: dict[CID, tuple[str, Any]] = {}
        #: the last reveals and verdicts given, by (task, kind): a request made again (the
        #: authority restarted before it recorded the answer) gets the same answer
        self._answered: OrderedDict[tuple[CID, str], Any] = OrderedDict()
        self._lock = threading.Lock()
        self._worked = 0  # executions as a worker (trust-then-cheat counts them)
        self.commitments = commitments
        if commitments is not None:
            self._take_up(commitments)

    def _take_up(self, store: CommitmentStore) -> None:
        """Continue the commitments and answers ``store`` kept for a previous process."""
        opened, answers = store.load()
        for c in opened:
            self.participant.restore(
                c.task_cid, blob_cid(c.output), summary=c.summary, exit_code=c.exit_code
            )
            self._outputs[c.task_cid] = c.output
            if c.validator != "exact":
                self._judging[c.task_cid] = (c.validator, c.judging)
        for a in answers[-ANSWERS_KEPT:]:
            signed = ExecutionReceipt if a.kind == "reveal" else VerificationReceipt
            self._answered[(a.task_cid, a.kind)] = (signed.decode(a.signed), a.output)

    def take_over(self, previous: WorkerAgent) -> None:
        """Continue the commit-reveal state of ``previous``, an agent of the same identity
        this one replaces (its host set up again), so that its commitments can still be
        revealed and judged."""
        if previous.did != self.did:
            raise ProtocolError(f"{self.did} cannot take over the state of {previous.did}")
        with previous._lock, self._lock:
            self.participant = previous.participant
            self._outputs = previous._outputs
            self._judging = previous._judging
            self._answered = previous._answered
            if previous.commitments is not None and previous.commitments is not self.commitments:
                if self.commitments is not None:  # the same rows: one store for both
                    self.commitments.close()
                self.commitments = previous.commitments

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
        eta = self.cost.eta_ms(task)
        if now_ms + eta > task.deadline:
            return None  # the result could not be delivered (and verified) in time
        return ComputeOffer(
            task_cid=task.cid,
            worker=self.did,
            federation=self.federation,
            cost=cost,
            capacity=self.capacity,
            eta_ms=eta,
            hardware=self.hardware,
            created_at=now_ms,
            parents=(task.cid,),
        ).sign(self.identity)

    # --- executing and committing ----------------------------------------------------
    def execute(
        self,
        task: TaskIntent,
        wasm: bytes,
        data: bytes,
        now_ms: int,
        *,
        role: str,
        envelope: bytes | None = None,
    ) -> ResultCommitment:
        """Run ``task`` (as ``worker`` or ``verifier``) and commit to the result.

        A private task's ``data`` is the ciphertext; ``envelope`` (an
        :class:`~meshbench.store.blobs.EncryptedBlob` whose key the publisher sealed to this
        peer when it was chosen) opens it here and nowhere else.
        """
        if envelope is not None:
            data = self._open_private(task, data, envelope)
            output, summary, exit_code, result = self._run(task, wasm, data, role, private=True)
        else:
            output, summary, exit_code, result = self._run(task, wasm, data, role)
        if role == "worker" and self.behaviour == "trust-then-cheat":
            self._worked += 1
        cheats = self.behaviour == "wrong" or (  # then about half the time, by the task
            self.behaviour == "trust-then-cheat"
            and self._worked > TRUST_TASKS
            and bytes(task.cid)[-1] % 2 == 0
        )
        if role == "worker" and cheats:
            output = hashlib.sha256(b"wrong" + output).digest()
        with self._lock:
            self.participant.forget(task.cid)  # a new assignment asks for a fresh commitment
            for kind in [k for k in self._answered if k[0] == task.cid]:
                del self._answered[kind]
            commitment = self.participant.commit(
                task.cid, blob_cid(output), now_ms, summary=summary, exit_code=exit_code
            )
            if self.commitments is not None:  # on disk before the commitment leaves
                entry = OpenCommitment(
                    task_cid=task.cid,
                    role=role,
                    output=output,
                    summary=summary,
                    exit_code=exit_code,
                    deadline=task.deadline,
                    validator=task.validator,
                    judging=result if task.validator != "exact" else None,
                )
                try:
                    self.commitments.committed(entry, now_ms)
                except StoreError:  # not committed: the request times out, nothing kept
                    self.participant.forget(task.cid)
                    raise
            self._outputs[task.cid] = output
            if task.validator != "exact":
                self._judging[task.cid] = (task.validator, result)
            return commitment

    def _open_private(self, task: TaskIntent, ciphertext: bytes, envelope: bytes) -> bytes:
        from meshbench.core.model import decode_object
        from meshbench.store.blobs import EncryptedBlob, decrypt

        env = decode_object(envelope)
        if not isinstance(env, EncryptedBlob) or env.ciphertext_cid != task.input_cid:
            raise DecryptionError("the envelope does not belong to this task's input")
        return decrypt(ciphertext, env, self.identity)

    def _run(
        self, task: TaskIntent, wasm: bytes, data: bytes, role: str, *, private: bool = False
    ) -> tuple[bytes, ExecutionSummary, int, Any]:
        if role == "worker" and self.behaviour == "lazy":
            lazy = ExecutionSummary(fuel_used=0, peak_memory_bytes=0, wall_time_us=0)
            return data, lazy, 0, None
        executor = self.executor_for(task)
        if executor is None:
            raise ProtocolError(f"{self.did} has no {task.executor!r} executor for this task")
        try:
            if private and task.executor != "wasm":
                raise ExecutionError(
                    f"private inputs are supported for wasm tasks only, not {task.executor!r}",
                    fuel_used=0,
                )
            if private:  # the input CID is the ciphertext's: check the module, run the plaintext
                if blob_cid(wasm) != task.wasm_cid:
                    raise InvalidModule(f"the module bytes do not hash to {task.wasm_cid}")
                result = self.executor.run(
                    self.executor.load(wasm, task.wasm_cid),
                    data,
                    args=task.args,
                    scope=task.scope,
                    seed=task.seed,
                    output=task.output,
                )
            else:
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

    def recompute(self, task: TaskIntent, wasm: bytes, data: bytes) -> bytes:
        """The output an honest verifier commits to for ``task`` (a guest failure is its
        error bytes, as for everyone): the referee's re-execution at the authority."""
        return self._run(task, wasm, data, "verifier")[0]

    def reveal(self, task_cid: CID, now_ms: int) -> tuple[ExecutionReceipt, bytes]:
        """Open the worker commitment: the signed receipt, and the output bytes."""
        with self._lock:
            given = self._answered.get((task_cid, "reveal")) or self._kept(task_cid, "reveal")
            if given is not None:
                return given  # asked again: the authority had not recorded it
            receipt = self.participant.reveal(task_cid, now_ms)
            output = self._outputs.pop(task_cid, b"")
            self.participant.forget(task_cid)
            self._keep((task_cid, "reveal"), (receipt, output), now_ms)
        return receipt, output

    def _kept(self, task_cid: CID, kind: str) -> Any:
        """An answer given before that memory no longer holds, from the store (the lock
        held): asked again after more answers than memory keeps, or after a restart."""
        if self.commitments is None or self.participant.holds(task_cid):
            return None
        a = self.commitments.answer(task_cid, kind)
        if a is None:
            return None
        signed = ExecutionReceipt if kind == "reveal" else VerificationReceipt
        return signed.decode(a.signed), a.output

    def _keep(self, key: tuple[CID, str], answer: Any, now_ms: int) -> None:
        """Remember an answer given (the lock held), the oldest forgotten past the bound;
        with a store, on disk before it is returned (it replaces the spent commitment)."""
        self._answered[key] = answer
        while len(self._answered) > ANSWERS_KEPT:
            self._answered.popitem(last=False)
        if self.commitments is None:
            return
        task_cid = key[0]
        answers = [
            Answer(
                task_cid=task_cid,
                kind=kind,
                signed=signed.encode(),
                output=output,
                at=now_ms,
            )
            for (cid, kind), (signed, output) in self._answered.items()
            if cid == task_cid
        ]
        try:
            self.commitments.answered(answers)
        except StoreError as exc:  # answered from memory; a restart would lose this answer
            log.warning("could not keep the answer for %s on disk: %s", task_cid, exc)

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
        return self.verdict_with_output(task_cid, receipt, now_ms, output=output)[0]

    def verdict_with_output(
        self,
        task_cid: CID,
        receipt: ExecutionReceipt,
        now_ms: int,
        *,
        output: bytes | None = None,
    ) -> tuple[VerificationReceipt, bytes]:
        """:meth:`verdict` and this verifier's own output bytes: under a content validator
        the authority judges the two outputs itself (the verdict is evidence, not a vote),
        so the bytes travel to it with the verdict."""
        key = (task_cid, f"verdict {receipt.cid}")
        with self._lock:
            given = self._answered.get(key) or self._kept(*key)
            if given is not None:
                return given  # asked again: the authority had not recorded it
            judging = self._judging.pop(task_cid, None)
            mine = self._outputs.get(task_cid, b"")
        judged = None
        if judging is not None and blob_cid(mine) != receipt.output_cid:
            judged = self._judge(*judging, receipt, output)
        with self._lock:
            verdict = self.participant.verdict(task_cid, receipt, now_ms, judged=judged)
            self._outputs.pop(task_cid, None)
            self.participant.forget(task_cid)
            self._keep(key, (verdict, mine), now_ms)
        return verdict, mine

    @staticmethod
    def _judge(
        validator_name: str, mine: Any, receipt: ExecutionReceipt, output: bytes | None
    ) -> tuple[bool, str]:
        from meshbench.exec.plugins import load_validator

        if mine is None:
            return False, "this verifier's re-execution failed; nothing to compare"
        if output is None or blob_cid(output) != receipt.output_cid:
            return False, f"the worker's output bytes were not supplied for {validator_name!r}"
        try:
            validator = load_validator(validator_name)
        except MeshError as exc:
            return False, f"cannot judge with validator {validator_name!r}: {exc}"
        return validator.confirms(receipt.output_cid, receipt.summary, mine, claimed_output=output)

    def forget(self, task_cid: CID) -> None:
        with self._lock:
            for kind in [k for k in self._answered if k[0] == task_cid]:
                del self._answered[kind]
            self._outputs.pop(task_cid, None)
            self._judging.pop(task_cid, None)
            self.participant.forget(task_cid)
            if self.commitments is not None:
                self.commitments.forget(task_cid)
