"""decide_on_ledger: the authority's state machine over a ledger file, offline."""

from __future__ import annotations

from pathlib import Path

import pytest

import meshbench as mb
from meshbench.core.protocol import Faucet
from meshbench.store.authority import decide_on_ledger
from meshbench.store.ledger import Ledger
from meshbench.testing.factories import T0, make_identity, make_task


def test_a_mint_is_decided_and_appended(tmp_path: Path) -> None:
    auth, alice = make_identity(1), make_identity(2)
    with Ledger(tmp_path / "l.sqlite", authority=auth.did) as led:
        events = decide_on_ledger(led, auth, Faucet(account=alice.did, amount=50), T0)
        assert [type(e).__name__ for e in events] == ["Mint"]
        assert len(led) == 1 and led.balance(alice.did) == 50


def test_what_needs_a_running_node_is_refused_and_appends_nothing(tmp_path: Path) -> None:
    auth, publisher = make_identity(1), make_identity(2)
    with Ledger(tmp_path / "l.sqlite", authority=auth.did) as led:
        decide_on_ledger(led, auth, Faucet(account=publisher.did, amount=1_000), T0)
        before = led.books.tables()
        task = make_task(publisher, sign=True)  # asks for offers and a timer: a node's work
        with pytest.raises(mb.ProtocolError, match="needs a running node"):
            decide_on_ledger(led, auth, task, T0)
        assert len(led) == 1 and led.books.tables() == before


def test_only_the_ledgers_authority_decides(tmp_path: Path) -> None:
    auth, other = make_identity(1), make_identity(3)
    with Ledger(tmp_path / "l.sqlite", authority=auth.did) as led:
        with pytest.raises(mb.ProtocolError, match="not this ledger's authority"):
            decide_on_ledger(led, other, Faucet(account=other.did, amount=5), T0)
        assert len(led) == 0
