"""A worker's commitments kept on disk (issue 22): its process is killed between committing and
revealing, the agent started again on the same state dir opens them exactly as before."""

from __future__ import annotations

import logging
import sqlite3
import stat
from dataclasses import dataclass
from pathlib import Path

import pytest

from meshbench.core.encoding import blob_cid
from meshbench.core.errors import ProtocolError
from meshbench.core.types import ExecutionSummary, TaskIntent, result_commitment
from meshbench.exec.plugins import ExecutionResult
from meshbench.runtime import commitments as store_module
from meshbench.runtime.agent import ANSWERS_KEPT, WorkerAgent
from meshbench.runtime.commitments import (
    ANSWERED_KEPT,
    DB_NAME,
    CommitmentStore,
    OpenCommitment,
)
from meshbench.testing.factories import T0, make_identity, make_task
from meshbench.testing.faults import HARDWARE

WASM = (Path(__file__).resolve().parents[2] / "datasets" / "wasm" / "sha256.wasm").read_bytes()
PUBLISHER = make_identity(3)


def _agent(state: Path, n: int = 1) -> WorkerAgent:
    """The agent of identity ``n`` in a (new) process, on the state dir ``state``."""
    store = CommitmentStore(state)
    return WorkerAgent(make_identity(n), "did:key:fed", HARDWARE, commitments=store)


def _task(nonce: int = 0, created_at: int = T0) -> TaskIntent:
    return make_task(PUBLISHER, wasm=WASM, data=b"x", nonce=nonce, created_at=created_at, sign=True)


def test_a_restarted_worker_reveals_its_commitment_and_repeats_its_answer(tmp_path: Path) -> None:
    task = _task()
    commitment = _agent(tmp_path).execute(task, WASM, b"x", 1, role="worker")  # then killed
    restarted = _agent(tmp_path)
    receipt, output = restarted.reveal(task.cid, 2)
    assert receipt.result_commitment == commitment.commitment  # it opens the commitment
    assert receipt.output_cid == blob_cid(output) and output
    again = _agent(tmp_path)  # killed after answering, before the authority recorded it
    assert again.reveal(task.cid, 3) == (receipt, output)  # the same signed receipt
    assert again.reveal(task.cid, 4)[0].cid == receipt.cid


def test_a_restarted_verifier_gives_its_verdict(tmp_path: Path) -> None:
    task = _task()
    worker = WorkerAgent(make_identity(1), "did:key:fed", HARDWARE)
    worker.execute(task, WASM, b"x", 1, role="worker")
    own = _agent(tmp_path, 2).execute(task, WASM, b"x", 1, role="verifier")
    receipt, _ = worker.reveal(task.cid, 2)
    verdict = _agent(tmp_path, 2).verdict(task.cid, receipt, 3)
    assert verdict.approved and verdict.verifier == make_identity(2).did
    assert verdict.output_cid is not None  # and it opens the verifier's own commitment
    opened = result_commitment(task.cid, verdict.verifier, verdict.output_cid, verdict.salt)
    assert opened == own.commitment
    assert _agent(tmp_path, 2).verdict(task.cid, receipt, 9).cid == verdict.cid


def _rows(state: Path) -> list[tuple[str, int]]:
    with sqlite3.connect(state / DB_NAME) as db:
        return db.execute("SELECT task, answered FROM entries ORDER BY task").fetchall()


def test_the_state_dir_is_private_and_entries_go_when_forgotten(tmp_path: Path) -> None:
    state = tmp_path / "state"
    agent = _agent(state)
    task = _task()
    agent.execute(task, WASM, b"x", 1, role="worker")
    assert _rows(state) == [(str(task.cid), 0)]
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    for f in state.iterdir():  # the database, its WAL and shared memory
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f.name
    agent.forget(task.cid)
    assert _rows(state) == []
    with pytest.raises(ProtocolError):  # nothing left to open after a restart either
        _agent(state).reveal(task.cid, 2)


def test_a_damaged_or_foreign_entry_is_ignored_with_a_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    good, torn, moved = _task(0), _task(1), _task(2)
    agent = _agent(tmp_path)
    for t in (good, torn, moved):
        agent.execute(t, WASM, b"x", 1, role="worker")
    with sqlite3.connect(tmp_path / DB_NAME) as db:
        db.execute(
            "UPDATE entries SET body = substr(body, 1, length(body) - 7) WHERE task = ?",
            (str(torn.cid),),
        )  # damaged: its hash no longer matches
        db.execute(
            "UPDATE entries SET task = 'elsewhere' WHERE task = ?", (str(moved.cid),)
        )  # filed under another task than the one it opens
    with caplog.at_level(logging.WARNING, logger="meshbench.commitments"):
        restarted = _agent(tmp_path)
    assert restarted.commitments is not None and restarted.commitments.ignored == 2
    assert sum("ignored the commitment entry" in r.message for r in caplog.records) == 2
    assert _rows(tmp_path) == [(str(good.cid), 0)]  # the bad ones removed
    restarted.reveal(good.cid, 2)  # the good one still opens
    for t in (torn, moved):
        with pytest.raises(ProtocolError):
            restarted.reveal(t.cid, 2)


def test_a_database_that_does_not_open_is_set_aside_not_a_crash(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / DB_NAME).write_bytes(b"garbage, not SQLite" * 100)
    with caplog.at_level(logging.WARNING, logger="meshbench.commitments"):
        agent = _agent(tmp_path)
    assert agent.commitments is not None and agent.commitments.ignored == 1
    assert any("set aside" in r.message for r in caplog.records)
    assert len(list(tmp_path.glob(f"{DB_NAME}.*.corrupt"))) == 1
    task = _task()
    agent.execute(task, WASM, b"x", 1, role="worker")  # and it keeps commitments again
    assert _agent(tmp_path).reveal(task.cid, 2)[0].worker == agent.did


def test_answered_entries_are_bounded_and_stale_open_ones_dropped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent = _agent(tmp_path)
    tasks = [_task(i) for i in range(ANSWERED_KEPT + store_module.PRUNE_BATCH + 5)]
    given = {}
    for t in tasks:
        agent.execute(t, WASM, b"x", 1, role="worker")
        given[t.cid] = agent.reveal(t.cid, 2)
    answered = len(_rows(tmp_path))  # the last answers only (pruned a batch at a time)
    assert ANSWERED_KEPT <= answered <= ANSWERED_KEPT + store_module.PRUNE_BATCH
    # memory keeps the last few answers; one older than those still comes from disk
    older = tasks[-ANSWERS_KEPT - 10].cid
    assert agent.reveal(older, 9) == given[older]
    with pytest.raises(ProtocolError):  # past the bound: forgotten
        agent.reveal(tasks[0].cid, 9)
    restarted = _agent(tmp_path)
    assert restarted.reveal(tasks[-1].cid, 5) == agent.reveal(tasks[-1].cid, 5)
    # open entries: at most OPEN_KEPT, and none long past its task's deadline
    monkeypatch.setattr(store_module, "OPEN_KEPT", 3)
    for i in range(5):
        restarted.execute(_task(1000 + i), WASM, b"x", 1, role="worker")
    assert len(restarted.commitments or ()) == answered + 3 == len(_rows(tmp_path))
    late = tasks[0].deadline + store_module.STALE_AFTER_MS + 1
    fresh = [_task(2000 + i, created_at=late) for i in range(3)]
    for t in fresh:
        restarted.execute(t, WASM, b"x", late, role="worker")
    opened, _ = CommitmentStore(tmp_path).load()
    assert {o.task_cid for o in opened} == {t.cid for t in fresh}


@dataclass(frozen=True, kw_only=True)
class _ToleranceResult(ExecutionResult):
    rtol: float = 0.0
    kernel: str = ""


def test_a_content_validators_judging_info_survives(tmp_path: Path) -> None:
    summary = ExecutionSummary(fuel_used=5, peak_memory_bytes=0, wall_time_us=1, engine="e")
    mine = _ToleranceResult(
        output=b"1.0", stdout=b"", stderr=b"", exit_code=0, summary=summary, rtol=0.5, kernel="k"
    )
    task = _task()
    entry = OpenCommitment(
        task_cid=task.cid, role="verifier", output=b"1.0", summary=summary, exit_code=0,
        deadline=task.deadline, validator="tolerance", judging=mine,
    )  # fmt: skip
    CommitmentStore(tmp_path).committed(entry, 1)
    (back,), _ = CommitmentStore(tmp_path).load()
    assert back.validator == "tolerance" and back.judging is not None
    assert back.judging.output_cid == mine.output_cid and back.judging.summary == summary
    assert back.judging.rtol == 0.5 and back.judging.kernel == "k"  # type: ignore[union-attr]


def test_the_agent_bench_compares_memory_and_store_side_by_side() -> None:
    from meshbench.bench.agent import run

    r = run(quick=True)
    assert r["cycles"] == 150
    assert r["memory_cycles_per_s"] > 0 and r["store_cycles_per_s"] > 0
    assert r["store_over_memory"] > 0 and r["store_fsync_over_memory"] > 0
