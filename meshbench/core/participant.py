"""A worker's or verifier's side of commit-reveal, sans-IO.

The ledger authority's :class:`~meshbench.core.protocol.AuthorityState` asks a node to execute
(``RunExecution``), to re-execute (``RunVerification``), to reveal (``RequestReveal``) and to
judge (``RequestVerdict``). The runtime runs the executor and hands the result to a
:class:`Participant`, which makes the signed objects the authority expects, with exactly
the rules the authority checks:

* :meth:`Participant.commit` - a :class:`ResultCommitment` bound to the task, this node's
  DID, the output CID and a salt; the salt is a keyed hash (by a key derived from this node's
  secret) of the task CID, so it is unpredictable to others, needs no random source, and
  survives a restart;
* :meth:`Participant.reveal` - the :class:`ExecutionReceipt` that opens it;
* :meth:`Participant.verdict` - the :class:`VerificationReceipt` that opens this node's own
  commitment and approves exactly when its output equals the worker's.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from meshbench.core.encoding import CID
from meshbench.core.errors import ProtocolError
from meshbench.core.identity import Identity
from meshbench.core.types import (
    ExecutionReceipt,
    ExecutionSummary,
    ResultCommitment,
    VerificationReceipt,
    result_commitment,
)

__all__ = ["Participant"]


@dataclass(frozen=True, slots=True)
class _Result:
    output_cid: CID | None
    salt: bytes
    summary: ExecutionSummary | None
    exit_code: int


class Participant:
    def __init__(self, identity: Identity) -> None:
        self.identity = identity
        self._results: dict[CID, _Result] = {}
        self._salt_key = hashlib.sha256(b"meshbench/salt-key/v1\0" + identity.seed()).digest()

    @property
    def did(self) -> str:
        return self.identity.did

    def salt(self, task_cid: CID) -> bytes:
        """16 bytes keyed by this node's secret: unpredictable to others, stable across restarts."""
        return hashlib.blake2b(bytes(task_cid), key=self._salt_key, digest_size=16).digest()

    def commit(
        self,
        task_cid: CID,
        output_cid: CID,
        now: int,
        *,
        summary: ExecutionSummary | None = None,
        exit_code: int = 0,
    ) -> ResultCommitment:
        """Remember this node's result for ``task_cid`` and commit to it (once)."""
        if task_cid in self._results:
            raise ProtocolError(f"{self.did} already committed for task {task_cid}")
        salt = self.salt(task_cid)
        self._results[task_cid] = _Result(output_cid, salt, summary, exit_code)
        return ResultCommitment(
            task_cid=task_cid,
            worker=self.did,
            commitment=result_commitment(task_cid, self.did, output_cid, salt),
            created_at=now,
        ).sign(self.identity)

    def restore(
        self,
        task_cid: CID,
        output_cid: CID,
        *,
        summary: ExecutionSummary | None = None,
        exit_code: int = 0,
    ) -> None:
        """Take up a commitment this identity made before its process restarted (its record
        kept on disk by the runtime): the salt is derived again, so the reveal and the
        verdict open that commitment exactly as they would have."""
        salt = self.salt(task_cid)
        self._results[task_cid] = _Result(output_cid, salt, summary, exit_code)

    def holds(self, task_cid: CID) -> bool:
        """Whether this node holds a commitment for ``task_cid`` not yet forgotten."""
        return task_cid in self._results

    def _result(self, task_cid: CID) -> _Result:
        result = self._results.get(task_cid)
        if result is None:
            raise ProtocolError(f"{self.did} has no committed result for task {task_cid}")
        return result

    def reveal(self, task_cid: CID, now: int) -> ExecutionReceipt:
        r = self._result(task_cid)
        assert r.output_cid is not None
        summary = r.summary or ExecutionSummary(fuel_used=0, peak_memory_bytes=0, wall_time_us=0)
        return ExecutionReceipt(
            task_cid=task_cid,
            worker=self.did,
            output_cid=r.output_cid,
            result_commitment=result_commitment(task_cid, self.did, r.output_cid, r.salt),
            salt=r.salt,
            exit_code=r.exit_code,
            summary=summary,
            created_at=now,
        ).sign(self.identity)

    def verdict(
        self,
        task_cid: CID,
        receipt: ExecutionReceipt,
        now: int,
        *,
        judged: tuple[bool, str] | None = None,
    ) -> VerificationReceipt:
        """Approve exactly when the outputs are equal; for a task judged by a content
        validator (not ``exact``), ``judged`` is that validator's ``(approved, reason)`` on
        different outputs (an identical output is always approved)."""
        r = self._result(task_cid)
        engine = r.summary.engine if r.summary else ""
        fuel = r.summary.fuel_used if r.summary else 0
        approved = r.output_cid == receipt.output_cid
        reason = "" if approved else f"re-execution gave {r.output_cid}"
        if not approved and judged is not None:
            approved, reason = judged
        return VerificationReceipt(
            task_cid=task_cid,
            receipt_cid=receipt.cid,
            verifier=self.did,
            approved=approved,
            output_cid=r.output_cid,
            salt=r.salt,
            fuel_used=fuel,
            engine=engine,
            reason=reason,
            created_at=now,
            parents=(receipt.cid,),
        ).sign(self.identity)

    def forget(self, task_cid: CID) -> None:
        self._results.pop(task_cid, None)
