"""A worker's commitments on disk, so that a restarted process still opens them.

Between committing and revealing, a :class:`~meshbench.runtime.agent.WorkerAgent` holds what
opens its commitment: the output bytes, the execution's summary and exit code (its salt is
derived from its key, so it needs no storing), and, for a task judged by a content
validator, its own re-execution. A process SIGKILLed in between used to lose all of it and
came back unable to reveal: slashed as a no-show, its task waiting. A
:class:`CommitmentStore` keeps one row per task in a SQLite database (WAL) under the
worker's own state dir:

* written before ``execute`` returns the commitment, and again when the reveal or verdict
  is given (the answer itself, so that a request repeated after a restart gets exactly the
  same signed answer, as the agent's memory does);
* each write one transaction: a kill mid-write leaves the row as it was. Each row carries
  the SHA-256 of its contents: one that does not check out (a damaged file, an edit) is
  ignored with a log line and removed; a database that does not open at all is set aside
  (renamed ``*.corrupt``) with a log line and a fresh one started: never a crash at start;
* ``synchronous=NORMAL`` by default: a committed transaction is in the WAL, in the kernel's
  page cache, when ``execute`` returns, and a SIGKILL of the process loses nothing. A power
  loss (or a kernel crash) may lose the transactions since the last checkpoint, typically the
  last seconds; the database stays consistent. Those commitments cannot be revealed, as
  before this store existed (a no-show); nothing is revealed wrongly. ``fsync=True``
  (``synchronous=FULL``) syncs every transaction: its price is in ``meshbench bench agent``.
  (One file per task, written to a temporary file and renamed, cost 20 ms per task here:
  five metadata operations on a loaded disk; a row costs tens of microseconds.)
* private: the directory is 0700 and the database 0600 (its WAL follows). A private task's
  output is stored as the agent holds it (plaintext, the worker decrypted it to compute); the
  salt is derivable by this key's owner only and is public once revealed anyway;
* bounded: a row goes when the agent forgets the task; answered rows are kept for the last
  :data:`ANSWERED_KEPT` tasks (the agent's own bound for repeated requests), open ones for
  at most :data:`OPEN_KEPT` tasks and until :data:`STALE_AFTER_MS` past their task's deadline
  (nobody asks for them after that). A soak does not grow it.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, fields, is_dataclass
from functools import cached_property
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar

from meshbench.core import encoding
from meshbench.core.encoding import CID, blob_cid
from meshbench.core.errors import MeshError, SchemaError, StoreError
from meshbench.core.types import ExecutionSummary

if TYPE_CHECKING:  # the executors' module imports wasmtime: not needed to read a file
    from meshbench.exec.plugins import ExecutionResult

__all__ = [
    "ANSWERED_BYTES_KEPT",
    "ANSWERED_KEPT",
    "DB_NAME",
    "OPEN_KEPT",
    "STALE_AFTER_MS",
    "Answer",
    "CommitmentStore",
    "OpenCommitment",
    "RestoredResult",
]

log = logging.getLogger("meshbench.commitments")
_T = TypeVar("_T")

#: Answered tasks kept on disk (a request repeated after a restart, or after the agent's
#: memory dropped the answer, gets the same answer), and the most bytes they may hold: a
#: party can be asked again until its stage times out (tens of seconds, many tasks later)
ANSWERED_KEPT: Final = 256
ANSWERED_BYTES_KEPT: Final = 64 * 1024 * 1024
#: Answered rows beyond the bound go this many at a time (with the write that passes it).
PRUNE_BATCH: Final = 32
#: Open (committed, not yet answered) tasks kept at most; the oldest goes first, logged.
OPEN_KEPT: Final = 4096
#: An open entry this long past its task's deadline is dropped (nobody asks for it then).
STALE_AFTER_MS: Final = 10 * 60 * 1000
#: Every this many commitments kept, all open entries are looked at for staleness.
FULL_LOOK_EVERY: Final = 256
#: The database's file name in the state dir.
DB_NAME: Final = "commitments.sqlite"


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


def _locked(method: Callable[..., _T]) -> Callable[..., _T]:
    @functools.wraps(method)
    def locked(self: CommitmentStore, *args: Any, **kw: Any) -> _T:
        with self._lock:
            return method(self, *args, **kw)

    return locked


class CommitmentStore:
    """One worker's open commitments and last answers: ``commitments.sqlite`` in
    ``directory``.

    Thread-safe (one lock; the agent calls it under its own lock anyway, and an agent that
    takes over another's state shares its store).
    """

    def __init__(self, directory: str | os.PathLike[str], *, fsync: bool = False) -> None:
        self.directory = Path(directory)
        self.path = self.directory / DB_NAME
        self.fsync = fsync
        #: task -> deadline of the open entries, oldest first
        self._open: OrderedDict[CID, int] = OrderedDict()
        #: task -> bytes of its answered row, oldest first
        self._answered: OrderedDict[CID, int] = OrderedDict()
        self._answered_bytes = 0
        #: entries (or a whole database) ignored at start because they did not check out
        self.ignored = 0
        self._writes = 0
        self._lock = threading.RLock()
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.chmod(self.directory, 0o700)
            self._db = self._open_db()
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot keep commitments in {self.directory}: {exc}") from exc

    def _open_db(self) -> sqlite3.Connection:
        try:
            return self._connect()
        except sqlite3.DatabaseError as exc:  # not a database (damaged): set it aside
            self.ignored += 1
            aside = self.path.with_name(f"{DB_NAME}.{int(time.time())}.corrupt")
            log.warning("set aside the commitments database %s (%s): started afresh", aside, exc)
            os.replace(self.path, aside)
            for suffix in ("-wal", "-shm"):
                Path(str(self.path) + suffix).unlink(missing_ok=True)
            return self._connect()

    def _connect(self) -> sqlite3.Connection:
        # created 0600 before SQLite opens it; its -wal and -shm files take its mode
        os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={'FULL' if self.fsync else 'NORMAL'}")
            db.execute(
                "CREATE TABLE IF NOT EXISTS entries (task TEXT PRIMARY KEY, answered INTEGER"
                " NOT NULL, deadline INTEGER NOT NULL, body BLOB NOT NULL, digest BLOB NOT NULL)"
            )
        except sqlite3.Error:
            db.close()
            raise
        return db

    @_locked
    def close(self) -> None:
        self._db.close()

    # --- reading, once at start ---------------------------------------------------------
    @_locked
    def load(self) -> tuple[list[OpenCommitment], list[Answer]]:
        """Every entry that checks out: the open commitments (oldest first) and the answers
        given (in the order they were given). Entries that do not are logged and removed."""
        opened: list[OpenCommitment] = []
        answers: list[Answer] = []
        bad: list[str] = []
        try:
            rows = self._db.execute("SELECT task, body, digest FROM entries").fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read the commitments in {self.path}: {exc}") from exc
        for task, body, digest in rows:
            try:
                entry = self._read(task, body, digest)
            except (MeshError, KeyError, TypeError, ValueError) as exc:
                self.ignored += 1
                log.warning("ignored the commitment entry %.80s: %s", task, exc)
                bad.append(task)
                continue
            if isinstance(entry, OpenCommitment):
                opened.append(entry)
            else:
                answers.extend(entry)
        if bad:
            self._db.executemany("DELETE FROM entries WHERE task = ?", [(t,) for t in bad])
        opened.sort(key=lambda e: e.deadline)
        answers.sort(key=lambda a: a.at)
        for e in opened:
            self._open[e.task_cid] = e.deadline
        for a in answers:
            self._answered_bytes -= self._answered.pop(a.task_cid, 0)
            size = len(a.signed) + len(a.output)
            self._answered[a.task_cid] = self._answered.get(a.task_cid, 0) + size
            self._answered_bytes += size
        return opened, answers

    @_locked
    def answer(self, task_cid: CID, kind: str) -> Answer | None:
        """The answer of ``kind`` given for ``task_cid``, if it is still kept."""
        if task_cid not in self._answered:
            return None
        row = self._db.execute(
            "SELECT task, body, digest FROM entries WHERE task = ? AND answered = 1",
            (str(task_cid),),
        ).fetchone()
        if row is None:
            return None
        try:
            entry = self._read(*row)
        except (MeshError, KeyError, TypeError, ValueError) as exc:
            log.warning("ignored the commitment entry %s: %s", task_cid, exc)
            return None
        assert isinstance(entry, list)
        return next((a for a in entry if a.kind == kind), None)

    @staticmethod
    def _read(task: Any, body: Any, digest: Any) -> OpenCommitment | list[Answer]:
        if not isinstance(body, bytes) or hashlib.sha256(body).digest() != digest:
            raise StoreError("its contents do not match their hash (damaged or altered)")
        value = encoding.decode(body, max_bytes=len(body))
        task_cid = value["task"]
        if not isinstance(task_cid, CID) or str(task_cid) != task:
            raise SchemaError("the entry does not belong to the task it is filed under")
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
    @_locked
    def committed(self, entry: OpenCommitment, now_ms: int) -> None:
        """Keep ``entry`` (replacing whatever this task had): called before the commitment
        it opens leaves the agent."""
        value = {
            "task": entry.task_cid,
            "role": entry.role,
            "output": entry.output,
            "summary": entry.summary.encode(),
            "exit_code": entry.exit_code,
            "deadline": entry.deadline,
            "validator": entry.validator,
            "judging": _result_ipld(entry.judging),
        }
        stale = self._stale(now_ms)
        body = encoding.encode(value)
        self._write(entry.task_cid, body, answered=False, deadline=entry.deadline, drop=stale)
        self._answered_bytes -= self._answered.pop(entry.task_cid, 0)
        self._open.pop(entry.task_cid, None)
        self._open[entry.task_cid] = entry.deadline

    @_locked
    def answered(self, answers: list[Answer]) -> None:
        """The task's answers given so far (its reveal, or its verdicts): they replace its
        open commitment, which is spent."""
        task_cid = answers[0].task_cid
        value = {
            "task": task_cid,
            "answers": [
                {"kind": a.kind, "signed": a.signed, "output": a.output, "at": a.at}
                for a in answers
            ],
        }
        self._answered_bytes -= self._answered.pop(task_cid, 0)
        body = encoding.encode(value)
        size = len(body)
        self._answered[task_cid] = size
        self._answered_bytes += size
        drop = []
        # past the bound by a batch, back to it: one delete for many answers, not one each
        over = len(self._answered) > ANSWERED_KEPT + PRUNE_BATCH
        while len(self._answered) > 1 and (
            (over and len(self._answered) > ANSWERED_KEPT)
            or self._answered_bytes > ANSWERED_BYTES_KEPT
        ):
            old, old_size = self._answered.popitem(last=False)
            self._answered_bytes -= old_size
            drop.append(old)
        self._write(task_cid, body, answered=True, deadline=answers[0].at, drop=drop)
        self._open.pop(task_cid, None)

    @_locked
    def forget(self, task_cid: CID) -> None:
        if self._open.pop(task_cid, None) is not None or task_cid in self._answered:
            self._answered_bytes -= self._answered.pop(task_cid, 0)
            try:
                self._db.execute("DELETE FROM entries WHERE task = ?", (str(task_cid),))
            except sqlite3.Error as exc:  # left behind: dropped by the bounds later
                log.warning("could not remove the entry for %s: %s", task_cid, exc)

    def __len__(self) -> int:
        return len(self._open) + len(self._answered)

    def _stale(self, now_ms: int) -> list[CID]:
        """Open entries to drop now: past the count bound (oldest first, logged) or long past
        their task's deadline (removed from the index here, from the database by the write)."""
        drop: list[CID] = []
        while len(self._open) >= OPEN_KEPT:
            old, _ = self._open.popitem(last=False)
            log.warning("dropped the commitment for %s: over %d open commitments", old, OPEN_KEPT)
            drop.append(old)
        # entries come in roughly deadline order: a look at the first few keeps a write O(1)
        # and drains stale ones; a full look now and then catches one stuck behind
        self._writes += 1
        look = len(self._open) if self._writes % FULL_LOOK_EVERY == 0 else 4
        for task_cid, deadline in list(islice(self._open.items(), look)):
            if deadline + STALE_AFTER_MS < now_ms:
                del self._open[task_cid]
                drop.append(task_cid)
        return drop

    def _write(
        self, task_cid: CID, body: bytes, *, answered: bool, deadline: int, drop: list[CID]
    ) -> None:
        db = self._db
        row = (str(task_cid), int(answered), deadline, body, hashlib.sha256(body).digest())
        try:
            if not drop:  # one statement: atomic on its own, and one call instead of three
                db.execute("INSERT OR REPLACE INTO entries VALUES (?, ?, ?, ?, ?)", row)
                return
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute("INSERT OR REPLACE INTO entries VALUES (?, ?, ?, ?, ?)", row)
                db.executemany("DELETE FROM entries WHERE task = ?", [(str(c),) for c in drop])
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:  # disk full, read-only, removed: nothing was written
            raise StoreError(f"cannot keep the entry for {task_cid} in {self.path}: {exc}") from exc
