"""The ledger authority's state machine over a ledger file, offline (no running node).

``icn-wallet`` (a stake request) and ``meshbench ledger faucet`` (a mint) let the
authority's :class:`~meshbench.core.protocol.AuthorityState` decide on one stimulus with the
books the ledger holds, and append what it decided. Only :class:`AppendToLedger` can be
carried out without a node; a stimulus that asks for anything else (workers, timers,
gossip) is refused before anything is appended.
"""

from __future__ import annotations

from typing import assert_never

from meshbench.core import governance as gov
from meshbench.core.errors import ProtocolError
from meshbench.core.identity import Identity
from meshbench.core.model import Model
from meshbench.core.protocol import (
    AppendToLedger,
    AuthorityState,
    Broadcast,
    Command,
    JudgeVerdict,
    RefereeRun,
    RequestReveal,
    RequestVerdict,
    RunExecution,
    RunVerification,
    ScheduleTimeout,
    SealKey,
)
from meshbench.store.ledger import Ledger

__all__ = ["decide_on_ledger"]


def decide_on_ledger(
    ledger: Ledger, authority: Identity, stimulus: object, now_ms: int
) -> tuple[Model, ...]:
    """Let ``authority``'s state machine handle ``stimulus`` over ``ledger``'s books and
    append the events it decided, in one transaction; returns them.

    A refused stimulus raises its typed :class:`~meshbench.core.errors.MeshError`, as does
    one whose commands need a running node; the ledger is then unchanged.
    """
    if ledger.authority != authority.did:
        raise ProtocolError(f"{authority.did} is not this ledger's authority ({ledger.authority})")
    # The state machine decides on a copy; the ledger folds the events as it appends them.
    books = ledger.books.copy()
    state = AuthorityState(authority, books=books, membership=gov.BooksMembership(books))
    events: list[Model] = []
    for cmd in state.handle(stimulus, now_ms):
        events.extend(_offline(cmd))
    if events:
        ledger.append(*events)
    return tuple(events)


def _offline(cmd: Command) -> tuple[Model, ...]:
    """What of ``cmd`` an offline authority carries out (the events to append)."""
    match cmd:
        case AppendToLedger():
            return cmd.events
        case (
            Broadcast()
            | RunExecution()
            | RunVerification()
            | RequestReveal()
            | RequestVerdict()
            | JudgeVerdict()
            | RefereeRun()
            | SealKey()
            | ScheduleTimeout()
        ):
            raise ProtocolError(
                f"{type(cmd).__name__} needs a running node; send this request to the "
                "federation's node (nothing was appended)"
            )
        case _:
            assert_never(cmd)
