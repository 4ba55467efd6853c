"""The spec's data model: tasks, offers, receipts, peers, reputation, credentials.

Every type is a frozen :class:`~meshbench.core.model.Model`; the ones a participant
publishes are :class:`~meshbench.core.model.Signed` by that participant. Times are integer
milliseconds from the injected clock; amounts are integer token units.
"""

from __future__ import annotations

import hashlib
from typing import Annotated, Any, ClassVar, Final, Literal

from msgspec import Meta

from meshbench.core import encoding
from meshbench.core.encoding import CID
from meshbench.core.model import DID, MAX_AMOUNT, Amount, Count, Model, Signed, TimestampMs

__all__ = [
    "CapabilityScope",
    "ComputeOffer",
    "Credential",
    "ExecutionReceipt",
    "ExecutionSummary",
    "HardwareProfile",
    "PeerInfo",
    "ReputationSnapshot",
    "ResultCommitment",
    "TaskIntent",
    "VerificationReceipt",
    "result_commitment",
]

MB: Final = 1024 * 1024
Score = Annotated[float, Meta(ge=0.0, le=1.0)]
ShortText = Annotated[str, Meta(max_length=1024)]
Name = Annotated[str, Meta(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:/@+-]+$")]
#: An argument of a task: argv entries are bounded so a task cannot carry "huge argv".
Arg = Annotated[str, Meta(max_length=4096)]
MAX_ARGS: Final = 256
Digest = Annotated[bytes, Meta(min_length=32, max_length=32)]


class CapabilityScope(Model, tag="CapabilityScope"):
    """The exact resources a task may use; the executor enforces every one of them."""

    memory_mb: Annotated[int, Meta(ge=1, le=64 * 1024)] = 128
    cpu_cycles: Annotated[int, Meta(ge=1, le=10**15)] = 1_000_000
    gpu_flops: Annotated[int, Meta(ge=0, le=10**18)] = 0
    io_mb: Annotated[int, Meta(ge=0, le=1024 * 1024)] = 50

    def fits_within(self, other: CapabilityScope) -> bool:
        """True when every limit of ``self`` is at most ``other``'s."""
        return (
            self.memory_mb <= other.memory_mb
            and self.cpu_cycles <= other.cpu_cycles
            and self.gpu_flops <= other.gpu_flops
            and self.io_mb <= other.io_mb
        )


class HardwareProfile(Model, tag="HardwareProfile"):
    """What a worker offers: the largest task scope it accepts, and its machine."""

    memory_mb: Annotated[int, Meta(ge=0, le=16 * 1024 * 1024)]
    cpu_cores: Annotated[int, Meta(ge=1, le=1_000_000)] = 1
    cpu_cycles: Annotated[int, Meta(ge=0, le=10**15)] = 10**12
    gpu_flops: Annotated[int, Meta(ge=0, le=10**18)] = 0
    gpu_class: Annotated[str, Meta(max_length=128)] = ""
    io_mb: Annotated[int, Meta(ge=0, le=1024 * 1024 * 1024)] = 10_240

    def satisfies(self, scope: CapabilityScope) -> bool:
        return (
            self.memory_mb >= scope.memory_mb
            and self.cpu_cycles >= scope.cpu_cycles
            and self.gpu_flops >= scope.gpu_flops
            and self.io_mb >= scope.io_mb
        )

    def shortfall(self, scope: CapabilityScope) -> list[str]:
        """The resources where this hardware is below ``scope`` (empty when it satisfies)."""
        out = []
        for name in ("memory_mb", "cpu_cycles", "gpu_flops", "io_mb"):
            if getattr(self, name) < getattr(scope, name):
                out.append(f"{name} {getattr(self, name)} < {getattr(scope, name)}")
        return out


class TaskIntent(Signed, tag="TaskIntent"):
    """A publisher's request to run a module on an input, with the fee it locks in escrow."""

    SIGNER: ClassVar[str] = "publisher"
    OMIT_IF_DEFAULT: ClassVar[dict[str, Any]] = {"validator": "exact", "assurance": "policy"}
    publisher: DID
    federation: DID
    wasm_cid: CID
    input_cid: CID
    # a task pays its worker and verifiers from the fee, and is checked by at least one
    # verifier: a zero fee or zero verifiers is refused when built and when decoded
    fee: Annotated[int, Meta(ge=1, le=MAX_AMOUNT)]
    verifier_count: Annotated[int, Meta(ge=1, le=64)] = 3
    scope: CapabilityScope = CapabilityScope()
    args: Annotated[tuple[Arg, ...], Meta(max_length=MAX_ARGS)] = ()
    #: Executor plug-in that runs the task (``wasm`` is built in).
    executor: Name = "wasm"
    #: Validator plug-in verifiers judge with. ``exact`` (the default): a verifier approves
    #: exactly when its output CID equals the worker's. Any other (e.g. ``tolerance`` for
    #: floating point kernels): an identical output must be approved, a different one is
    #: judged by that validator on both outputs' bytes.
    validator: Name = "exact"
    #: ``policy`` (the default): verified as the federation's policy says (sampled audits when
    #: its ``audit`` section is on); ``full``: the publisher asks for the full quorum anyway.
    assurance: Literal["policy", "full"] = "policy"
    #: Where the result is: ``stdout`` or the guest path of a file the module writes.
    output: Annotated[str, Meta(min_length=1, max_length=256)] = "stdout"
    created_at: TimestampMs
    deadline: TimestampMs
    nonce: Count = 0
    parents: tuple[CID, ...] = ()

    def _validate(self) -> None:
        encoding.parse_cid(self.wasm_cid, codec=encoding.RAW)
        encoding.parse_cid(self.input_cid, codec=encoding.RAW)
        if self.deadline <= self.created_at:
            raise ValueError(f"deadline {self.deadline} must be after created_at {self.created_at}")
        if self.output != "stdout" and not self.output.startswith("/"):
            raise ValueError("output is 'stdout' or an absolute guest path such as /out/result")

    @property
    def seed(self) -> bytes:
        """The 32-byte determinism seed of this task (virtual clock and random numbers)."""
        return hashlib.sha256(b"meshbench/seed/v1\0" + bytes(self.cid)).digest()


class ComputeOffer(Signed, tag="ComputeOffer"):
    """A worker's bid to execute a task."""

    SIGNER: ClassVar[str] = "worker"
    task_cid: CID
    worker: DID
    federation: DID
    cost: Amount
    capacity: Annotated[int, Meta(ge=0, le=1_000_000)] = 1
    eta_ms: Annotated[int, Meta(ge=0, le=30 * 24 * 3600 * 1000)]
    hardware: HardwareProfile
    created_at: TimestampMs
    parents: tuple[CID, ...] = ()

    def _validate(self) -> None:
        encoding.parse_cid(self.task_cid, codec=encoding.DAG_CBOR)


class ExecutionSummary(Model, tag="ExecutionSummary"):
    """What an execution consumed, for accountability and pricing."""

    fuel_used: Count
    peak_memory_bytes: Count
    wall_time_us: Count
    io_bytes: Count = 0
    gpu_time_us: Count = 0
    flops: Count = 0
    contribution_score: Score = 1.0
    verification_confirmed: bool = False
    #: Engine identity (e.g. ``wasmtime-50.0.1/3f2a...``): fuel is only comparable within one.
    engine: Annotated[str, Meta(max_length=256)] = ""


def result_commitment(task_cid: CID, worker: str, output_cid: CID, salt: bytes) -> bytes:
    """The hash a worker commits to before revealing its result.

    Bound to the task and the worker's own DID, so a commitment copied from another worker
    never matches the copier's reveal.
    """
    h = hashlib.sha256(b"meshbench/commit/v1\0")
    for part in (bytes(task_cid), worker.encode(), bytes(output_cid), salt):
        h.update(len(part).to_bytes(4, "big"))
        h.update(part)
    return h.digest()


class ResultCommitment(Signed, tag="ResultCommitment"):
    """Commit phase: the worker binds itself to a result without showing it."""

    SIGNER: ClassVar[str] = "worker"
    task_cid: CID
    worker: DID
    commitment: Digest
    created_at: TimestampMs
    parents: tuple[CID, ...] = ()


class ExecutionReceipt(Signed, tag="ExecutionReceipt"):
    """Reveal phase: the worker's signed result, opening its earlier commitment."""

    SIGNER: ClassVar[str] = "worker"
    task_cid: CID
    worker: DID
    output_cid: CID
    result_commitment: Digest
    salt: Annotated[bytes, Meta(min_length=16, max_length=64)]
    exit_code: Annotated[int, Meta(ge=-(2**31), le=2**31 - 1)] = 0
    summary: ExecutionSummary
    created_at: TimestampMs
    parents: tuple[CID, ...] = ()

    def _validate(self) -> None:
        encoding.parse_cid(self.task_cid, codec=encoding.DAG_CBOR)
        encoding.parse_cid(self.output_cid, codec=encoding.RAW)
        expected = result_commitment(self.task_cid, self.worker, self.output_cid, self.salt)
        if expected != self.result_commitment:
            raise ValueError("result_commitment does not open to (task, worker, output, salt)")


class VerificationReceipt(Signed, tag="VerificationReceipt"):
    """A verifier's signed verdict on an execution receipt, after re-executing the task."""

    SIGNER: ClassVar[str] = "verifier"
    task_cid: CID
    receipt_cid: CID
    verifier: DID
    approved: bool
    #: What the verifier computed; None when its own execution failed.
    output_cid: CID | None = None
    #: Opens the verifier's own ResultCommitment (signed before the worker revealed):
    #: ``result_commitment(task_cid, verifier, output_cid, salt)``; empty when it failed.
    salt: Annotated[bytes, Meta(max_length=64)] = b""
    fuel_used: Count = 0
    engine: Annotated[str, Meta(max_length=256)] = ""
    reason: ShortText = ""
    created_at: TimestampMs
    parents: tuple[CID, ...] = ()


PeerRole = Literal["worker", "verifier", "publisher", "authority"]


class PeerInfo(Signed, tag="PeerInfo"):
    """A mesh participant's self-description."""

    SIGNER: ClassVar[str] = "did"
    did: DID
    federation: DID
    roles: tuple[PeerRole, ...] = ("worker", "verifier")
    hardware: HardwareProfile | None = None
    peer_id: Annotated[str, Meta(max_length=128)] = ""
    addresses: Annotated[tuple[Annotated[str, Meta(max_length=256)], ...], Meta(max_length=32)] = ()
    agent: Annotated[str, Meta(max_length=128)] = "meshbench"
    updated_at: TimestampMs


class ReputationSnapshot(Signed, tag="ReputationSnapshot"):
    """A point-in-time reputation of a peer, signed by the ledger authority that folded it."""

    SIGNER: ClassVar[str] = "authority"
    authority: DID
    peer: DID
    federation: DID
    score: Score
    executions_ok: Count = 0
    executions_bad: Count = 0
    verifications_ok: Count = 0
    verifications_bad: Count = 0
    at: TimestampMs
    parents: tuple[CID, ...] = ()


class Credential(Signed, tag="Credential"):
    """A federation attests that ``member`` belongs to it until ``expires_at``."""

    SIGNER: ClassVar[str] = "federation"
    federation: DID
    member: DID
    roles: tuple[PeerRole, ...] = ("worker", "verifier", "publisher")
    issued_at: TimestampMs
    expires_at: TimestampMs

    def _validate(self) -> None:
        if self.expires_at <= self.issued_at:
            raise ValueError("expires_at must be after issued_at")

    def valid_at(self, now_ms: int) -> bool:
        return self.issued_at <= now_ms < self.expires_at
