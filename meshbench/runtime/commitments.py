"""A worker's commitments on disk, so that a restarted process still opens them.

Between committing and revealing, a :class:`~meshbench.runtime.agent.WorkerAgent` holds what
opens its commitment: the output bytes, the execution's summary and exit code (its salt is
derived from its key, so it needs no storing), and, for a task judged by a content
validator, its own re-execution. A process SIGKILLed in between used to lose all of it and
came back unable to reveal: slashed as a no-show, its task waiting. A
:class:`CommitmentStore` keeps one file per task under the worker's own state dir:

* written before ``execute`` returns the commitment, and again when the reveal or verdict
  is given (the answer itself, so that a request repeated after a restart gets exactly the
  same signed answer, as the agent's memory does);
* atomically: a temporary file, then ``os.replace``; a file half-written by a kill never
  replaces a good one, and a stray temporary file is removed at start. Each file carries the
  SHA-256 of its contents: one that does not check out (torn, truncated, edited) is ignored
  with a log line and removed, never a crash at start;
* without ``fsync`` by default: after ``write`` returns the bytes are in the kernel's page
  cache, which a SIGKILL of the process does not lose. A power loss (or a kernel crash)
  loses what the kernel had not written back yet, typically the last seconds (the dirty
  writeback interval, 5 to 30 s): those commitments cannot be revealed, as before this store
  existed (a no-show). Nothing is revealed wrongly: a lost or torn entry is simply absent.
  ``fsync=True`` syncs each file and the directory (measured in ``meshbench bench agent``);
* private: the directory is 0700 and every file 0600. A private task's output is stored as
  the agent holds it (plaintext, the worker decrypted it to compute); the salt is derivable
  by this key's owner only and is public once revealed anyway;
* bounded: an entry goes when the agent forgets the task; answered entries are kept for the
  last :data:`ANSWERED_KEPT` tasks (the agent's own bound for repeated requests), open ones
  for at most :data:`OPEN_KEPT` tasks and until :data:`STALE_AFTER_MS` past their task's
  deadline (nobody asks for them after that). A soak does not grow it.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections import OrderedDict
from dataclasses import dataclass, field, fields, is_dataclass
from functools import cached_property
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from meshbench.core import encoding
from meshbench.core.encoding import CID, blob_cid
from meshbench.core.errors import MeshError, SchemaError, StoreError
from meshbench.core.types import ExecutionSummary

if TYPE_CHECKING:  # the executors' module imports wasmtime: not needed to read a file
    from meshbench.exec.plugins import ExecutionResult

__all__ = [
    "ANSWERED_KEPT",
    "OPEN_KEPT",
    "STALE_AFTER_MS",
    "Answer",
    "CommitmentStore",
    "OpenCommitment",
    "RestoredResult",
]

log = logging.getLogger("meshbench.commitments")

#: Answered tasks kept on disk (a repeated request after a restart gets the same answer);
#: the agent keeps as many answers in memory.
ANSWERED_KEPT: Final = 8
#: Open (committed, not yet answered) tasks kept at most; the oldest goes first, logged.
OPEN_KEPT: Final = 4096
#: An open entry this long past its task's deadline is dropped (nobody asks for it then).
STALE_AFTER_MS: Final = 10 * 60 * 1000
#: Every this many commitments kept, all open entries are looked at for staleness.
FULL_LOOK_EVERY: Final = 256
_MAGIC: Final = b"meshbench-commitment/v1\n"
_SUFFIX: Final = ".commit"
_DIGEST: Final = 32


@dataclass(frozen=True, kw_only=True)
class RestoredResult:
    """A re-execution read back from disk, for a content validator to judge with: what an
    :class:`~meshbench.exec.plugins.ExecutionResult` has, and the scalar fields of the
    executor's own result type (a tolerance validator reads ``rtol`` and ``atol``) as
    attributes."""

    output: bytes
    stdout: bytes
    stderr: bytes
    exit_code: int
    summary: ExecutionSummary
    logs: tuple[tuple[int, str], ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    @cached_property
    def output_cid(self) -> CID:
        return blob_cid(self.output)

    def __getattr__(self, name: str) -> Any:
        extra = self.__dict__.get("extra", {})
        if name in extra:
            return extra[name]
        raise AttributeError(name)


@dataclass(frozen=True, kw_only=True)
class OpenCommitment:
    """What opens one commitment of this worker (as worker or verifier)."""

    task_cid: CID
    role: str
    output: bytes
    summary: ExecutionSummary
    exit_code: int
    deadline: int
    #: The task's validator when it is not ``exact``, and this party's own re-execution
    #: (None when it failed), which that validator judges the worker's output against.
    validator: str = "exact"
    judging: ExecutionResult | RestoredResult | None = None


@dataclass(frozen=True, kw_only=True)
class Answer:
    """A reveal or a verdict given: the signed object's bytes, and the output sent with it."""

    task_cid: CID
    kind: str
    signed: bytes
    output: bytes
    at: int


_BASE_FIELDS: Final = frozenset(("output", "stdout", "stderr", "exit_code", "summary", "logs"))


def _result_ipld(result: ExecutionResult | RestoredResult | None) -> Any:
    if result is None:
        return None
    names = [f.name for f in fields(result)] if is_dataclass(result) else []
    extra = {
        name: getattr(result, name)
        for name in names
        if name not in _BASE_FIELDS and isinstance(getattr(result, name), str | int | float)
    }
    return {
        "output": result.output,
        "stdout": result.stdout,
        "stderr": result.stderr,
        "exit_code": result.exit_code,
        "summary": result.summary.encode(),
        "extra": extra,
    }


def _result_of(value: Any) -> RestoredResult | None:
    if value is None:
        return None
    return RestoredResult(
        output=value["output"],
        stdout=value["stdout"],
        stderr=value["stderr"],
        exit_code=value["exit_code"],
        summary=ExecutionSummary.decode(value["summary"]),
        extra=dict(value["extra"]),
    )


class CommitmentStore:
    """One worker's open commitments and last answers, one file per task under ``directory``.

    Not thread-safe on its own: the agent calls it under its lock.
    """

    def __init__(self, directory: str | os.PathLike[str], *, fsync: bool = False) -> None:
        self.directory = Path(directory)
        self.fsync = fsync
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.chmod(self.directory, 0o700)
        except OSError as exc:
            raise StoreError(f"cannot use {self.directory} for commitments: {exc}") from exc
        #: task -> deadline of the open entries, oldest first
        self._open: OrderedDict[CID, int] = OrderedDict()
        #: task -> answered, oldest first
        self._answered: OrderedDict[CID, None] = OrderedDict()
        #: files ignored at start because they did not check out
        self.ignored = 0
        self._writes = 0

    # --- reading, once at start ---------------------------------------------------------
    def load(self) -> tuple[list[OpenCommitment], list[Answer]]:
        """Every entry that checks out: the open commitments (oldest first) and the answers
        given (in the order they were given). Torn or foreign files are logged and removed."""
        opened: list[OpenCommitment] = []
        answers: list[Answer] = []
        for tmp in self.directory.glob("*.tmp"):  # a write a kill interrupted
            tmp.unlink(missing_ok=True)
        for path in sorted(self.directory.glob("*" + _SUFFIX)):
            try:
                entry = self._read(path)
            except (MeshError, OSError, KeyError, TypeError, ValueError) as exc:
                self.ignored += 1
                log.warning("ignored the commitment file %s: %s", path.name, exc)
                path.unlink(missing_ok=True)
                continue
            if isinstance(entry, OpenCommitment):
                opened.append(entry)
            else:
                answers.extend(entry)
        opened.sort(key=lambda e: e.deadline)
        answers.sort(key=lambda a: a.at)
        for e in opened:
            self._open[e.task_cid] = e.deadline
        for a in answers:
            self._answered.pop(a.task_cid, None)
            self._answered[a.task_cid] = None
        return opened, answers

    def _read(self, path: Path) -> OpenCommitment | list[Answer]:
        raw = path.read_bytes()
        head = len(_MAGIC) + _DIGEST
        if not raw.startswith(_MAGIC) or len(raw) < head:
            raise StoreError("not a commitment file (or cut short)")
        digest, payload = raw[len(_MAGIC) : head], raw[head:]
        if hashlib.sha256(payload).digest() != digest:
            raise StoreError("its contents do not match their hash (torn or altered)")
        value = encoding.decode(payload, max_bytes=len(payload))
        task_cid = value["task"]
        if not isinstance(task_cid, CID) or path.name != _name(task_cid):
            raise SchemaError("the entry does not belong to this file name")
        if "answers" in value:
            return [
                Answer(
                    task_cid=task_cid,
                    kind=a["kind"],
                    signed=a["signed"],
                    output=a["output"],
                    at=a["at"],
                )
                for a in value["answers"]
            ]
        return OpenCommitment(
            task_cid=task_cid,
            role=value["role"],
            output=value["output"],
            summary=ExecutionSummary.decode(value["summary"]),
            exit_code=value["exit_code"],
            deadline=value["deadline"],
            validator=value["validator"],
            judging=_result_of(value["judging"]),
        )

    # --- writing ----------------------------------------------------------------------
    def committed(self, entry: OpenCommitment, now_ms: int) -> None:
        """Keep ``entry`` (replacing whatever this task had): called before the commitment
        it opens leaves the agent."""
        self._write(
            entry.task_cid,
            {
                "task": entry.task_cid,
                "role": entry.role,
                "output": entry.output,
                "summary": entry.summary.encode(),
                "exit_code": entry.exit_code,
                "deadline": entry.deadline,
                "validator": entry.validator,
                "judging": _result_ipld(entry.judging),
            },
        )
        self._answered.pop(entry.task_cid, None)
        self._open.pop(entry.task_cid, None)
        self._open[entry.task_cid] = entry.deadline
        self._prune(now_ms)

    def answered(self, answers: list[Answer]) -> None:
        """The task's answers given so far (its reveal, or its verdicts): they replace its
        open commitment, which is spent."""
        task_cid = answers[0].task_cid
        self._write(
            task_cid,
            {
                "task": task_cid,
                "answers": [
                    {"kind": a.kind, "signed": a.signed, "output": a.output, "at": a.at}
                    for a in answers
                ],
            },
        )
        self._open.pop(task_cid, None)
        self._answered.pop(task_cid, None)
        self._answered[task_cid] = None
        while len(self._answered) > ANSWERED_KEPT:
            old, _ = self._answered.popitem(last=False)
            self._remove(old)

    def forget(self, task_cid: CID) -> None:
        if self._open.pop(task_cid, None) is not None or task_cid in self._answered:
            self._answered.pop(task_cid, None)
            self._remove(task_cid)

    def __len__(self) -> int:
        return len(self._open) + len(self._answered)

    def _prune(self, now_ms: int) -> None:
        while len(self._open) > OPEN_KEPT:
            old, _ = self._open.popitem(last=False)
            log.warning("dropped the commitment for %s: over %d open commitments", old, OPEN_KEPT)
            self._remove(old)
        # entries come in roughly deadline order: a look at the first few keeps a write O(1)
        # and drains stale ones; a full look now and then catches one stuck behind
        self._writes += 1
        look = len(self._open) if self._writes % FULL_LOOK_EVERY == 0 else 4
        for task_cid, deadline in list(islice(self._open.items(), look)):
            if deadline + STALE_AFTER_MS < now_ms:
                del self._open[task_cid]
                self._remove(task_cid)

    def _path(self, task_cid: CID) -> Path:
        return self.directory / _name(task_cid)

    def _write(self, task_cid: CID, value: dict[str, Any]) -> None:
        payload = encoding.encode(value)
        data = _MAGIC + hashlib.sha256(payload).digest() + payload
        path = self._path(task_cid)
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if self.fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        if self.fsync:
            dfd = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)

    def _remove(self, task_cid: CID) -> None:
        self._path(task_cid).unlink(missing_ok=True)


def _name(task_cid: CID) -> str:
    return str(task_cid) + _SUFFIX
