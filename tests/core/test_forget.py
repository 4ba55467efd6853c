"""AuthorityState.forget: a settled task leaves memory; objects about it stay refused."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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


def _settled_and_forgotten(h: ProtocolHarness, **kw: object):
    task, a = h.publish_and_assign(**kw)
    h.execute(task, {v: GOOD for v in a.verifiers}, worker_output=GOOD)
    assert h.state.forget(task.cid)
    return task


def test_a_forgotten_intent_leaves_the_guard_once_its_deadline_passes_and_stays_refused():
    h = ProtocolHarness(forget_settled=True)
    old = _settled_and_forgotten(h, deadline=h.now + 60_000)
    assert old.cid in h.state._seen  # before its deadline: guarded
    h.advance(61_000)
    h.feed(h.task())  # the next publication ages the guard out
    assert old.cid not in h.state._seen and not h.state._guarded_intents
    tables = h.state.books.tables()
    with pytest.raises(ProtocolError, match="deadline"):
        h.feed(old)  # past its deadline
    # the authority's clock steps back to just after the old task was made: its deadline is
    # ahead again and its creation within the skew window, but the horizon still refuses it
    h.now = old.created_at + 1_000
    with pytest.raises(ProtocolError, match="already seen pass"):
        h.feed(old)
    assert h.state.books.tables() == tables  # nothing changed


def test_the_guard_holds_the_intents_of_tasks_that_could_still_run_not_the_history():
    h = ProtocolHarness(forget_settled=True)
    for _ in range(30):
        _settled_and_forgotten(h, deadline=h.now + 20_000)
        h.advance(10_000)
    # each intent leaves the guard at the first publication after its deadline: at most the
    # last two or three (those whose deadline is not yet past) are held
    assert len(h.state._guarded_intents) <= 3
    held = {cid for _, cid in h.state._guarded_intents}
    intents = {cid for cid in h.state._seen if cid in held}
    assert intents == held


_STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("publish"), st.integers(5_000, 120_000)),
        st.tuples(st.just("advance"), st.integers(0, 90_000)),
        st.tuples(st.just("back"), st.integers(0, 90_000)),
    ),
    max_size=20,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=_STEPS)
def test_no_intent_is_accepted_twice_whatever_the_authority_clock_does(steps):
    """An adversarial schedule: tasks settled and forgotten, the authority's clock moved
    forward and back; after every step each old intent is replayed, at the clock's time and
    at a clock stepped back to just after the intent was made (its deadline ahead again, its
    creation within the skew window): none is ever taken again, and nothing changes."""
    h = ProtocolHarness(forget_settled=True)
    published = []
    for op, n in steps:
        if op == "publish":
            try:
                published.append(_settled_and_forgotten(h, deadline=h.now + n))
            except ProtocolError as exc:  # the clock went back below a deadline seen passing
                assert "already seen pass" in str(exc)
        elif op == "advance":
            h.advance(n)
        else:
            h.now = max(1, h.now - n)
        now, tables = h.now, h.state.books.tables()
        for old in published:
            for h.now in (now, old.created_at + 1_000):
                with pytest.raises(ProtocolError):
                    h.feed(old)
        h.now = now
        assert h.state.books.tables() == tables
        assert len(h.state._guarded_intents) <= len(published)
