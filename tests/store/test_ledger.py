"""The SQLite ledger: atomic appends, refusals, reopen, verify and rebuild."""

from __future__ import annotations

import sqlite3

import pytest

from meshbench.core.errors import InsufficientFunds, InvalidSignature, LedgerError, ProtocolError
from meshbench.core.events import Mint, Payout, RewardDistributed, Transfer
from meshbench.core.protocol import AppendToLedger
from meshbench.store.ledger import Ledger
from meshbench.testing.factories import make_identity
from meshbench.testing.protocol import ProtocolHarness, output_cid

AUTH = make_identity(1000)
ALICE, BOB = make_identity(1), make_identity(2)


def mint(who, amount, t=1):
    return Mint(authority=AUTH.did, account=who.did, amount=amount, timestamp=t).sign(AUTH)


def test_append_and_reopen(tmp_path):
    path = tmp_path / "l.sqlite"
    with Ledger(path, authority=AUTH.did) as led:
        led.append(mint(ALICE, 100))
        led.append(
            Transfer(sender=ALICE.did, recipient=BOB.did, amount=30, nonce=1, timestamp=2).sign(
                ALICE
            )
        )
    with Ledger(path) as led:
        assert led.balance(ALICE.did) == 70 and led.balance(BOB.did) == 30
        assert len(led) == 2
        assert led.verify().ok


def test_refusals_leave_nothing_written(tmp_path):
    with Ledger(tmp_path / "l.sqlite", authority=AUTH.did) as led:
        m = mint(ALICE, 100)
        led.append(m)
        with pytest.raises(LedgerError):
            led.append(m)  # duplicate
        with pytest.raises(LedgerError):  # mint by someone else
            led.append(
                Mint(authority=ALICE.did, account=ALICE.did, amount=5, timestamp=1).sign(ALICE)
            )
        with pytest.raises(InsufficientFunds):
            led.append(
                Transfer(
                    sender=ALICE.did, recipient=BOB.did, amount=500, nonce=1, timestamp=2
                ).sign(ALICE)
            )
        with pytest.raises(InvalidSignature):
            led.append(
                _forge(
                    Transfer(sender=ALICE.did, recipient=BOB.did, amount=5, nonce=1, timestamp=2)
                )
            )
        with pytest.raises(LedgerError):  # unknown parent
            led.append(_orphan())
        ok = Transfer(sender=ALICE.did, recipient=BOB.did, amount=5, nonce=1, timestamp=2)
        led.append(ok.sign(ALICE))
        with pytest.raises(ProtocolError):  # nonce replay
            led.append(
                Transfer(sender=ALICE.did, recipient=BOB.did, amount=5, nonce=1, timestamp=3).sign(
                    ALICE
                )
            )
        assert len(led) == 2
        assert led.verify().ok


def _forge(t: Transfer) -> Transfer:
    import msgspec

    return msgspec.structs.replace(t.sign(ALICE), amount=6)


def _orphan() -> Mint:
    from meshbench.core.encoding import object_cid

    return Mint(
        authority=AUTH.did,
        account=BOB.did,
        amount=1,
        timestamp=3,
        parents=(object_cid(b"\xa0"),),
    ).sign(AUTH)


def _drive_harness(led: Ledger) -> ProtocolHarness:
    h = ProtocolHarness()
    good, bad = output_cid("good"), output_cid("bad")
    t1, a1 = h.publish_and_assign()
    h.execute(t1, {v: good for v in a1.verifiers}, worker_output=good)
    t2, a2 = h.publish_and_assign(worker=h.peers[3])
    h.execute(t2, {v: good for v in a2.verifiers}, worker_output=bad)
    for cmd in h.log:
        if isinstance(cmd, AppendToLedger):
            led.append(*cmd.events)
    return h


def test_ledger_folds_exactly_what_the_state_machine_folded(tmp_path):
    with Ledger(tmp_path / "l.sqlite", authority=make_identity(1000).did) as led:
        h = _drive_harness(led)
        assert led.books.tables() == h.state.books.tables()
        report = led.verify()
        assert report.ok, report.problems
        assert report.tokens_minted == report.tokens_held


@pytest.mark.parametrize("schema", ["current", "keyed"])
def test_parents_hold_each_events_links_once(tmp_path, schema):
    """The parents table (written, never read by the ledger: links are checked from the
    events themselves) has no key since it is appended with its event; a ledger made when it
    had one, (child, parent), is written the same way."""
    path = tmp_path / "l.sqlite"
    if schema == "keyed":
        with sqlite3.connect(path) as db:
            db.execute(
                "CREATE TABLE parents (child TEXT NOT NULL, parent TEXT NOT NULL, "
                "PRIMARY KEY (child, parent))"
            )
    with Ledger(path, authority=make_identity(1000).did) as led:
        h = _drive_harness(led)
        assert led.verify().ok
    expected = sorted(
        (str(cmd_ev.cid), str(p))
        for cmd in h.log
        if isinstance(cmd, AppendToLedger)
        for cmd_ev in cmd.events
        for p in dict.fromkeys(getattr(cmd_ev, "parents", ()))
    )
    with sqlite3.connect(path) as db:
        rows = sorted(db.execute("SELECT child, parent FROM parents").fetchall())
        keyed = (
            "PRIMARY KEY"
            in db.execute("SELECT sql FROM sqlite_master WHERE name = 'parents'").fetchone()[0]
        )
    assert expected and rows == expected
    assert keyed is (schema == "keyed")


def test_double_payout_is_refused_by_the_ledger(tmp_path):
    with Ledger(tmp_path / "l.sqlite", authority=make_identity(1000).did) as led:
        h = _drive_harness(led)
        reward = next(
            e
            for c in h.log
            if isinstance(c, AppendToLedger)
            for e in c.events
            if isinstance(e, RewardDistributed)
        )
        again = RewardDistributed(
            authority=reward.authority,
            task_cid=reward.task_cid,
            total=reward.total,
            payouts=(Payout(account=ALICE.did, amount=reward.total, role="refund"),),
            timestamp=reward.timestamp + 1,
        ).sign(make_identity(1000))
        with pytest.raises(LedgerError, match="already paid"):
            led.append(again)


def test_verify_finds_tampering_and_rebuild_repairs_derived_tables(tmp_path):
    path = tmp_path / "l.sqlite"
    with Ledger(path, authority=make_identity(1000).did) as led:
        _drive_harness(led)
    db = sqlite3.connect(path)
    db.execute(
        "UPDATE derived SET value = '999999' WHERE tbl = 'accounts' "
        "AND rowid = (SELECT MIN(rowid) FROM derived WHERE tbl = 'accounts')"
    )
    db.commit()
    db.close()
    with Ledger(path) as led:
        report = led.verify()
        assert not report.tables_equal
        rebuilt = led.rebuild()
        assert not rebuilt.problems and not rebuilt.tables_equal  # it repaired a difference
        assert led.verify().ok
    db = sqlite3.connect(path)
    db.execute("UPDATE events SET data = substr(data, 1, length(data) - 1) WHERE seq = 3")
    db.commit()
    db.close()
    with Ledger(path) as led:
        report = led.verify()
        assert not report.ok
        assert any("#3" in p for p in report.problems)
        assert led.rebuild().problems  # a ledger that does not verify is not rewritten


def test_ledger_refuses_another_authority(tmp_path):
    path = tmp_path / "l.sqlite"
    Ledger(path, authority=AUTH.did).close()
    with pytest.raises(LedgerError):
        Ledger(path, authority=ALICE.did)
    with pytest.raises(LedgerError):
        Ledger(tmp_path / "new.sqlite")


def test_verify_re_derives_every_settlement_and_catches_a_skewed_split(tmp_path):
    import msgspec

    auth = make_identity(1000)
    h = ProtocolHarness()
    good = output_cid("good")
    t1, a1 = h.publish_and_assign(cost=80)
    h.execute(t1, {v: good for v in a1.verifiers}, worker_output=good)
    events = [e for c in h.log if isinstance(c, AppendToLedger) for e in c.events]
    with Ledger(tmp_path / "ok.sqlite", authority=auth.did) as led:
        led.append(*events)
        report = led.verify()
        assert report.ok and report.settlements_audited == 1
    skewed = []
    for e in events:
        if isinstance(e, RewardDistributed):
            lines = list(e.payouts)
            worker = next(i for i, p in enumerate(lines) if p.role == "worker")
            refund = next(i for i, p in enumerate(lines) if p.role == "refund")
            lines[worker] = msgspec.structs.replace(lines[worker], amount=lines[worker].amount + 5)
            lines[refund] = msgspec.structs.replace(lines[refund], amount=lines[refund].amount - 5)
            e = msgspec.structs.replace(e, payouts=tuple(lines), signature=b"").sign(auth)
        skewed.append(e)
    with Ledger(tmp_path / "bad.sqlite", authority=auth.did) as led:
        led.append(*skewed)  # the fold accepts it: the payouts still sum to the escrow
        report = led.verify()
        assert not report.ok
        assert any("the rules give" in p for p in report.problems)


def test_a_follower_verifies_a_growing_ledger_once_per_event_and_sees_old_events_change(tmp_path):
    from meshbench.store.ledger import LedgerFollower

    path = tmp_path / "l.sqlite"
    h = ProtocolHarness()
    good = output_cid("good")
    appended = 0
    with Ledger(path, authority=h.authority.did) as led:
        follower = LedgerFollower(led.authority)
        for n in range(3):  # the ledger grows between looks
            t, a = h.publish_and_assign(worker=h.peers[n])
            h.execute(t, {v: good for v in a.verifiers}, worker_output=good)
            events = [e for c in h.log if isinstance(c, AppendToLedger) for e in c.events]
            led.append(*events[appended:])
            appended = len(events)
            before = follower.events
            report = follower.verify(led)
            assert report.ok, report.problems
            assert follower.events == len(led)  # each event folded once in all
            assert follower.events - before < len(led) or n == 0
            fresh = led.verify()
            assert (report.tokens_minted, report.tokens_held) == (
                fresh.tokens_minted,
                fresh.tokens_held,
            )
            assert follower.books.tables() == led.refold().tables()
    db = sqlite3.connect(path)  # an event already verified is altered behind its back
    db.execute("UPDATE events SET data = substr(data, 1, length(data) - 1) WHERE seq = 3")
    db.commit()
    db.close()
    with Ledger(path) as led:
        report = follower.verify(led)
        assert not report.ok
        assert any("changed since they were verified" in p for p in report.problems)


def test_stored_events_reads_committed_events_of_the_types_asked_in_order_a_chunk_at_a_time(
    tmp_path,
):
    from meshbench.store.ledger import stored_events

    path = tmp_path / "l.sqlite"
    with Ledger(path, authority=AUTH.did) as led:
        mints = [mint(ALICE, 10, t) for t in range(1, 8)]
        led.append(*mints)
        led.append(
            Transfer(sender=ALICE.did, recipient=BOB.did, amount=3, nonce=1, timestamp=9).sign(
                ALICE
            )
        )
        got = list(stored_events(path, ["Mint"], chunk=2))  # while the writer is open
        assert got == [("Mint", m.encode()) for m in mints]
        assert [k for k, _ in stored_events(path, ["Mint", "Transfer"])][-1] == "Transfer"
        assert list(stored_events(path, [])) == [] and list(stored_events(path, ["Nope"])) == []
        newest = list(stored_events(path, ["Mint"], newest=3, chunk=2))  # the end of a history
        assert newest == [("Mint", m.encode()) for m in mints[-3:]]
        assert len(list(stored_events(path, ["Mint"], newest=99))) == 7
        assert list(stored_events(path, ["Mint"], newest=0)) == []
        with led.batch():
            led.append(mint(BOB, 5, 20))
            assert len(list(stored_events(path, ["Mint"]))) == 7  # not committed yet: unseen
        assert len(list(stored_events(path, ["Mint"]))) == 8
        # a reader left half-way (a peer that went away mid-sync) holds nothing once closed
        reader = stored_events(path, ["Mint"], chunk=2)
        next(reader)
        reader.close()
        led.append(mint(BOB, 5, 21))  # the writer is not held up
    with pytest.raises(sqlite3.OperationalError):
        list(stored_events(tmp_path / "absent.sqlite", ["Mint"]))  # read-only: never creates
