"""AuthorityState.forget: a settled task leaves memory; objects about it stay refused."""

from __future__ import annotations

import pytest

from meshbench.core.books import cid_key
from meshbench.core.errors import ProtocolError
from meshbench.testing.protocol import ProtocolHarness, output_cid

GOOD = output_cid("good")


def test_only_a_settled_task_is_forgotten_and_its_rows_leave_the_books():
    h = ProtocolHarness(forget_settled=True)
    task, a = h.publish_and_assign()
    assert not h.state.forget(task.cid)  # open: kept
    receipt = h.execute(task, {v: GOOD for v in a.verifiers}, worker_output=GOOD)
    tokens = h.state.books.token_total()
    assert h.state.forget(task.cid)
    assert not h.state.forget(task.cid)  # once
    assert task.cid not in h.state.tasks
    assert h.state.books.task(task.cid) is None
    assert h.state.books.get("escrows", cid_key(task.cid)) is None
    assert h.state.books.token_total() == tokens  # only rows without tokens left
    h.state.books.check_conservation()
    for late in (task, h.verdict(task, a.verifiers[0], GOOD, receipt), receipt):
        with pytest.raises(ProtocolError):
            h.feed(late)  # refused: a replayed TaskIntent, objects about an unknown task
    assert h.state.books.token_total() == tokens


def test_forgetting_drops_the_replay_guard_of_the_task_objects_only():
    h = ProtocolHarness(forget_settled=True)
    task, a = h.publish_and_assign()
    h.execute(task, {v: GOOD for v in a.verifiers}, worker_output=GOOD)
    seen = len(h.state._seen)
    h.state.forget(task.cid)
    assert task.cid in h.state._seen  # it cannot be published again
    assert len(h.state._seen) < seen


def test_without_forget_settled_nothing_is_tracked():
    h = ProtocolHarness()
    task, a = h.publish_and_assign()
    h.execute(task, {v: GOOD for v in a.verifiers}, worker_output=GOOD)
    seen = set(h.state._seen)
    assert h.state.forget(task.cid)  # the record and rows go; the replay guard stays whole
    assert h.state._seen == seen
    with pytest.raises(ProtocolError, match="unknown task"):
        h.state.state_of(task.cid)  # the runtime reads a forgotten task from its ledger
