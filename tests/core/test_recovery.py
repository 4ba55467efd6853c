"""A restarted ledger authority rebuilds its state from the ledger and finishes every task."""

from __future__ import annotations

import pytest

from meshbench.core.errors import ProtocolError
from meshbench.core.protocol import (
    AppendToLedger,
    AuthorityState,
    RequestReveal,
    RequestVerdict,
    RunExecution,
    RunVerification,
    ScheduleTimeout,
)
from meshbench.testing.protocol import ProtocolHarness, output_cid

GOOD = output_cid("good")


def ledger_events(h: ProtocolHarness) -> list:
    return [e for c in h.log if isinstance(c, AppendToLedger) for e in c.events]


def ledger_history(h: ProtocolHarness) -> list:
    """What the node's ledger holds: the journalled stimuli and the events, in order."""
    return list(h.history)


def restart(h: ProtocolHarness) -> list:
    """Replace h.state by a fresh authority restored from the ledger's events."""
    old = h.state
    h.state = AuthorityState(h.authority, policies=h.policies)
    cmds = h.state.restore(ledger_history(h), h.now)
    assert h.state.books.tables() == old.books.tables()
    for cid, rec in old.tasks.items():
        assert h.state.tasks[cid].state == rec.state
        assert h.state.tasks[cid].verifiers == rec.verifiers
    return cmds


@pytest.mark.parametrize("cut", ["offered", "assigned", "worker_committed", "revealed", "voted"])
def test_restart_at_any_point_resumes_to_settlement(cut):
    h = ProtocolHarness()
    task = h.task()
    h.feed(task)
    h.feed(h.offer(task, h.peers[0]))
    if cut == "offered":
        cmds = restart(h)
        assert any(isinstance(c, ScheduleTimeout) and c.stage == "offers" for c in cmds)
        h.advance(5_000)
        h.fire(task, "offers")
    else:
        h.advance(5_000)
        h.fire(task, "offers")
    rec = h.state.tasks[task.cid]
    a = rec.assignment
    if cut == "assigned":
        cmds = restart(h)
        assert any(isinstance(c, RunExecution) for c in cmds)
        assert {c.verifier for c in cmds if isinstance(c, RunVerification)} == set(a.verifiers)
    h.feed(h.commit(task, a.worker, GOOD))
    if cut == "worker_committed":
        restart(h)
    for v in a.verifiers:
        h.feed(h.commit(task, v, GOOD))
    receipt = h.receipt(task, a.worker, GOOD)
    if cut == "revealed":
        cmds = restart(h)
        assert any(isinstance(c, RequestReveal) for c in cmds)
    h.feed(receipt)
    h.feed(h.verdict(task, a.verifiers[0], GOOD, receipt))
    if cut == "voted":
        cmds = restart(h)
        assert {c.verifier for c in cmds if isinstance(c, RequestVerdict)} == set(a.verifiers[1:])
    for v in a.verifiers[1:]:
        h.feed(h.verdict(task, v, GOOD, receipt))
    assert h.state.books.task(task.cid)["outcome"] == "Accepted"
    h.state.books.check_conservation()


def test_restart_keeps_replay_protection():
    h = ProtocolHarness()
    task = h.task()
    h.feed(task)
    restart(h)
    with pytest.raises(ProtocolError):
        h.feed(task)


def test_failed_worker_without_other_offers_reopens_offers_and_survives_restart():
    h = ProtocolHarness()
    task = h.task()
    h.feed(task)
    h.feed(h.offer(task, h.peers[0]))
    h.advance(5_000)
    h.fire(task, "offers")
    h.advance(30 * 60 * 1000)
    cmds = h.fire(task, "execution")  # the only worker never showed up
    assert h.state.state_of(task.cid) == "Offered"
    assert h.state.load == {}
    assert any(getattr(c, "topic", None) == "tasks" for c in cmds)  # asks for offers again
    restart(h)
    h.feed(h.offer(task, h.peers[1]))
    h.advance(5_000)
    h.fire(task, "offers")
    rec = h.state.tasks[task.cid]
    assert rec.state == "Assigned" and rec.assignment.worker == h.peers[1].did
    assert rec.attempt == 1


def test_restarts_in_a_row_push_an_overdue_timer_back_at_most_one_timeout():
    from meshbench.core.protocol import ScheduleTimeout

    h = ProtocolHarness()
    task, _a = h.publish_and_assign()
    due = h.state.tasks[task.cid].timers["execution"]
    timeout = h.state.policy(task.federation).scheduling.task_timeout * 1000
    first_at = None
    for extra in (1_000, 5_000, timeout + 10_000):  # restarts after the timer was due
        restored = AuthorityState(h.authority, policies=h.policies)
        now = h.now + timeout + extra
        cmds = restored.restore(h.history, now)
        (t,) = [c for c in cmds if isinstance(c, ScheduleTimeout) and c.stage == "execution"]
        assert t.token == due
        first_at = first_at or t.at
        assert t.at == max(now, first_at)  # never later than one timeout past its time
