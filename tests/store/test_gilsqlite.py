"""The ledger's SQLite connection that keeps the GIL: what sqlite3 does, without letting go.

Each test runs the same statements through ``gilsqlite.Connection`` and, where it compares,
through ``sqlite3`` on the same file: same rows, same types, same exception classes.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest

from meshbench.store import gilsqlite
from meshbench.testing.netmesh import wait_until

pytestmark = pytest.mark.skipif(
    gilsqlite._library() is None, reason="sqlite3 is linked statically: no library to share"
)


def _open(path: Path) -> gilsqlite.Connection:
    db = gilsqlite.Connection(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    return db


def test_values_of_every_type_read_back_as_sqlite3_reads_them(tmp_path: Path) -> None:
    path = tmp_path / "t.sqlite"
    rows = [
        (1, "text é", b"\x00blob\xff", 1.5, None),
        (2**63 - 1, "", b"", -0.25, None),
        (-(2**63), "x" * 10_000, bytes(range(256)) * 40, 1e300, None),
    ]
    with _open(path) as db:
        db.executescript("CREATE TABLE t (i INTEGER, s TEXT, b BLOB, f REAL, n);")
        db.executemany("INSERT INTO t VALUES (?, ?, ?, ?, ?)", rows)
        got = db.execute("SELECT i, s, b, f, n FROM t ORDER BY rowid").fetchall()
        db.execute("INSERT INTO t VALUES (?, ?, ?, ?, ?)", (True, "t", bytearray(b"ba"), 0.0, None))
        assert db.execute("SELECT i, b FROM t WHERE s = 't'").fetchone() == (1, b"ba")
    assert got == rows
    with sqlite3.connect(path) as plain:
        assert (
            plain.execute("SELECT i, s, b, f, n FROM t ORDER BY rowid LIMIT 3").fetchall() == rows
        )


def test_errors_are_sqlite3s_own_classes_and_change_nothing(tmp_path: Path) -> None:
    with _open(tmp_path / "t.sqlite") as db:
        db.executescript("CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER NOT NULL);")
        db.execute("INSERT INTO t VALUES (?, ?)", ("a", 1))
        with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
            db.execute("INSERT INTO t VALUES (?, ?)", ("a", 2))
        with pytest.raises(sqlite3.IntegrityError, match="NOT NULL"):
            db.executemany("INSERT INTO t VALUES (?, ?)", [("b", 2), ("c", None)])
        assert db.execute("SELECT k FROM t ORDER BY k").fetchall() == [("a",), ("b",)]  # autocommit
        with pytest.raises(sqlite3.OperationalError, match="no such table"):
            db.execute("SELECT * FROM nowhere")
        with pytest.raises(sqlite3.OperationalError, match="syntax"):
            db.executescript("CREATE TABL oops (x)")
        with pytest.raises(sqlite3.ProgrammingError, match="one statement"):
            db.execute("SELECT 1; SELECT 2")
        with pytest.raises(sqlite3.ProgrammingError, match="Incorrect number of bindings"):
            db.execute("SELECT ?", (1, 2))
        with pytest.raises(sqlite3.ProgrammingError, match="not supported"):
            db.execute("SELECT ?", (object(),))
        with pytest.raises(OverflowError):
            db.execute("SELECT ?", (2**63,))
        db.execute("BEGIN IMMEDIATE")
        assert db.in_transaction
        db.execute("INSERT INTO t VALUES ('z', 9)")
        db.execute("ROLLBACK")
        assert not db.in_transaction
        assert db.execute("SELECT COUNT(*) FROM t").fetchone() == (2,)
        assert db.execute("SELECT 1 WHERE 0").fetchone() is None
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        db.execute("SELECT 1")


def test_a_long_read_is_lazy_and_interleaves_with_other_statements(tmp_path: Path) -> None:
    with _open(tmp_path / "t.sqlite") as db:
        db.executescript("CREATE TABLE t (n INTEGER);")
        db.executemany("INSERT INTO t VALUES (?)", [(n,) for n in range(5000)])
        rows = db.execute("SELECT n FROM t ORDER BY n")
        first = [next(rows) for _ in range(3)]
        again = db.execute("SELECT n FROM t ORDER BY n").fetchone()  # same SQL, while open
        assert first == [(0,), (1,), (2,)] and again == (0,)
        assert sum(1 for _ in rows) == 4997
        unread = db.execute("SELECT n FROM t")
    # closed with rows unread: its statement went with it, and so did the file
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        unread.fetchone()
    fds = Path("/proc/self/fd")
    if fds.exists():
        held = {str(p.resolve()) for p in fds.iterdir() if p.exists()}
        assert str((tmp_path / "t.sqlite").resolve()) not in held


def test_only_the_thread_that_opened_it_may_use_it(tmp_path: Path) -> None:
    with _open(tmp_path / "t.sqlite") as db:
        errors: list[BaseException] = []

        def use() -> None:
            try:
                db.execute("SELECT 1")
            except BaseException as exc:
                errors.append(exc)

        t = threading.Thread(target=use)
        t.start()
        t.join()
        assert len(errors) == 1 and isinstance(errors[0], sqlite3.ProgrammingError)


def test_a_lock_held_elsewhere_is_waited_for_with_the_gil_free(tmp_path: Path) -> None:
    """Another connection holds the write lock for a while: BEGIN IMMEDIATE waits (sleeping,
    so this process's other threads run meanwhile) and goes on once it is free; past the
    timeout it is 'database is locked', as sqlite3 says."""
    path = tmp_path / "t.sqlite"
    with _open(path) as db:
        db.executescript("CREATE TABLE t (n INTEGER);")
        holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        holder.execute("BEGIN IMMEDIATE")
        ticks = [0]
        stop = threading.Event()

        def tick() -> None:
            while not stop.is_set():
                ticks[0] += 1
                time.sleep(0.001)

        ticker = threading.Thread(target=tick)
        ticker.start()
        releaser = threading.Timer(0.3, holder.execute, ("COMMIT",))
        releaser.start()
        try:
            before = ticks[0]
            db.execute("BEGIN IMMEDIATE")  # waits ~0.3 s for the holder
            assert ticks[0] - before > 20  # the ticker ran while it waited
            db.execute("INSERT INTO t VALUES (1)")
            db.execute("COMMIT")
        finally:
            stop.set()
            ticker.join()
            releaser.join()
        holder.execute("BEGIN IMMEDIATE")  # a script waits too (SQLite's own busy handler)
        releaser = threading.Timer(0.2, holder.execute, ("COMMIT",))
        releaser.start()
        db.executescript("CREATE TABLE u (n INTEGER);")
        releaser.join()
        holder.execute("BEGIN IMMEDIATE")
        db.timeout = 0.1
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            db.execute("BEGIN IMMEDIATE")
        holder.execute("ROLLBACK")
        holder.close()
        assert db.execute("SELECT COUNT(*) FROM t").fetchone() == (1,)


def test_the_wal_is_checkpointed_after_commits_and_stays_bounded(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setattr(gilsqlite, "CHECKPOINT_PAGES", 20)
    path = tmp_path / "t.sqlite"
    wal = Path(str(path) + "-wal")
    with _open(path) as db:
        db.executescript("CREATE TABLE t (b BLOB);")
        sizes = []
        for _ in range(200):
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT INTO t VALUES (?)", (bytes(8192),))
            db.execute("COMMIT")
            sizes.append(wal.stat().st_size)
            if len(sizes) % 20 == 0:  # let the checkpoints' thread keep up (it runs apart)
                c = db._checkpointer
                assert c is not None
                wait_until(lambda c=c: c.done == c.asked, 10, "the checkpoints asked for")
        # a checkpoint lets the WAL be written over from its start: it stops growing (never
        # checkpointed, it would hold every commit: 200 of 3 pages and more)
        assert max(sizes) < 200 * 4096 * 3 / 3, max(sizes)
        assert db._checkpointer is not None and db._checkpointer.done >= 5
        assert db._checkpointer._thread.is_alive()
        checkpoints = db._checkpointer
    assert not checkpoints._thread.is_alive()  # close() ended it
    with sqlite3.connect(path) as plain:
        assert plain.execute("SELECT COUNT(*) FROM t").fetchone() == (200,)


def test_trace_callback_sees_every_statement(tmp_path: Path) -> None:
    with _open(tmp_path / "t.sqlite") as db:
        db.executescript("CREATE TABLE t (n INTEGER);")
        seen: list[str] = []
        db.set_trace_callback(seen.append)
        db.execute("SELECT COUNT(*) FROM t").fetchone()
        db.executemany("INSERT INTO t VALUES (?)", [(1,), (2,)])
        db.set_trace_callback(None)
        db.execute("SELECT 1").fetchone()
    assert seen == ["SELECT COUNT(*) FROM t"] + ["INSERT INTO t VALUES (?)"] * 2


def test_connect_falls_back_to_sqlite3_where_a_commit_syncs(tmp_path: Path, monkeypatch) -> None:
    """Under synchronous=FULL every COMMIT syncs the disk (it must not hold the GIL), and a
    Python without a shared libsqlite3 has no library to share: sqlite3 then."""
    assert isinstance(gilsqlite.connect(tmp_path / "a.sqlite"), gilsqlite.Connection)
    full = gilsqlite.connect(tmp_path / "b.sqlite", synchronous="FULL")
    assert isinstance(full, sqlite3.Connection) and full.isolation_level is None
    monkeypatch.setattr(gilsqlite, "_library", lambda: None)
    assert isinstance(gilsqlite.connect(tmp_path / "c.sqlite"), sqlite3.Connection)


def test_statements_keep_the_gil_where_sqlite3_lets_go(tmp_path: Path) -> None:
    """The point of it: a thread that wants the GIL does not run during a statement (with
    Python's sqlite3 it runs during nearly every one, and the caller then waits up to the
    switch interval for the GIL to come back). The ledger opens this connection."""
    from meshbench.store.ledger import Ledger

    with Ledger(tmp_path / "l.sqlite", authority="did:key:z6Mktest") as led:
        assert isinstance(led._db, gilsqlite.Connection)
    counter = [0]
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            counter[0] += 1

    def ran_during(db: gilsqlite.Connection | sqlite3.Connection) -> int:
        db.execute("CREATE TABLE IF NOT EXISTS t (n INTEGER)")
        hits = 0
        for n in range(50):
            before = counter[0]
            db.execute("INSERT INTO t VALUES (?)", (n,))
            hits += counter[0] != before
        return hits

    spinner = threading.Thread(target=spin)
    spinner.start()
    try:
        with _open(tmp_path / "a.sqlite") as ours:
            kept = ran_during(ours)
        plain = sqlite3.connect(tmp_path / "b.sqlite", isolation_level=None)
        let_go = ran_during(plain)
        plain.close()
    finally:
        stop.set()
        spinner.join()
    if let_go < 25:  # the control: sqlite3 lets the spinner in, given a free core
        pytest.skip(f"the spinner got no CPU ({let_go} of 50): nothing to compare")
    assert kept <= 10, kept  # only where the switch interval ran out mid-statement
