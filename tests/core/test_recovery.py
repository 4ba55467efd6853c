"""A restarted ledger authority rebuilds its state from the ledger and finishes every task."""

from __future__ import annotations

import pytest

from meshbench.core.errors import ProtocolError
from meshbench.core.events import StakeSlashed
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


def _restored(h: ProtocolHarness, now: int, alive: int | None = None) -> list:
    """The authority restarted at ``now`` (last seen running at ``alive``): its commands,
    with the downtime it journals kept in the harness's history."""
    h.state = AuthorityState(h.authority, policies=h.policies)
    h.state.replay(h.history, now, since=alive)
    cmds = h.state.reissue(now)
    h.history += h.state.take_journal()
    h.now = now
    return cmds


def _timer(cmds: list, stage: str) -> ScheduleTimeout:
    """The one timer of ``stage`` in ``cmds`` (the old one is never scheduled as well)."""
    (t,) = [c for c in cmds if isinstance(c, ScheduleTimeout) and c.stage == stage]
    return t


def test_the_time_the_authority_was_down_does_not_count_against_a_party():
    """A worker asked to execute, then the authority dies for longer than the timeout: the
    worker (asked again) still has the rest of its timeout, counted in uptime."""
    h = ProtocolHarness()
    task, _a = h.publish_and_assign()
    set_at = h.now
    timeout = h.state.policy(task.federation).scheduling.task_timeout * 1000
    token = h.state.tasks[task.cid].timers["execution"]
    alive = set_at + timeout // 4  # up for a quarter of the timeout, then down
    cmds = _restored(h, set_at + 3 * timeout, alive)
    assert any(isinstance(c, RunExecution) for c in cmds)  # asked again
    t = _timer(cmds, "execution")
    assert t.token == token and t.at == h.now + timeout - timeout // 4


def test_restarts_in_a_row_give_a_party_its_timeout_of_uptime_and_a_share_after_each_ask():
    """Restarts in a row neither take a party's time away nor push its timer back beyond
    the downtime: it fires once the authority ran for the timeout (in all), and never less
    than REASK_SHARE of the timeout after the party was last asked again."""
    from meshbench.core.protocol import REASK_SHARE

    h = ProtocolHarness()
    task, _a = h.publish_and_assign()
    timeout = h.state.policy(task.federation).scheduling.task_timeout * 1000
    set_at = h.now
    up = int(timeout * 0.3)
    # killed `up` ms after each start, down for 2 timeouts each time
    t1 = _timer(_restored(h, set_at + up + 2 * timeout, set_at + up), "execution")
    assert t1.at == h.now + timeout - up  # 0.7 left
    start = h.now
    t2 = _timer(_restored(h, start + up + 2 * timeout, start + up), "execution")
    assert t2.at == h.now + int(timeout * REASK_SHARE)  # 0.4 left, but asked again: 0.5
    start = h.now
    t3 = _timer(_restored(h, start + up + 2 * timeout, start + up), "execution")
    assert t3.at == h.now + int(timeout * REASK_SHARE)  # 0.1 left: the share again
    h.advance(t3.at - h.now)
    h.fire(task, "execution")  # it fires (the worker never answered): slashed, offers again
    assert h.state.state_of(task.cid) == "Offered"
    assert [s.offence for s in h.appended(StakeSlashed)] == ["no_show"]


def test_suspended_due_counts_only_uptime():
    from meshbench.core.protocol import suspended_due

    assert suspended_due(0, 10, []) == 10
    assert suspended_due(0, 10, [(4, 20)]) == 26  # 4 before, 6 after
    assert suspended_due(0, 10, [(12, 20)]) == 10  # down after it was due
    assert suspended_due(5, 15, [(0, 3)]) == 15  # down before it was set
    assert suspended_due(0, 10, [(2, 4), (6, 8)]) == 14
    assert suspended_due(0, 10, [(6, 8), (2, 4)]) == 14  # order does not matter
