"""The crash suite over libp2p, reduced: worker peers (separate processes on 127.0.0.1)
SIGKILLed at random moments under a stream of publications and restarted with the same key
and stake; they rejoin, nothing is lost, every task settles within its protocol timeouts.

About 45 s here (most of it starting and bonding the peers, and each restarted process's
imports); the full form (100 kills) is ``meshbench bench reliability --transport p2p``.
"""

from __future__ import annotations

import pytest

from meshbench.bench.reliability_p2p import P2P_CRASH_POLICY, run_p2p_crash_suite

#: the longest a task in flight at a kill may take to settle: one offer window, one
#: execution timeout, two verification rounds (P2P_CRASH_POLICY), a restart, plus slack
PROTOCOL_BOUND_S = (
    P2P_CRASH_POLICY["selection"]["offer_window_ms"] / 1000
    + P2P_CRASH_POLICY["scheduling"]["task_timeout"]
    + 2 * P2P_CRASH_POLICY["verification_quorum"]["verification_timeout"]
    + 10
)


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_sigkilled_worker_peers_rejoin_and_every_task_settles(tmp_path) -> None:
    r = run_p2p_crash_suite(kills=2, workers=3, seed=0, max_up_s=2, data_dir=tmp_path)
    print(r)  # the figures, shown when an assertion fails
    assert r["kills"] == 2
    assert r["checks_failed"] == 0  # the live ledger verified, tokens conserved, after each
    assert r["final_check_ok"]  # verify, rebuild, tokens, blobs with the authority stopped
    assert r["tokens_minted"] == r["tokens_held"] > 0
    assert r["publish_errors"] == []
    assert r["tasks"] > 0 and set(r["outcomes"]) <= {"Accepted", "NoConsensus"}
    assert r["open_after_drain"] == 0
    assert r["tasks_waited_for_deadline"] == 0
    assert r["bonds_per_peer_max"] == 1  # the restarted peers kept their stake: no 2nd bond
    assert r["slashes_made_good"] <= sum(r["slashes"].values())  # at most once a slash
    assert r["bonded_at_end"] >= 2  # (a no-show slash may take one below the minimum stake)
    assert r["kill_to_rejoined_s"]["max"] < 60
    if r["in_flight_at_kills"]:
        assert r["kill_to_in_flight_settled_s"]["max"] < PROTOCOL_BOUND_S
