"""The ledger: the event DAG in SQLite (WAL) and its derived tables, folded by ``Books``.

Schema:

* ``events(seq, cid, type, author, timestamp, data)``: every signed event, in the order the
  ledger authority appended it, as its exact DAG-CBOR bytes (so its CID and signature can be
  checked at any time);
* ``parents(child, parent)``: the DAG links; a parent must already be in the ledger;
* ``derived(tbl, key, value)``: the tables of :class:`~meshbench.core.books.Books`
  (accounts, escrows, stakes, reputation, tasks, policies, ... and whatever tables the
  fold's rules write), values as canonical JSON;
* ``stimuli(n, after_seq, at, kind, task, ref, data)``: the authority's journal, every
  stimulus its state machine accepted, with the authority's time ``at``, placed after event
  ``after_seq`` (a signed object by the CID of its event, ``ref``; a timer, faucet, ... as
  JSON ``data``). A restart replays it through the protocol's handlers
  (:meth:`Ledger.history`), and a task's story reads it.

One :class:`Books` per ledger: the state machine folds its events into the ledger's books
(they share the object) and :meth:`Ledger.persist` writes what that fold changed, so the
hot path folds each event once. :meth:`Ledger.append` is for events nobody folded yet
(governance, the wallet, imports): it folds them, then persists.

One append is one SQLite transaction holding the events, their links and every derived
row they change, so a crash (even SIGKILL mid-settlement) leaves either the whole
settlement or none of it. :meth:`Ledger.rebuild` drops the derived rows and refolds the
events; :meth:`Ledger.verify` re-checks every CID, signature, link and rule, and
conservation, and compares the refold with the stored tables.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from meshbench.core.audit import SettlementAuditor
from meshbench.core.books import Books, cid_key
from meshbench.core.encoding import parse_cid
from meshbench.core.errors import LedgerError, MeshError
from meshbench.core.model import Model, Signed, decode_object
from meshbench.core.protocol import UNSIGNED_STIMULI, Journaled
from meshbench.core.tables import Changes
from meshbench.core.types import TaskIntent
from meshbench.store import gilsqlite

__all__ = ["Ledger", "LedgerFollower", "LedgerReport", "stored_events"]

Link = tuple[str, str]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS ledger_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    cid TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    author TEXT,
    timestamp INTEGER,
    data BLOB NOT NULL
);
-- an event's DAG links, written with it (each once) and never read to check anything: no
-- key, so a link costs an append, not a random leaf of an index (older ledgers keep their
-- PRIMARY KEY (child, parent); INSERT OR IGNORE writes both)
CREATE TABLE IF NOT EXISTS parents (
    child TEXT NOT NULL,
    parent TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS derived (
    tbl TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (tbl, key)
);
CREATE TABLE IF NOT EXISTS stimuli (
    n INTEGER PRIMARY KEY AUTOINCREMENT,
    after_seq INTEGER NOT NULL,
    at INTEGER NOT NULL,
    kind TEXT NOT NULL,
    task TEXT,
    ref TEXT,
    data TEXT
);
CREATE INDEX IF NOT EXISTS events_type ON events(type);
CREATE INDEX IF NOT EXISTS stimuli_task ON stimuli(task);
"""


@dataclass
class LedgerReport:
    """What ``verify`` or ``rebuild`` found."""

    events: int = 0
    settlements_audited: int = 0
    settlements_unaudited: int = 0
    tokens_minted: int = 0
    tokens_held: int = 0
    tables_equal: bool = True
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and self.tables_equal

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "events": self.events,
            "settlements_audited": self.settlements_audited,
            "settlements_unaudited": self.settlements_unaudited,
            "tokens_minted": self.tokens_minted,
            "tokens_held": self.tokens_held,
            "tables_equal": self.tables_equal,
            "problems": self.problems,
        }


class Ledger:
    """A federation's ledger in one SQLite file. ``authority`` is fixed at creation."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        authority: str | None = None,
        verify_on_append: bool = True,
        synchronous: str = "NORMAL",
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.verify_on_append = verify_on_append
        # the driver's statements keep the GIL (see gilsqlite: each let-go cost it ms)
        self._db = gilsqlite.connect(self.path, synchronous=synchronous)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={synchronous}")  # NORMAL: safe for crashes
        self._db.executescript(_SCHEMA)
        stored = self._meta("authority")
        if stored is None:
            if authority is None:
                raise LedgerError(f"{self.path} is a new ledger: name its authority DID")
            self._db.execute("INSERT INTO ledger_meta VALUES ('authority', ?)", (authority,))
            stored = authority
        elif authority is not None and authority != stored:
            raise LedgerError(f"{self.path} belongs to authority {stored}, not {authority}")
        self.authority = stored
        self._batch_depth = 0
        #: what a batch has appended so far, written in one go when it commits (or before
        #: anything reads the file): see :meth:`batch`
        self._pending = _Pending()
        #: CIDs of events this connection committed lately (events are never removed): a
        #: parent found here needs no lookup; bounded, oldest first out
        self._committed: dict[str, None] = {}
        self._batch_keys: list[str] = []  # the events the open batch wrote so far
        #: the CIDs of the events held (see :meth:`has`), as of ``_data_version``: made by
        #: the first batch (a ledger opened only to be read or verified never scans them)
        self._data_version = self._db.execute("PRAGMA data_version").fetchone()[0]
        self._held: _CidFilter | None = None
        self.books = self._load_books()
        #: Test hook: called inside the transaction, just before COMMIT (crash tests).
        self.before_commit: Callable[[tuple[Model, ...]], None] | None = None

    # --- reading ---
    def _meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM ledger_meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def mark_alive(self, at: int) -> None:
        """Note that the authority was running at ``at`` (its clock, ms): after a crash,
        :meth:`alive_mark` bounds when it went down (see ``AuthorityState.replay``)."""
        self._db.execute("INSERT OR REPLACE INTO ledger_meta VALUES ('alive', ?)", (str(at),))

    def alive_mark(self) -> int | None:
        value = self._meta("alive")
        return None if value is None else int(value)

    def _load_books(self) -> Books:
        books = Books(self.authority)
        books.load(self.stored_tables())
        return books

    def _reload_books(self) -> None:
        """A write failed: the (shared) books go back to what the file holds (with what the
        batch appended before), in place."""
        self.books.load(self.stored_tables())

    def adopt(self, books: Books) -> None:
        """Use ``books`` (a fresh fold of this ledger, e.g. by a restored state machine) as
        the ledger's one books; they must equal the stored tables."""
        differences = _differences(self.stored_tables(), books.tables())
        if differences:
            raise LedgerError(
                "the derived tables differ from the fold of the events (run `meshbench ledger "
                f"rebuild`): {'; '.join(differences[:3])}"
            )
        self.books = books

    def __len__(self) -> int:
        """How many events the ledger holds: a count over the whole table, O(history)."""
        self._flush()
        return int(self._db.execute("SELECT COUNT(*) FROM events").fetchone()[0])

    def __bool__(self) -> bool:
        """An open ledger is true, empty or not. Without this, ``if ledger:`` counted every
        event (``__len__``): the node asked so on each publication (the bonded-workers check)
        and each balance read, and a soak slowed down with its history (10,000 tasks in 390 s
        at the start, 528 s at 50,000)."""
        return True

    def has(self, cid: Any) -> bool:
        """Whether the ledger holds the event ``cid``. Inside a batch (the write lock held,
        and the filter made current with other connections' commits when it began) a CID
        the filter of held CIDs does not know is answered without a query: the node checks
        every event it appends (about 17 a task), and each query let go of the GIL."""
        key = cid if isinstance(cid, str) else cid_key(cid)
        if key in self._pending.cids:
            return True
        if self._batch_depth and self._held is not None and not self._held.may_hold(key):
            return False
        return self._db.execute("SELECT 1 FROM events WHERE cid = ?", (key,)).fetchone() is not None

    def _held_filter(self) -> _CidFilter:
        """A filter of every event CID the file holds now (one scan of the CID column)."""
        count = self._db.execute("SELECT COUNT(*) FROM events").fetchone()[0]
        held = _CidFilter(int(count))
        for (key,) in self._db.execute("SELECT cid FROM events"):
            held.add(key)
        return held

    def get(self, cid: Any) -> Model:
        self._flush()
        key = cid if isinstance(cid, str) else cid_key(cid)
        row = self._db.execute("SELECT data FROM events WHERE cid = ?", (key,)).fetchone()
        if row is None:
            raise LedgerError(f"no event {key} in the ledger")
        return decode_object(row[0], expected_cid=key)

    def iter_events(self, *, check: bool = True) -> Iterator[tuple[int, str, Model]]:
        """(seq, cid, event) in ledger order, each decoded (and checked when ``check``)."""
        self._flush()
        rows = self._db.execute("SELECT seq, cid, data FROM events ORDER BY seq")
        for seq, cid, data in rows:
            obj = decode_object(data, expected_cid=cid if check else None, verify_signature=check)
            yield seq, cid, obj

    def stored_tables(self) -> dict[str, dict[str, Any]]:
        self._flush()
        out: dict[str, dict[str, Any]] = {}
        for tbl, key, value in self._db.execute("SELECT tbl, key, value FROM derived"):
            out.setdefault(tbl, {})[key] = json.loads(value)
        return out

    def stored_row(self, table: str, key: str) -> Any:
        """One row of the derived tables as written (None if absent): what the books held
        when they last changed it, also for a row that has since left memory."""
        self._flush()
        row = self._db.execute(
            "SELECT value FROM derived WHERE tbl = ? AND key = ?", (table, key)
        ).fetchone()
        return None if row is None else json.loads(row[0])

    def balance(self, account: str) -> int:
        return self.books.balance(account)

    # --- appending ---
    def append(self, *events: Model) -> None:
        """Fold ``events`` into the books and write them, atomically, in one transaction.

        Raises (with nothing written and the books unchanged): ``InvalidSignature`` for a
        bad signature, ``LedgerError`` for a duplicate or an unknown parent, and whatever
        the fold refuses (``InsufficientFunds``, ``ProtocolError``, ``LedgerError``).
        """
        if not events:
            return
        rows, links = self._rows(events)  # checked before the fold changes anything
        changes = self.books.apply(*events)  # raises before anything is written
        self._write(events, rows, links, changes)

    def persist(self, *events: Model, changes: Changes) -> None:
        """Write events that the shared books already folded (the state machine's
        ``AppendToLedger``), with the rows that fold changed: no second fold."""
        if events:
            self._write(events, *self._rows(events), changes)

    def journal(self, entries: list[Journaled]) -> None:
        """Record accepted stimuli after the last event (call before persisting the events
        they produced; the node does both inside one :meth:`batch`)."""
        if not entries:
            return
        if self._batch_depth:
            pending = self._pending
            rows = [(pending.next_seq - 1, e.at, *_stimulus_row(e.stimulus)) for e in entries]
            pending.stimuli += rows  # written when the batch commits
            return
        last = self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0]
        rows = [(last, e.at, *_stimulus_row(e.stimulus)) for e in entries]
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany(
                "INSERT INTO stimuli (after_seq, at, kind, task, ref, data) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def history(self) -> Iterator[Journaled | Model]:
        """The journal and the events, merged in ledger order (what a restart replays).

        A journalled signed object is the first event its stimulus produced, so it is read
        from the event stream itself (decoded once, not looked up)."""
        self._flush()
        stimuli = self._db.execute(
            "SELECT after_seq, at, kind, ref, data FROM stimuli ORDER BY n"
        ).fetchall()
        events = self.iter_events(check=False)
        k = 0
        for seq, cid, ev in events:
            while k < len(stimuli) and stimuli[k][0] < seq:
                after, at, kind, ref, data = stimuli[k]
                k += 1
                if ref is None:
                    yield Journaled(at, _stimulus_from(kind, json.loads(data)))
                    continue
                if ref != cid:
                    raise LedgerError(f"journal entry after #{after} names {ref}, not {cid}")
                yield Journaled(at, ev)
            yield ev
        for row in stimuli[k:]:
            yield self._journaled(row)

    def stimuli_ranges(self, task_cid: Any) -> list[tuple[int, int, int, Journaled]]:
        """``(n, after_seq, at, Journaled)`` of every journalled stimulus about one task, in
        order (``n`` is the stimulus id; its events follow event ``after_seq``)."""
        key = task_cid if isinstance(task_cid, str) else cid_key(task_cid)
        self._flush()
        rows = self._db.execute(
            "SELECT n, after_seq, at, kind, ref, data FROM stimuli WHERE task = ? ORDER BY n",
            (key,),
        ).fetchall()
        return [
            (n, after, at, self._journaled((after, at, kind, ref, data)))
            for n, after, at, kind, ref, data in rows
        ]

    def _journaled(self, row: tuple[Any, ...]) -> Journaled:
        _, at, kind, ref, data = row
        if ref is not None:
            return Journaled(at, self.get(ref))
        return Journaled(at, _stimulus_from(kind, json.loads(data)))

    def _rows(
        self, events: tuple[Model, ...]
    ) -> tuple[list[tuple[Any, ...]], list[tuple[str, str]]]:
        rows, links = [], []
        batch: set[str] = set()
        for ev in events:
            if self.verify_on_append and isinstance(ev, Signed):
                ev.verify()
            key = cid_key(ev.cid)
            if key in batch or self.has(key):
                raise LedgerError(f"{type(ev).__name__} {key} is already in the ledger")
            for parent in dict.fromkeys(getattr(ev, "parents", ())):  # each link once
                pkey = cid_key(parent)
                if pkey not in batch and pkey not in self._committed and not self.has(pkey):
                    raise LedgerError(f"{type(ev).__name__} {key} links to unknown parent {pkey}")
                links.append((key, pkey))
            batch.add(key)
            author = ev.signer if isinstance(ev, Signed) else None
            stamp = _timestamp(ev)
            rows.append((key, type(ev).__name__, author, stamp, ev.encode()))
        return rows, links

    def _write(
        self,
        events: tuple[Model, ...],
        rows: list[tuple[Any, ...]],
        links: list[Link],
        changes: Changes,
    ) -> None:
        db = self._db
        try:
            if self._batch_depth:
                self._buffer(events, rows, links, changes)
                return
            db.execute("BEGIN IMMEDIATE")
            db.executemany(
                "INSERT INTO events (cid, type, author, timestamp, data) VALUES (?, ?, ?, ?, ?)",
                rows,
            )
            db.executemany("INSERT OR IGNORE INTO parents VALUES (?, ?)", links)
            self._write_changes(changes)
            if self.before_commit is not None:
                self.before_commit(events)
            db.execute("COMMIT")
            if self._held is not None:  # else the first batch's scan finds them
                for row in rows:
                    self._held.add(row[0])
            self._note_committed([row[0] for row in rows])
        except BaseException:
            if not self._batch_depth and db.in_transaction:
                db.execute("ROLLBACK")
            self._reload_books()  # the write failed: back to what is stored (and kept)
            raise

    def _buffer(
        self,
        events: tuple[Model, ...],
        rows: list[tuple[Any, ...]],
        links: list[Link],
        changes: Changes,
    ) -> None:
        """Inside a batch: keep one append's rows for the batch's commit. Everything that can
        refuse the append (duplicates, unknown parents, a value that is not JSON) is checked
        before any of it is kept, so a refused append leaves the others as they were."""
        pending = self._pending
        derived = [(tbl, key, None if v is None else _json(v)) for tbl, key, v in changes]
        if self.before_commit is not None:
            self.before_commit(events)
        seq = pending.next_seq
        pending.events += [(seq + i, *row) for i, row in enumerate(rows)]
        pending.next_seq = seq + len(rows)
        pending.cids.update(row[0] for row in rows)
        assert self._held is not None  # made when the batch began
        for row in rows:
            self._held.add(row[0])
        pending.links += links
        for tbl, key, value in derived:
            pending.derived[(tbl, key)] = value  # the last write of a row in the batch wins

    def _note_committed(self, keys: list[str]) -> None:
        committed = self._committed
        committed.update(dict.fromkeys(keys))
        while len(committed) > _COMMITTED_KEPT:
            del committed[next(iter(committed))]

    def _flush(self) -> None:
        """Write what the batch appended so far (inside its transaction; a no-op outside)."""
        pending = self._pending
        if not (pending.events or pending.stimuli or pending.derived):
            return
        self._batch_keys += [row[1] for row in pending.events]
        db = self._db
        db.executemany(
            "INSERT INTO events (seq, cid, type, author, timestamp, data) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            pending.events,
        )
        db.executemany("INSERT OR IGNORE INTO parents VALUES (?, ?)", pending.links)
        upserts = [(t, k, v) for (t, k), v in pending.derived.items() if v is not None]
        deletes = [(t, k) for (t, k), v in pending.derived.items() if v is None]
        db.executemany("INSERT OR REPLACE INTO derived VALUES (?, ?, ?)", upserts)
        db.executemany("DELETE FROM derived WHERE tbl = ? AND key = ?", deletes)
        db.executemany(
            "INSERT INTO stimuli (after_seq, at, kind, task, ref, data) VALUES (?, ?, ?, ?, ?, ?)",
            pending.stimuli,
        )
        self._pending = _Pending(next_seq=pending.next_seq)

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Group several appends into one transaction (group commit).

        Each append inside stays atomic on its own: it is checked whole before any of it is
        kept, so a refused append leaves the others in place. The appends' rows are kept in
        memory and written together when the batch commits (or earlier, as soon as anything
        reads the ledger): one statement per table per batch, the derived rows each written
        once. A crash before the batch commits loses the whole batch, never part of an
        append. The node uses this to commit once per burst of work.
        """
        if self._batch_depth:
            self._batch_depth += 1
            try:
                yield
            finally:
                self._batch_depth -= 1
            return
        self._db.execute("BEGIN IMMEDIATE")
        last, version = self._db.execute(
            "SELECT (SELECT COALESCE(MAX(seq), 0) FROM events), data_version "
            "FROM pragma_data_version"
        ).fetchone()
        if self._held is None or version != self._data_version or self._held.full:
            # the first batch, another connection committed since, or the filter is full
            self._data_version = version
            self._held = self._held_filter()
        self._pending = _Pending(next_seq=last + 1)
        self._batch_keys = []
        self._batch_depth = 1
        try:
            yield
            self._flush()
        except BaseException:
            self._batch_depth = 0
            self._pending = _Pending()
            self._db.execute("ROLLBACK")
            self._reload_books()
            raise
        self._batch_depth = 0
        self._db.execute("COMMIT")
        self._note_committed(self._batch_keys)

    def _write_changes(self, changes: Changes) -> None:
        upserts = [(tbl, key, _json(value)) for tbl, key, value in changes if value is not None]
        deletes = [(tbl, key) for tbl, key, value in changes if value is None]
        self._db.executemany("INSERT OR REPLACE INTO derived VALUES (?, ?, ?)", upserts)
        self._db.executemany("DELETE FROM derived WHERE tbl = ? AND key = ?", deletes)

    # --- checking ---
    def refold(self, report: LedgerReport | None = None) -> Books:
        """Fold every event from nothing, checking CIDs, signatures, links and rules."""
        self._flush()
        follower = LedgerFollower(self.authority)
        return follower.follow(self, report)

    def verify(self) -> LedgerReport:
        """Check everything; the stored tables must equal a fresh fold of the events. Read in
        one transaction (unless one is open already): the events and the tables of one
        moment, whatever another connection commits meanwhile."""
        report = LedgerReport()
        own = not self._db.in_transaction
        if own:
            self._db.execute("BEGIN")  # deferred: a read snapshot from the first read on
        try:
            books = self.refold(report)
            stored = self.stored_tables()
        finally:
            if own:
                self._db.execute("COMMIT")
        differences = _differences(stored, books.tables())
        if differences:
            report.tables_equal = False
            report.problems += differences[:20]
        return report

    def rebuild(self) -> LedgerReport:
        """Drop the derived tables and write them again from a fresh fold of the DAG."""
        report = LedgerReport()
        before = self.stored_tables()
        books = self.refold(report)
        report.tables_equal = not _differences(before, books.tables())
        if report.problems:
            return report  # a ledger that does not verify is not rewritten
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute("DELETE FROM derived")
            db.executemany(
                "INSERT INTO derived VALUES (?, ?, ?)",
                [(t, k, _json(v)) for t, k, v in books],
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        self.books.load(books.tables())  # in place: whoever shares the books sees them
        return report

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LedgerFollower:
    """A fresh fold of a ledger kept up to date: :meth:`follow` checks and folds only the
    events appended since its last call (CIDs, signatures, links, rules, the settlement
    auditor), after checking that the events it already folded are still there unchanged
    (a digest of them). ``Ledger.refold`` is one follow from nothing; a watcher that looks at
    a growing ledger again and again (the crash suite after every kill) pays for each event
    once instead of once per look."""

    def __init__(self, authority: str) -> None:
        self.books = Books(authority)
        self.auditor = SettlementAuditor()
        self.seq = 0  #: the last event folded
        self.events = 0
        self._seen: set[str] = set()
        self._digest = hashlib.sha256()
        self._problems: list[str] = []
        #: called with each event folded (in order), e.g. to collect task times
        self.on_event: Callable[[int, Model], None] | None = None

    def follow(self, ledger: Ledger, report: LedgerReport | None = None) -> Books:
        """Fold what was appended since the last call; ``report`` gets every problem found so
        far and the token figures. Returns the follower's books (do not change them)."""
        report = report if report is not None else LedgerReport()
        ledger._flush()  # a batch's pending rows are read too
        db = ledger._db
        if ledger.authority != self.books.authority:
            raise LedgerError(f"{ledger.path} belongs to {ledger.authority}, not this follower's")
        if self.seq:  # the prefix folded before is still the same, byte for byte
            again = hashlib.sha256()
            for row in db.execute(
                "SELECT seq, cid, data FROM events WHERE seq <= ? ORDER BY seq", (self.seq,)
            ):
                again.update(_row_digest(*row))
            if again.digest() != self._digest.digest():
                self._problems.append(
                    f"the events up to #{self.seq} changed since they were verified"
                )
        books, auditor, seen = self.books, self.auditor, self._seen
        problems_before = len(auditor.problems)
        for seq, cid, data in db.execute(
            "SELECT seq, cid, data FROM events WHERE seq > ? ORDER BY seq", (self.seq,)
        ):
            self.seq = seq
            self.events += 1
            self._digest.update(_row_digest(seq, cid, data))
            try:
                ev = decode_object(data, expected_cid=cid)
            except MeshError as exc:
                self._problems.append(f"event #{seq} {cid}: {type(exc).__name__}: {exc}")
                continue
            for parent in getattr(ev, "parents", ()):
                if cid_key(parent) not in seen:
                    self._problems.append(f"event #{seq} {cid}: parent {parent} is not before it")
            auditor.before(ev, books)
            try:
                books.apply(ev)
            except MeshError as exc:
                self._problems.append(f"event #{seq} {cid}: refused by the fold: {exc}")
            seen.add(cid)
            if self.on_event is not None:
                self.on_event(seq, ev)
        self._problems += auditor.problems[problems_before:]
        report.events = self.events
        report.problems += self._problems
        report.settlements_audited = auditor.audited
        report.settlements_unaudited = auditor.unaudited
        if len(report.problems) > 100:
            report.problems[100:] = [f"... and {len(report.problems) - 100} more problems"]
        try:
            books.check_conservation()
        except LedgerError as exc:
            report.problems.append(str(exc))
        report.tokens_minted = books.minted()
        report.tokens_held = books.token_total()
        return books

    def verify(self, ledger: Ledger) -> LedgerReport:
        """:meth:`Ledger.verify`, paying only for the events appended since the last call:
        the stored tables must equal the fold."""
        report = LedgerReport()
        books = self.follow(ledger, report)
        differences = _differences(ledger.stored_tables(), books.tables())
        if differences:
            report.tables_equal = False
            report.problems += differences[:20]
        return report


def stored_events(
    path: str | os.PathLike[str],
    types: Collection[str],
    *,
    newest: int | None = None,
    chunk: int = 512,
) -> Iterator[tuple[str, bytes]]:
    """``(type, bytes)`` of the committed events of ``types`` in ledger order (only the
    ``newest`` so many, if given), read from the file by a read-only connection of its own
    (the writer goes on: WAL), ``chunk`` rows at a time: what peers that join late are
    served, without the ledger's history in memory. The bytes are as stored; whoever
    receives them checks each like any object from outside. The generator may be resumed on
    any thread (one at a time)."""
    wanted = sorted(set(types))
    if not wanted or (newest is not None and newest <= 0):
        return
    uri = Path(path).resolve().as_uri() + "?mode=ro"
    db = sqlite3.connect(uri, uri=True, check_same_thread=False)
    try:
        marks = ",".join("?" * len(wanted))
        after = 0
        if newest is not None:  # start after the newest-th from the end (index on seq)
            row = db.execute(
                f"SELECT seq FROM events WHERE type IN ({marks}) ORDER BY seq DESC "
                "LIMIT 1 OFFSET ?",
                (*wanted, newest),
            ).fetchone()
            after = 0 if row is None else row[0]
        query = f"SELECT seq, type, data FROM events WHERE seq > ? AND type IN ({marks}) "
        query += "ORDER BY seq LIMIT ?"
        while True:
            rows = db.execute(query, (after, *wanted, chunk)).fetchall()
            for seq, kind, data in rows:
                after = seq
                yield kind, bytes(data)
            if len(rows) < chunk:
                return
    finally:
        db.close()


def _row_digest(seq: int, cid: str, data: bytes) -> bytes:
    return seq.to_bytes(8, "big") + cid.encode() + hashlib.sha256(data).digest()


class _CidFilter:
    """A Bloom filter of CID keys: :meth:`may_hold` is never false for a key added, and
    true for one not added about once in a thousand times (12 bits and 8 probes a key, at
    most :attr:`capacity` keys; the ledger makes a larger one when it is :attr:`full`).
    Probes come from Python's hash of the key (a CID's text: random to whoever did not
    break sha2-256), so a false answer costs one query, never a wrong one. 1.5 to 3 bytes a
    key (it is made for twice the keys held): 26 to 51 bytes a settled task."""

    BITS_PER_KEY: Final = 12
    PROBES: Final = 8

    def __init__(self, expected: int) -> None:
        bits = 1 << max(16, (max(1, 2 * expected) * self.BITS_PER_KEY - 1).bit_length())
        self._mask = bits - 1
        self._bits = bytearray(bits >> 3)
        self.capacity = bits // self.BITS_PER_KEY
        self.count = 0

    @property
    def full(self) -> bool:
        return self.count >= self.capacity

    def _probes(self, key: str) -> list[int]:
        h1, h2 = hash(key), hash((key, 1)) | 1
        mask = self._mask
        return [(h1 + i * h2) & mask for i in range(self.PROBES)]

    def add(self, key: str) -> None:
        bits = self._bits
        for p in self._probes(key):
            bits[p >> 3] |= 1 << (p & 7)
        self.count += 1

    def may_hold(self, key: str) -> bool:
        # the probes one by one: a key not added is mostly answered at its first probes
        h1, h2 = hash(key), hash((key, 1)) | 1
        mask, bits = self._mask, self._bits
        for i in range(self.PROBES):
            p = (h1 + i * h2) & mask
            if not bits[p >> 3] & (1 << (p & 7)):
                return False
        return True


@dataclass
class _Pending:
    """The rows a batch has appended and not yet written (see :meth:`Ledger.batch`)."""

    next_seq: int = 1
    events: list[tuple[Any, ...]] = field(default_factory=list)
    cids: set[str] = field(default_factory=set)
    links: list[Link] = field(default_factory=list)
    derived: dict[tuple[str, str], str | None] = field(default_factory=dict)
    stimuli: list[tuple[Any, ...]] = field(default_factory=list)


def _timestamp(ev: Model) -> int | None:
    for name in ("timestamp", "created_at", "updated_at", "at", "issued_at"):
        value = getattr(ev, name, None)
        if isinstance(value, int):
            return value
    return None


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _differences(a: dict[str, dict[str, Any]], b: dict[str, dict[str, Any]]) -> list[str]:
    out = []
    for tbl in sorted(set(a) | set(b)):
        ra, rb = a.get(tbl, {}), b.get(tbl, {})
        for key in sorted(set(ra) | set(rb)):
            va = _json(ra[key]) if key in ra else None
            vb = _json(rb[key]) if key in rb else None
            if va != vb:
                out.append(f"{tbl}[{key}]: stored {va} but the events fold to {vb}")
    return out


#: How many recently committed event CIDs a ledger remembers (parents are recent events).
_COMMITTED_KEPT: Final = 256

_STIMULI: Final[dict[str, type]] = {cls.__name__: cls for cls in UNSIGNED_STIMULI}


def _stimulus_row(stimulus: object) -> tuple[str, str | None, str | None, str | None]:
    """(kind, task, ref, data) of one journal row."""
    task = getattr(stimulus, "task_cid", None)
    task_key = cid_key(task) if task is not None else None
    if isinstance(stimulus, Signed):
        if isinstance(stimulus, TaskIntent):
            task_key = cid_key(stimulus.cid)
        return type(stimulus).__name__, task_key, cid_key(stimulus.cid), None
    kind = type(stimulus).__name__
    if kind not in _STIMULI:
        raise LedgerError(f"{kind} is not a stimulus the journal knows")
    fields = {
        f: (cid_key(v) if f == "task_cid" else v)
        for f in stimulus.__dataclass_fields__  # type: ignore[attr-defined]
        for v in (getattr(stimulus, f),)
    }
    return kind, task_key, None, _json(fields)


def _stimulus_from(kind: str, fields: dict[str, Any]) -> object:
    cls = _STIMULI.get(kind)
    if cls is None:
        raise LedgerError(f"the journal holds an unknown stimulus kind {kind!r}")
    if "task_cid" in fields:
        fields = {**fields, "task_cid": parse_cid(fields["task_cid"])}
    return cls(**fields)
