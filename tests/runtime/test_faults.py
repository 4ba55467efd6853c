"""Faults the protocol absorbs (issue 22 item 2): a slow worker past its ETA, a silent
verifier, a peer that answers garbage, clocks skewed within and beyond the window.

Each mesh runs in-process on a :class:`ManualClock`: a timeout fires when the test advances
the clock; every wait is on a condition, with a timeout.
"""

from __future__ import annotations

import functools
from pathlib import Path

import polars as pl
import pytest

from meshbench.core.errors import MeshError
from meshbench.core.policy import MAX_CLOCK_SKEW_MS
from meshbench.runtime.clock import ManualClock
from meshbench.runtime.mesh import Mesh, TaskHandle
from meshbench.testing.faults import (
    GarbageAgent,
    SilentVerifier,
    SkewedAgent,
    SlowOnce,
    agent_factory,
    all_slow,
)

WASM = (Path(__file__).resolve().parents[2] / "datasets" / "wasm" / "sha256.wasm").read_bytes()
TASK_TIMEOUT_S = 10
VERIFICATION_TIMEOUT_S = 5
POLICY = {
    "scheduling": {"task_timeout": TASK_TIMEOUT_S},
    "verification_quorum": {
        "minimum_verifiers": 2,
        "verification_timeout": VERIFICATION_TIMEOUT_S,
    },
}


def mesh_with(tmp_path: Path, clock: ManualClock, workers: int, factory) -> Mesh:
    return Mesh.in_process(
        workers=workers, data_dir=tmp_path, policy=POLICY, clock=clock, agent_factory=factory
    )


def settle(handle: TaskHandle, clock: ManualClock, *, steps: int = 8) -> str:
    """Wait for ``handle`` to settle, advancing the clock by a verification timeout each
    time it waits on a timer (at most ``steps`` times); its outcome."""
    for _ in range(steps):
        if handle._record.done.wait(3):
            return handle.result(timeout=1).outcome
        clock.advance(VERIFICATION_TIMEOUT_S * 1000 + 1)
    return handle.result(timeout=5).outcome


def settled_once(mesh: Mesh, handle: TaskHandle) -> pl.DataFrame:
    """The task's payouts (one settlement: they sum to its fee) and the ledger verifies."""
    escrow = mesh.escrow().filter(pl.col("task_cid") == str(handle.cid))
    assert escrow.filter(pl.col("to_state").is_in(["Completed", "Failed"])).height == 1
    payouts = mesh.payouts().filter(pl.col("task_cid") == str(handle.cid))
    assert payouts["amount"].sum() == handle.task.fee
    report = mesh.node.verify_ledger()
    assert report is not None and report.ok, report.problems[:3]
    assert report.tokens_minted == report.tokens_held
    return payouts


def slashes_of(mesh: Mesh, did: str) -> list[tuple[str, int]]:
    frame = mesh.slashes()
    rows = frame.filter(pl.col("account") == did) if frame.height else frame
    return list(zip(rows["offence"].to_list(), rows["amount"].to_list(), strict=True))


def test_a_slow_worker_past_its_eta_is_replaced_and_its_late_result_refused(tmp_path):
    clock, gate = ManualClock(), SlowOnce(limit_s=30)
    with mesh_with(tmp_path, clock, 4, all_slow(gate)) as mesh:
        handle = mesh.publish(WASM, b"slow", fee=200, verifiers=2)
        assert gate.entered.wait(30), "the assigned worker never started"
        slow = gate.did
        clock.advance(TASK_TIMEOUT_S * 1000 + 1)  # its execution timeout
        assert settle(handle, clock) == "Accepted"
        assert handle.result().receipt.worker != slow
        gate.release()  # the slow worker's commitment arrives after the task has settled
        assert gate.finished.wait(30)
        mesh.node.call(lambda: None)  # the driver has taken what was queued by then
        payouts = settled_once(mesh, handle)  # still decided once
        # not paid as the worker (it may verify the new attempt: that it does on time)
        assert slow not in payouts.filter(pl.col("role") == "worker")["account"].to_list()
        assert slashes_of(mesh, slow) == [("no_show", 20)]  # 10 % of its 200 bond
        # its late commitment (once it lands) is refused with a typed error, nothing more
        assert all(isinstance(r.error, MeshError) for r in mesh.node.rejections)


def test_a_silent_verifier_is_slashed_as_the_policy_says_and_the_task_settles(tmp_path):
    clock = ManualClock()
    with mesh_with(tmp_path, clock, 3, agent_factory({0: SilentVerifier})) as mesh:
        silent = mesh.node.backend.agents
        silent_did = next(d for d, a in silent.items() if isinstance(a, SilentVerifier))
        handle = mesh.publish(WASM, b"silent", fee=200, verifiers=2)
        outcome = settle(handle, clock)
        row = mesh.node.task_row(handle.cid)  # settled: read from the ledger
        assert silent_did in row["verifiers"]  # drawn (it never offers to work)
        assert outcome in ("Accepted", "NoConsensus")
        payouts = settled_once(mesh, handle)
        assert silent_did not in payouts["account"].to_list()
        no_show = mesh.policy.penalties.no_show_percentage
        assert slashes_of(mesh, silent_did) == [("no_show", 200 * no_show // 100)]


def test_a_peer_answering_garbage_is_refused_with_typed_errors_and_changes_nothing(tmp_path):
    clock = ManualClock()
    with mesh_with(tmp_path, clock, 5, agent_factory({0: GarbageAgent})) as mesh:
        junk = next(d for d, a in mesh.node.backend.agents.items() if isinstance(a, GarbageAgent))
        handles = [mesh.publish(WASM, f"g{i}".encode(), fee=200, verifiers=2) for i in range(3)]
        for h in handles:
            assert settle(h, clock) in ("Accepted", "NoConsensus")
            assert junk not in settled_once(mesh, h)["account"].to_list()
        refused = mesh.node.rejections
        assert len(refused) >= 3  # at least its three offers
        assert all(isinstance(r.error, MeshError) for r in refused)
        assert junk not in mesh.offers()["worker"].to_list()  # no garbage reached the books


@pytest.mark.parametrize("skew_ms", [MAX_CLOCK_SKEW_MS // 2, -MAX_CLOCK_SKEW_MS // 2])
def test_a_worker_clock_skewed_within_the_window_takes_part(tmp_path, skew_ms):
    clock = ManualClock()
    skewed = functools.partial(SkewedAgent, skew_ms=skew_ms)
    with mesh_with(tmp_path, clock, 3, agent_factory({0: skewed})) as mesh:
        did = next(d for d, a in mesh.node.backend.agents.items() if isinstance(a, SkewedAgent))
        handles = [mesh.publish(WASM, f"s{i}".encode(), fee=200, verifiers=2) for i in range(2)]
        for h in handles:
            assert settle(h, clock) == "Accepted"
            settled_once(mesh, h)
        assert did in mesh.offers()["worker"].to_list()  # its offers were taken
        assert slashes_of(mesh, did) == []
        assert mesh.rejections().height == 0


def test_a_worker_clock_skewed_beyond_the_window_is_refused_and_the_task_goes_on(tmp_path):
    clock = ManualClock()
    skewed = functools.partial(SkewedAgent, skew_ms=MAX_CLOCK_SKEW_MS + 60_000)
    with mesh_with(tmp_path, clock, 4, agent_factory({0: skewed})) as mesh:
        did = next(d for d, a in mesh.node.backend.agents.items() if isinstance(a, SkewedAgent))
        # a deadline far enough that its own (fast) clock still offers
        handles = [
            mesh.publish(WASM, f"k{i}".encode(), fee=200, verifiers=2, deadline_s=600)
            for i in range(2)
        ]
        for h in handles:
            assert settle(h, clock) in ("Accepted", "NoConsensus")
            assert did not in settled_once(mesh, h)["account"].to_list()
        assert did not in mesh.offers()["worker"].to_list()  # none of its offers counted
        refused = mesh.rejections()
        offers = refused.filter(pl.col("what").str.starts_with("ComputeOffer"))
        assert offers.height == 2, refused
        assert refused["message"].str.contains("from the ledger authority's clock").all()
