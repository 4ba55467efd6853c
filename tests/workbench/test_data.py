"""Data helpers and plots over a real (in-process) mesh and a small simulation."""

from __future__ import annotations

import polars as pl
import pytest

import meshbench
from meshbench.runtime.mesh import Mesh
from meshbench.workbench import (
    error_rate_vs_redundancy,
    export_parquet,
    fee_market,
    plots,
    reputation_history,
    rewards_per_peer,
    simulate,
    task_latency,
)

HELLO = "datasets/wasm/hello.wasm"


@pytest.fixture(scope="module")
def mesh(tmp_path_factory):
    # once caught, the cheater no longer verifies: the other three are a worker and two
    policy = {"verification_quorum": {"minimum_verifiers": 2}}
    with Mesh.in_process(
        workers=4, behaviours={3: "wrong"}, data_dir=tmp_path_factory.mktemp("m"), policy=policy
    ) as m:
        for h in [m.publish(wasm=HELLO, input=f"t{i}".encode(), fee=100) for i in range(6)]:
            h.result(timeout=60)
        yield m


def test_rewards_per_peer_adds_up_to_the_payouts(mesh):
    payouts = mesh.payouts()
    r = rewards_per_peer(payouts)
    assert r.columns[0] == "account" and {"worker", "verifier", "total", "tasks"} <= set(r.columns)
    assert r["total"].sum() + r["refund"].sum() + r["penalty"].sum() == payouts["amount"].sum()
    assert r["total"].to_list() == sorted(r["total"].to_list(), reverse=True)


def test_reputation_history_ends_at_the_ledgers_reputation(mesh):
    hist = reputation_history(mesh)
    assert hist.schema["time"] == pl.Datetime("ms", "UTC")
    last = hist.group_by("peer").agg(pl.col("score").last()).sort("peer")
    now = mesh.reputation().select("peer", "score").sort("peer")
    assert last.equals(now)
    assert reputation_history(mesh.node.ledger_path).equals(hist)


def test_fee_market_and_latency(mesh):
    market = fee_market(mesh.offers(), mesh.tasks())
    assert market.height == mesh.tasks().height
    assert (market["min_cost"] <= market["accepted_cost"]).all()
    assert (market["accepted_cost"] <= market["fee"]).all()
    lat = task_latency(mesh.tasks())
    assert lat.height == 6 and (lat["latency_s"] > 0).all()


def test_open_ledger_and_parquet_round_trip(mesh, tmp_path):
    ledger = meshbench.open_ledger(mesh.node.ledger_path)
    paths = export_parquet(ledger, tmp_path)
    assert set(paths) == {"events", "tasks", "offers", "receipts", "escrow", "payouts",
                          "reputation", "balances"}  # fmt: skip
    for name, path in paths.items():
        assert pl.read_parquet(path).equals(getattr(ledger, name)()), name


def test_simulated_run_as_frames():
    run = simulate(tasks=80, workers=16, malicious=0.25, faulty=0.25, seed=3)
    assert run.tasks.height == 80 == run.report["tasks"]
    accepted = run.tasks.filter(outcome="Accepted").height
    assert accepted == run.report["accepted"]
    assert run.tasks.filter(pl.col("correct").not_() & (pl.col("outcome") == "Accepted")).height \
        == run.report["wrong_accepted"]  # fmt: skip
    by_class = run.peers.group_by("peer_class").agg(pl.col("score").mean())
    scores = dict(by_class.iter_rows())
    assert scores["honest"] > scores["colluding"]
    assert run.offers["selected"].sum() >= accepted
    assert run.payouts["amount"].sum() == run.tasks["fee"].sum()  # every fee paid out exactly


def test_error_rate_falls_with_redundancy():
    frame = error_rate_vs_redundancy((1, 3), tasks=300, workers=30, malicious=0.3, seed=1)
    rates = dict(zip(frame["verifiers"], frame["wrong_accept_rate"], strict=True))
    assert rates[1] > rates[3] == 0.0
    assert frame["executions_per_task"][0] < frame["executions_per_task"][1]
    with pytest.raises(ValueError, match="at least 1"):
        error_rate_vs_redundancy((0,))


def test_charts_build_and_render_to_png(mesh, tmp_path):
    charts = [
        plots.reward_distribution(mesh.payouts()),
        plots.reputation_trajectories(reputation_history(mesh)),
        plots.task_latency(task_latency(mesh.tasks())),
        plots.fee_market(fee_market(mesh.offers(), mesh.tasks())),
        plots.error_rate_vs_redundancy(
            pl.DataFrame(
                {
                    "verifiers": [0, 3],
                    "wrong_accept_rate": [0.3, 0.0],
                    "binomial_bound": [0.3, 0.01],
                }
            )
        ),
    ]
    for chart in charts:
        assert chart.to_dict()["$schema"].startswith("https://vega.github.io/schema/vega-lite")
    png = plots.save_png(charts[0], tmp_path / "rewards.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_recorded_trace_opens_offline():
    from pathlib import Path

    from meshbench.workbench import open_trace
    from meshbench.workbench.feed import MeshFeed

    root = Path(__file__).resolve().parents[2]
    ledger = open_trace(root / "datasets" / "traces" / "sim-300-tasks.sqlite.gz")
    tasks = ledger.tasks()
    assert tasks.height == 300
    assert ledger.payouts()["amount"].sum() == tasks["fee"].sum()
    assert ledger.reputation().height == 20
    hist = reputation_history(ledger)
    assert hist["peer"].n_unique() == 20
    feed = MeshFeed.from_ledger(ledger.path)
    assert feed.errors == [] and len(feed.tasks) == 300
