"""The crash suite's reduced form: the authority process SIGKILLed at random moments (and a
Dask worker between), on a Dask cluster of worker processes, under a stream of publications.

The full form (100 kills) is ``meshbench bench reliability`` (``make soak``).
"""

from __future__ import annotations

import pytest

from meshbench.bench.reliability import CRASH_POLICY, run_crash_suite

#: the longest a task in flight at a kill may take once the authority is back: one offer
#: window, one execution timeout and two verification rounds (CRASH_POLICY), plus slack
PROTOCOL_BOUND_S = (
    CRASH_POLICY["selection"]["offer_window_ms"] / 1000
    + CRASH_POLICY["scheduling"]["task_timeout"]
    + 2 * CRASH_POLICY["verification_quorum"]["verification_timeout"]
    + 4
)


#: the seed draws: the authority up 2.6 s, killed; up 1.4 s with a worker killed first
SEED = 0


@pytest.mark.timeout(120)
def test_sigkilled_authority_loses_nothing_and_resumes_every_task(tmp_path):
    r = run_crash_suite(
        kills=2, workers=3, seed=SEED, max_up_s=3, data_dir=tmp_path, time_limit_s=90
    )
    print(r)  # the figures, shown when an assertion fails
    assert r["kills"] == 2 and r["worker_kills"] == 1  # SEED: a worker dies in round 2
    assert r["checks_failed"] == 0  # verify, rebuild, tokens, blobs after each kill
    assert r["final_check_ok"]
    assert r["tokens_minted"] == r["tokens_held"] > 0
    # every task decided by its verifiers (a worker lost mid-dispute may leave too few to
    # agree: NoConsensus, refunded), none expired
    assert r["tasks"] > 0 and set(r["outcomes"]) <= {"Accepted", "NoConsensus"}
    assert r["outcomes"].get("Accepted", 0) >= r["tasks"] - 1
    assert r["open_after_drain"] == 0
    assert r["tasks_waited_for_deadline"] == 0
    assert r["in_flight_at_kills"] > 0  # some task was mid-protocol when the authority died
    assert r["ready_to_in_flight_settled_s"]["max"] < PROTOCOL_BOUND_S
