"""A SQLite connection whose calls keep the GIL: the ledger's writes off the GIL's queue.

Python's :mod:`sqlite3` lets go of the GIL around every ``sqlite3_step`` and
``sqlite3_prepare``, so that other threads run while SQLite works. For the authority's driver
that is the wrong trade: its statements take microseconds each (an insert of a 500-byte event,
a commit of a few WAL pages), and each time it lets go, a busy thread of the node's process
(the intake's checks, Dask's event loop, the publisher) takes the GIL and the driver waits its
turn, and then its turn on the CPU. Measured under ``bench mesh`` (48 tasks of ~10 ms, four
worker processes on two cores): the ledger's ~21 statements a task (~72 steps: every
``executemany`` row is one) cost the driver 1.5 ms of CPU and 8-10 ms of wall time. With a
Python thread spinning beside it, an insert of 6 rows took 30 us alone and 15 ms.

:class:`Connection` calls the same ``libsqlite3`` that :mod:`sqlite3` loaded (found in the
process's memory map, opened with :class:`ctypes.PyDLL`, which holds the GIL over each
call), and offers the part of :class:`sqlite3.Connection` that the ledger uses: ``execute``
(rows read lazily), ``executemany``, ``executescript``, ``in_transaction``,
``set_trace_callback`` and ``close``, raising :mod:`sqlite3`'s own exception classes. Two
things would hold the GIL for long, and do not here:

* **waiting for a lock** another connection holds: SQLite's own busy handler would sleep
  inside the call; here a busy statement is retried after a :func:`time.sleep` (which lets go
  of the GIL) until ``timeout`` seconds have passed;
* **WAL checkpoints** (copying the WAL into the database and syncing both, every
  :data:`CHECKPOINT_PAGES` pages): SQLite runs them inside the COMMIT that filled the WAL;
  here a WAL hook notes the WAL's size and the checkpoint runs after that COMMIT, through a
  :mod:`sqlite3` connection of its own (so the GIL is free while it writes and syncs).

:func:`connect` returns one when the library can be found (a :mod:`sqlite3` linked
statically into Python has none to share: a second copy of SQLite in one process would break
its POSIX locks) and ``synchronous`` is ``OFF`` or ``NORMAL`` (under ``FULL`` every COMMIT
syncs the disk, which must not hold the GIL); otherwise a plain :mod:`sqlite3` connection.
"""

from __future__ import annotations

import contextlib
import ctypes
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Final

__all__ = ["CHECKPOINT_PAGES", "Connection", "connect", "library_path"]

#: WAL pages after which a commit is followed by a checkpoint (SQLite's own default).
CHECKPOINT_PAGES: Final = 1000
#: Statements kept prepared, by SQL text (Python's sqlite3 keeps 128 too).
STATEMENTS_KEPT: Final = 128

_OK, _BUSY, _LOCKED, _ROW, _DONE = 0, 5, 6, 100, 101
_INTEGER, _FLOAT, _TEXT, _BLOB = 1, 2, 3, 4  # and 5, NULL
_OPEN_READWRITE, _OPEN_CREATE = 0x2, 0x4
_TRANSIENT: Final = ctypes.c_void_p(-1)  # SQLite copies the bytes bound
_ERRORS: Final[dict[int, type[sqlite3.Error]]] = {
    19: sqlite3.IntegrityError,  # CONSTRAINT
    11: sqlite3.DatabaseError,  # CORRUPT
    26: sqlite3.DatabaseError,  # NOTADB
    21: sqlite3.ProgrammingError,  # MISUSE
    25: sqlite3.ProgrammingError,  # RANGE (a parameter index)
    18: sqlite3.DataError,  # TOOBIG
}
_WAL_HOOK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int
)

_lib: Any = None
_lib_lock = threading.Lock()


def library_path() -> str | None:
    """The ``libsqlite3`` shared object that :mod:`sqlite3` uses, from this process's memory
    map (Linux); None if there is none to share (linked statically, or no ``/proc``)."""
    import _sqlite3  # noqa: F401  (loaded: its library is mapped)

    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return None
    for line in maps.splitlines():
        path = line.split(None, 5)[-1] if line.count(" ") >= 5 else ""
        if "/libsqlite3" in path and ".so" in path:
            return path.strip()
    return None


def _library() -> Any:
    global _lib
    with _lib_lock:
        if _lib is None:
            path = library_path()
            if path is None:
                _lib = False
            else:
                lib = ctypes.PyDLL(path)
                _declare(lib)
                same = lib.sqlite3_libversion().decode() == sqlite3.sqlite_version
                _lib = lib if same else False  # False: not the copy sqlite3 uses after all
        return _lib or None


def _declare(lib: Any) -> None:
    p, i, i64, s, d = (
        ctypes.c_void_p,
        ctypes.c_int,
        ctypes.c_int64,
        ctypes.c_char_p,
        ctypes.c_double,
    )
    for name, res, args in (
        ("sqlite3_libversion", s, []),
        ("sqlite3_open_v2", i, [s, ctypes.POINTER(p), i, s]),
        ("sqlite3_close_v2", i, [p]),
        ("sqlite3_errmsg", s, [p]),
        ("sqlite3_errstr", s, [i]),
        ("sqlite3_prepare_v2", i, [p, p, i, ctypes.POINTER(p), ctypes.POINTER(p)]),
        ("sqlite3_finalize", i, [p]),
        ("sqlite3_reset", i, [p]),
        ("sqlite3_step", i, [p]),
        ("sqlite3_bind_parameter_count", i, [p]),
        ("sqlite3_bind_int64", i, [p, i, i64]),
        ("sqlite3_bind_double", i, [p, i, d]),
        ("sqlite3_bind_text", i, [p, i, s, i, p]),
        ("sqlite3_bind_blob", i, [p, i, s, i, p]),
        ("sqlite3_bind_null", i, [p, i]),
        ("sqlite3_column_count", i, [p]),
        ("sqlite3_column_type", i, [p, i]),
        ("sqlite3_column_int64", i64, [p, i]),
        ("sqlite3_column_double", d, [p, i]),
        ("sqlite3_column_blob", p, [p, i]),
        ("sqlite3_column_text", p, [p, i]),
        ("sqlite3_column_bytes", i, [p, i]),
        ("sqlite3_get_autocommit", i, [p]),
        ("sqlite3_wal_hook", p, [p, _WAL_HOOK, p]),
    ):
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = res, args


def connect(path: str | Path, *, synchronous: str = "NORMAL", timeout: float = 5.0) -> Any:
    """The ledger's connection to ``path``: a :class:`Connection` where one can be made (see
    the module's text), else ``sqlite3.connect(path, isolation_level=None)``."""
    if synchronous.upper() in ("OFF", "NORMAL") and _library() is not None:
        return Connection(path, timeout=timeout)
    return sqlite3.connect(path, isolation_level=None, timeout=timeout)


class Connection:
    """Autocommit mode (as ``isolation_level=None``): transactions are the caller's
    ``BEGIN``/``COMMIT``. Used from the thread that made it, as :mod:`sqlite3` requires."""

    def __init__(self, path: str | Path, *, timeout: float = 5.0) -> None:
        lib = _library()
        if lib is None:
            raise NotImplementedError("no shared libsqlite3 to call (see gilsqlite)")
        self._lib = lib
        self.path = str(path)
        self.timeout = timeout
        self._thread = threading.get_ident()
        self._trace: Callable[[str], object] | None = None
        self._free: dict[str, list[int]] = {}  # prepared statements not in use, by SQL
        self._busy: set[int] = set()  # those in use (rows not all read yet)
        self._wal_pages = 0
        self._checkpointer: _Checkpointer | None = None
        handle = ctypes.c_void_p()
        rc = lib.sqlite3_open_v2(
            self.path.encode(), ctypes.byref(handle), _OPEN_READWRITE | _OPEN_CREATE, None
        )
        self._db: int | None = handle.value
        if rc != _OK:
            msg = lib.sqlite3_errstr(rc).decode()
            if self._db:
                lib.sqlite3_close_v2(self._db)
            self._db = None
            raise sqlite3.OperationalError(f"unable to open database file {self.path}: {msg}")
        self._hook = _WAL_HOOK(self._on_wal)  # kept: SQLite holds only its address
        lib.sqlite3_wal_hook(self._db, self._hook, None)  # replaces the auto-checkpoint

    # --- the sqlite3.Connection subset ------------------------------------------------------
    @property
    def in_transaction(self) -> bool:
        return not self._lib.sqlite3_get_autocommit(self._handle())

    def set_trace_callback(self, fn: Callable[[str], object] | None) -> None:
        """``fn(sql)`` before each statement runs (each row of ``executemany`` too)."""
        self._handle()
        self._trace = fn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Rows:
        stmt = self._statement(sql)
        try:
            self._bind(stmt, params, self._lib.sqlite3_bind_parameter_count(stmt))
            rows = Rows(self, sql, stmt)
        except BaseException:
            self._release(sql, stmt)
            raise
        rows._step()
        return rows

    def executemany(self, sql: str, seq: Iterable[Sequence[Any]]) -> None:
        stmt = self._statement(sql)
        try:
            want = self._lib.sqlite3_bind_parameter_count(stmt)
            for params in seq:
                self._bind(stmt, params, want)
                if self._trace is not None:
                    self._trace(sql)
                if self._step(stmt) == _ROW:
                    raise sqlite3.ProgrammingError(
                        "executemany() can only run statements without rows"
                    )
                self._lib.sqlite3_reset(stmt)
        finally:
            self._release(sql, stmt)
        self._after_commit()

    def executescript(self, script: str) -> None:
        """Each statement of ``script`` in turn, each waited for alone if the database is
        busy (a statement is atomic; a script is not retried from its start)."""
        self._handle()
        if self._trace is not None:
            self._trace(script)
        raw = script.encode()
        buf = ctypes.create_string_buffer(raw)
        at, end = ctypes.addressof(buf), ctypes.addressof(buf) + len(raw)
        while at < end:
            stmt, at = self._prepare(at, end - at)
            if stmt is None:  # only blanks or comments were left
                break
            try:
                while self._step(stmt) == _ROW:
                    pass
            finally:
                self._lib.sqlite3_finalize(stmt)
        self._after_commit()

    def close(self) -> None:
        if self._db is None:
            return
        self._handle()
        for stmt in [s for stmts in self._free.values() for s in stmts] + list(self._busy):
            self._lib.sqlite3_finalize(stmt)  # rows not read to their end are gone with them
        self._free.clear()
        self._busy.clear()
        self._lib.sqlite3_wal_hook(self._db, _WAL_HOOK(0), None)
        self._lib.sqlite3_close_v2(self._db)  # a statement still open is finalised with it
        self._db = None
        if self._checkpointer is not None:
            self._checkpointer.stop()
            self._checkpointer = None

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- internals --------------------------------------------------------------------------
    def _handle(self) -> int:
        if self._db is None:
            raise sqlite3.ProgrammingError("Cannot operate on a closed database.")
        if threading.get_ident() != self._thread:
            raise sqlite3.ProgrammingError(
                "SQLite objects created in a thread can only be used in that same thread."
            )
        return self._db

    def _statement(self, sql: str) -> int:
        self._handle()
        free = self._free.get(sql)
        if free:
            stmt = free.pop()
            self._busy.add(stmt)
            return stmt
        raw = sql.encode()
        buf = ctypes.create_string_buffer(raw)
        start = ctypes.addressof(buf)
        prepared, tail = self._prepare(start, len(raw))
        if prepared is None:
            raise sqlite3.ProgrammingError("the SQL holds no statement")
        if raw[tail - start :].strip(b" \t\r\n;"):
            self._lib.sqlite3_finalize(prepared)
            raise sqlite3.ProgrammingError("You can only execute one statement at a time.")
        self._busy.add(prepared)
        return prepared

    def _prepare(self, at: int, size: int) -> tuple[int | None, int]:
        """The statement that starts at address ``at`` (None if only blanks are left) and
        the address after it; a busy schema is waited for as a busy step is."""
        db = self._handle()
        stmt, tail = ctypes.c_void_p(), ctypes.c_void_p()

        def prepare() -> int:
            return int(
                self._lib.sqlite3_prepare_v2(db, at, size, ctypes.byref(stmt), ctypes.byref(tail))
            )

        rc = self._while_busy(prepare, prepare())
        if rc != _OK:
            raise self._error(rc)
        return stmt.value, int(tail.value or at + size)

    def _release(self, sql: str, stmt: int) -> None:
        """Back among the free statements, reset (its read, if any, ends here)."""
        if stmt not in self._busy:  # finalised by close()
            return
        self._busy.discard(stmt)
        lib = self._lib
        lib.sqlite3_reset(stmt)
        free = self._free.get(sql)
        if free is None and len(self._free) < STATEMENTS_KEPT:
            free = self._free[sql] = []
        if free is not None and len(free) < 4:
            free.append(stmt)  # at most 4 of one SQL, and STATEMENTS_KEPT SQL texts
        else:
            lib.sqlite3_finalize(stmt)

    def _bind(self, stmt: int, params: Sequence[Any], want: int) -> None:
        """``params`` bound to ``stmt``, which has ``want`` parameters."""
        lib = self._lib
        if len(params) != want:
            raise sqlite3.ProgrammingError(
                f"Incorrect number of bindings supplied. The current statement uses {want}, "
                f"and there are {len(params)} supplied."
            )
        for i, value in enumerate(params, 1):
            t = type(value)
            if t is str:
                raw = value.encode()
                rc = lib.sqlite3_bind_text(stmt, i, raw, len(raw), _TRANSIENT)
            elif t is int or t is bool:
                if not -(2**63) <= value < 2**63:
                    raise OverflowError("Python int too large to convert to SQLite INTEGER")
                rc = lib.sqlite3_bind_int64(stmt, i, value)
            elif value is None:
                rc = lib.sqlite3_bind_null(stmt, i)
            elif t is bytes or t is bytearray or t is memoryview:
                raw = bytes(value)
                rc = lib.sqlite3_bind_blob(stmt, i, raw, len(raw), _TRANSIENT)
            elif t is float:
                rc = lib.sqlite3_bind_double(stmt, i, value)
            else:
                raise sqlite3.ProgrammingError(
                    f"Error binding parameter {i}: type '{t.__name__}' is not supported"
                )
            if rc != _OK:
                raise self._error(rc)

    def _step(self, stmt: int, *, first: bool = True) -> int:
        """One step; a busy database is waited for here, the GIL free while it sleeps (on a
        statement's first step only: retrying is a reset, which would read rows again)."""
        rc = self._try_step(stmt)
        if first and (rc & 0xFF) in (_BUSY, _LOCKED):
            rc = self._while_busy(lambda: self._try_step(stmt), rc)
        if rc in (_ROW, _DONE):
            return rc
        err = self._error(rc)
        self._lib.sqlite3_reset(stmt)
        raise err

    def _try_step(self, stmt: int) -> int:
        rc = int(self._lib.sqlite3_step(stmt))
        if (rc & 0xFF) in (_BUSY, _LOCKED):
            self._lib.sqlite3_reset(stmt)  # ready to be tried again
        return rc

    def _while_busy(self, call: Callable[[], int], rc: int) -> int:
        """``call()`` again while ``rc``, its first result, says the database is busy,
        sleeping between tries (the GIL free) until ``timeout`` seconds have passed; its last
        result. Only a busy call gets here: the common path makes no closure, reads no clock."""
        deadline = time.monotonic() + self.timeout
        pause = 0.0005
        while (rc & 0xFF) in (_BUSY, _LOCKED) and time.monotonic() < deadline:
            time.sleep(pause)
            pause = min(pause * 2, 0.02)
            rc = call()
        return rc

    def _error(self, rc: int) -> sqlite3.Error:
        msg = self._lib.sqlite3_errmsg(self._db).decode(errors="replace") if self._db else ""
        primary = rc & 0xFF
        cls = _ERRORS.get(primary, sqlite3.OperationalError)
        return cls(msg or self._lib.sqlite3_errstr(rc).decode())

    def _on_wal(self, _arg: int | None, _db: int | None, _name: bytes | None, pages: int) -> int:
        self._wal_pages = pages  # inside the COMMIT's step: only note it
        return _OK

    def _after_commit(self) -> None:
        """Once the WAL holds CHECKPOINT_PAGES pages, a checkpoint: on a thread of its own with
        a sqlite3 connection (it copies and syncs with the GIL free, and the committer does
        not wait for the disk). PASSIVE: it copies what no reader still needs and never waits
        for one; the next commit that finds the WAL full asks again."""
        if self._wal_pages < CHECKPOINT_PAGES or self.in_transaction:
            return
        self._wal_pages = 0
        if self._checkpointer is None:
            self._checkpointer = _Checkpointer(self.path)
        self._checkpointer.ask()


class _Checkpointer:
    """A thread that checkpoints a database's WAL when asked (asks meanwhile count once)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.asked = 0  # asks so far
        self.done = 0  # the asks answered by a checkpoint run since (tests wait on it)
        self._wanted = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(
            target=self._run, name="meshbench-ledger-checkpoint", daemon=True
        )
        self._thread.start()

    def ask(self) -> None:
        self.asked += 1
        self._wanted.set()

    def stop(self) -> None:
        """Run a checkpoint still asked for, then end (joined)."""
        self._stopping = True
        self._wanted.set()
        self._thread.join(30)

    def _run(self) -> None:
        db = sqlite3.connect(self.path, isolation_level=None, timeout=5.0)
        try:
            while True:
                self._wanted.wait()
                if self._stopping and not self._wanted.is_set():
                    return
                self._wanted.clear()
                upto = self.asked
                with contextlib.suppress(sqlite3.Error):  # busy: the next full WAL asks again
                    db.execute("PRAGMA wal_checkpoint(PASSIVE)")
                self.done = upto
                if self._stopping:
                    return
        finally:
            db.close()


class Rows:
    """The rows of one statement, read as they are asked for (``fetchone``, ``fetchall``,
    iteration); its statement goes back to the connection once they are all read or this
    object is gone."""

    def __init__(self, conn: Connection, sql: str, stmt: int) -> None:
        self._conn = conn
        self._sql = sql
        self._stmt: int | None = stmt
        self._row = False

    def _step(self) -> None:
        conn, stmt = self._conn, self._stmt
        assert stmt is not None
        if conn._trace is not None:
            conn._trace(self._sql)
        try:
            self._row = conn._step(stmt) == _ROW
        except BaseException:
            self._done()
            raise
        if not self._row:
            self._done()
            conn._after_commit()

    def _done(self) -> None:
        stmt, self._stmt = self._stmt, None
        if stmt is not None:
            self._conn._release(self._sql, stmt)

    def _take(self) -> tuple[Any, ...]:
        lib, stmt = self._conn._lib, self._stmt
        out: list[Any] = []
        for i in range(lib.sqlite3_column_count(stmt)):
            t = lib.sqlite3_column_type(stmt, i)
            if t == _INTEGER:
                out.append(lib.sqlite3_column_int64(stmt, i))
            elif t == _TEXT:
                n = lib.sqlite3_column_bytes(stmt, i)
                out.append(ctypes.string_at(lib.sqlite3_column_text(stmt, i), n).decode())
            elif t == _BLOB:
                n = lib.sqlite3_column_bytes(stmt, i)
                out.append(ctypes.string_at(lib.sqlite3_column_blob(stmt, i), n) if n else b"")
            elif t == _FLOAT:
                out.append(lib.sqlite3_column_double(stmt, i))
            else:
                out.append(None)
        return tuple(out)

    def fetchone(self) -> tuple[Any, ...] | None:
        if not self._row or self._stmt is None:
            return None
        self._conn._handle()  # not after close(), nor from another thread
        row = self._take()
        try:
            self._row = self._conn._step(self._stmt, first=False) == _ROW
        except BaseException:
            self._done()
            raise
        if not self._row:
            self._done()
        return row

    def fetchall(self) -> list[tuple[Any, ...]]:
        return list(self)

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        return self

    def __next__(self) -> tuple[Any, ...]:
        row = self.fetchone()
        if row is None:
            raise StopIteration
        return row

    def close(self) -> None:
        self._done()

    def __del__(self) -> None:
        if self._stmt is not None and self._conn._db is not None:
            with contextlib.suppress(Exception):  # a connection gone with its thread
                self._done()
