"""A Dask worker lost at a chosen point of the protocol (issue 22 item 2), deterministically.

On a ``LocalCluster`` of worker processes every agent is armed (:func:`die_once_at`): the
first to reach the point SIGKILLs its own process there, its nanny restarts it (same key,
its commitments kept on disk next to its key). The points: the assigned worker before it
commits (mid-execution), the worker after it committed and before it revealed, and a
verifier after it committed and before its verdict (mid-verification). Each time the task
is decided by its protocol timeouts, well before its deadline. A worker lost before
committing has nothing to open: its execution times out, it is replaced, unpaid and slashed
as a no-show. A worker or verifier lost after committing comes back, is asked again (the
backend holds the failed call until its key is served again) and answers from what it kept:
the task is accepted with the restarted party paid and nobody slashed. Tokens are conserved;
the ledger verifies. About 60 s (one cluster of five workers for the three points).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from meshbench.core.events import TaskExpired
from meshbench.runtime.mesh import Mesh
from meshbench.testing.faults import die_once_at, died

WASM = (Path(__file__).resolve().parents[2] / "datasets" / "wasm" / "sha256.wasm").read_bytes()
TASK_TIMEOUT_S = 6
#: longer than a worker's restart by its nanny on a loaded machine (a few seconds): a party
#: lost after committing is back in time to answer
VERIFICATION_TIMEOUT_S = 20
OFFER_WINDOW_MS = 400
POLICY = {
    "scheduling": {"task_timeout": TASK_TIMEOUT_S},
    "verification_quorum": {
        "minimum_verifiers": 2,
        "verification_timeout": VERIFICATION_TIMEOUT_S,
    },
    "selection": {"offer_window_ms": OFFER_WINDOW_MS},
}
DEADLINE_S = 120
#: one offer window, one execution timeout, two verification rounds, and slack for a loaded
#: machine: a task that waited for its deadline (two minutes) is far beyond it
PROTOCOL_BOUND_S = OFFER_WINDOW_MS / 1000 + TASK_TIMEOUT_S + 2 * VERIFICATION_TIMEOUT_S + 10


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    # five workers: each test loses one (slashed below the minimum stake, it draws no more),
    # and the last still needs a worker and two verifiers
    with Mesh.local(
        workers=5, data_dir=tmp_path_factory.mktemp("lost"), policy=POLICY, memory_limit="1GiB"
    ) as m:
        yield m


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize("point", ["execute", "reveal", "verdict"])
def test_a_worker_lost_at_a_chosen_point_is_replaced_and_the_task_settles(
    mesh: Mesh, tmp_path: Path, point: str
) -> None:
    marker = tmp_path / "died"
    mesh.client.run(die_once_at, point, str(marker))
    started = time.monotonic()
    handle = mesh.publish(
        WASM, f"lost at {point}".encode(), fee=200, verifiers=2, deadline_s=DEADLINE_S
    )
    result = handle.result(timeout=PROTOCOL_BOUND_S + 30)
    took = time.monotonic() - started
    lost = died(marker)
    assert lost is not None, f"no worker reached {point}"
    assert took < PROTOCOL_BOUND_S, (took, result.outcome)
    assert result.outcome == "Accepted", mesh.rejections()
    expired = [
        e for e in mesh.node.ledger_events()
        if isinstance(e, TaskExpired) and e.task_cid == handle.cid
    ]  # fmt: skip
    payouts = mesh.payouts().filter(pl.col("task_cid") == str(handle.cid))
    assert payouts["amount"].sum() == handle.task.fee  # settled once, the fee paid out
    slashes = mesh.slashes().filter(pl.col("task_cid") == str(handle.cid))
    if point == "execute":  # nothing committed: replaced, unpaid, a no-show
        assert result.receipt.worker != lost
        assert lost not in {v.verifier for v in result.verifications}
        assert [e.stage for e in expired] == ["execution"]
        assert lost not in payouts["account"].to_list()
        assert "no_show" in slashes.filter(pl.col("account") == lost)["offence"].to_list()
    else:  # restarted, asked again, it opened its commitment from disk: paid, not slashed
        party = result.receipt.worker if point == "reveal" else None
        verifiers = {v.verifier for v in result.verifications}
        assert lost == party or (point == "verdict" and lost in verifiers)
        assert expired == [] and slashes.is_empty(), slashes
        assert lost in payouts["account"].to_list()
        assert mesh.node.backend.resent >= 1  # the failed call was held and sent again
    report = mesh.node.verify_ledger()
    assert report is not None and report.ok, report.problems[:3]
    assert report.tokens_minted == report.tokens_held
    backend = mesh.node.backend
    live = backend._live_addresses()
    assert {address for _, address in backend._scattered} <= live  # the lost one's data gone
    print(f"lost at {point}: {result.outcome} in {took:.1f} s ({len(expired)} timeouts)")
