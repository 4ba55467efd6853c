"""Group commit: a batch keeps its appends in memory and writes them once, at its commit.

Each append inside a batch stays atomic (a refused one leaves the others), reads inside the
batch see what it appended, the derived rows end as an unbatched ledger's, and a failed batch
leaves nothing of itself in the file or in the books.
"""

from __future__ import annotations

import sqlite3

import pytest

from meshbench.core.errors import InsufficientFunds, LedgerError
from meshbench.core.events import Mint, Transfer
from meshbench.core.protocol import Faucet, Journaled
from meshbench.store.ledger import Ledger
from meshbench.testing.factories import make_identity

AUTH = make_identity(1000)
ALICE, BOB = make_identity(1), make_identity(2)


def mint(who, amount, t=1):
    return Mint(authority=AUTH.did, account=who.did, amount=amount, timestamp=t).sign(AUTH)


def transfer(amount, nonce):
    return Transfer(
        sender=ALICE.did, recipient=BOB.did, amount=amount, nonce=nonce, timestamp=2
    ).sign(ALICE)


def _rows(path):
    db = sqlite3.connect(path)
    try:
        events = db.execute("SELECT seq, cid FROM events ORDER BY seq").fetchall()
        derived = db.execute("SELECT tbl, key, value FROM derived ORDER BY tbl, key").fetchall()
        stimuli = db.execute("SELECT after_seq, kind FROM stimuli ORDER BY n").fetchall()
        return events, derived, stimuli
    finally:
        db.close()


def test_a_batch_writes_what_unbatched_appends_write(tmp_path):
    events = [mint(ALICE, 100), transfer(30, 1), transfer(20, 2)]
    with Ledger(tmp_path / "one.sqlite", authority=AUTH.did) as led:
        for ev in events:
            led.journal([Journaled(5, Faucet(account=ALICE.did, amount=1))])
            led.append(ev)
    with Ledger(tmp_path / "batch.sqlite", authority=AUTH.did) as led, led.batch():
        for ev in events:
            led.journal([Journaled(5, Faucet(account=ALICE.did, amount=1))])
            led.append(ev)
        # inside the batch, reads see what it appended
        assert len(led) == 3 and led.has(events[2].cid) and led.get(events[1].cid) == events[1]
        assert led.stored_row("accounts", BOB.did) is not None
        led.append(transfer(5, 3))  # appended after a read: kept too
    assert _rows(tmp_path / "one.sqlite")[2] == _rows(tmp_path / "batch.sqlite")[2][:3]
    with Ledger(tmp_path / "batch.sqlite") as led:
        assert len(led) == 4 and led.balance(BOB.did) == 55
        assert led.verify().ok


def test_a_refused_append_in_a_batch_leaves_the_others(tmp_path):
    path = tmp_path / "l.sqlite"
    with Ledger(path, authority=AUTH.did) as led:
        m = mint(ALICE, 100)
        with led.batch():
            led.append(m)
            with pytest.raises(LedgerError):
                led.append(m)  # a duplicate of an append still in memory
            with pytest.raises(InsufficientFunds):
                led.append(transfer(500, 1))
            led.append(transfer(30, 2))
            assert led.balance(ALICE.did) == 70
        assert led.balance(ALICE.did) == 70 and led.balance(BOB.did) == 30
    with Ledger(path) as led:
        assert len(led) == 2 and led.balance(BOB.did) == 30 and led.verify().ok


def test_a_failed_batch_leaves_nothing(tmp_path):
    path = tmp_path / "l.sqlite"
    with Ledger(path, authority=AUTH.did) as led:
        led.append(mint(ALICE, 100))
        before = _rows(path)
        with pytest.raises(RuntimeError), led.batch():
            led.append(transfer(30, 1))
            led.journal([Journaled(7, Faucet(account=BOB.did, amount=1))])
            raise RuntimeError("crash mid-burst")
        assert led.balance(ALICE.did) == 100 and led.balance(BOB.did) == 0
        assert _rows(path) == before
        with led.batch():  # the ledger goes on: the next batch numbers from the file
            led.append(transfer(10, 2))
        assert [seq for seq, _ in _rows(path)[0]] == [1, 2]


def test_a_batch_answers_has_from_its_filter_and_still_refuses_every_duplicate(tmp_path):
    """Inside a batch, a CID the filter of held CIDs does not know is answered without a
    query; duplicates are refused whether they were appended before the ledger was opened,
    in an earlier batch, in this one, or by another connection meanwhile."""
    path = tmp_path / "l.sqlite"
    first = mint(ALICE, 100)
    with Ledger(path, authority=AUTH.did) as led:
        led.append(first)
    with Ledger(path) as led:
        queries: list[str] = []
        led._db.set_trace_callback(queries.append)
        with led.batch():
            queries.clear()
            fresh = [transfer(1, n) for n in range(1, 20)]
            assert not any(led.has(ev.cid) for ev in fresh)
            assert not [q for q in queries if "SELECT 1 FROM events" in q]  # no lookups
            assert led.has(first.cid)  # held before the ledger was opened
            with pytest.raises(LedgerError, match="already in the ledger"):
                led.append(first)
            led.append(fresh[0])
            with pytest.raises(LedgerError, match="already in the ledger"):
                led.append(fresh[0])
        led._db.set_trace_callback(None)
        # another connection appends: the next batch sees it (PRAGMA data_version)
        with Ledger(path) as other:
            other.append(fresh[1])
        with led.batch():
            assert led.has(fresh[1].cid)
            with pytest.raises(LedgerError, match="already in the ledger"):
                led.append(fresh[1])
            led.append(fresh[2])
        with led.batch(), pytest.raises(LedgerError, match="already in the ledger"):
            led.append(fresh[2])
        assert len(led) == 4


def test_the_filter_of_held_cids_grows_with_the_ledger(tmp_path, monkeypatch):
    from meshbench.store import ledger as ledger_mod

    with Ledger(tmp_path / "l.sqlite", authority=AUTH.did) as led:
        led.append(mint(ALICE, 1000))
        small = ledger_mod._CidFilter(1)
        monkeypatch.setattr(small, "capacity", 3)
        for key in led._db.execute("SELECT cid FROM events"):
            small.add(key[0])
        led._held = small
        appended = []
        for n in range(1, 7):
            with led.batch():
                ev = transfer(1, n)
                led.append(ev)
                appended.append(ev)
        assert led._held is not small and led._held.capacity > 3
        with led.batch():
            assert all(led.has(ev.cid) for ev in appended)
            for ev in appended:
                with pytest.raises(LedgerError, match="already in the ledger"):
                    led.append(ev)
    f = ledger_mod._CidFilter(10_000)
    keys = [f"b{n:058d}" for n in range(20_000)]
    for key in keys[:10_000]:
        f.add(key)
    assert all(f.may_hold(k) for k in keys[:10_000])
    assert sum(f.may_hold(k) for k in keys[10_000:]) < 100  # about 1 in 1000 (<1 in 100)
