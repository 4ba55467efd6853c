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


@pytest.mark.timeout(120)
def test_a_nanny_that_closed_for_good_is_started_again_and_counted():
    """Dask closes a nanny whose worker dies while it is still starting (it does not
    restart it: dask/distributed#6427); a SIGKILL at a random moment can hit that window,
    and the cluster then runs a worker short. The suite starts such a nanny again (an
    operator's supervisor would) and says how many it did."""
    from distributed import Client, LocalCluster

    from meshbench.bench.reliability import _bring_back_closed_nannies

    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster, Client(cluster) as client:  # fmt: skip
        assert _bring_back_closed_nannies(cluster) == 0  # none closed: nothing done
        name, nanny = next(iter(cluster.workers.items()))
        cluster.sync(nanny.close)
        assert str(cluster.workers[name].status) == "Status.closed"
        assert _bring_back_closed_nannies(cluster) == 1
        client.wait_for_workers(2, timeout=60)
        assert str(cluster.workers[name].status) == "Status.running"
