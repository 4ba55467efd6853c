"""Plots people can read: the reputation trajectory's time axis is clock time in UTC."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl

from meshbench.workbench import plots


def test_reputation_time_axis_reads_as_clock_time() -> None:
    t0 = datetime(2026, 12, 1, 8, 30, tzinfo=UTC)
    history = pl.DataFrame(
        {
            "peer": ["did:key:z6MkA", "did:key:z6MkB"] * 3,
            "time": [t0 + timedelta(milliseconds=40 * i) for i in range(6)],
            "score": [0.5, 0.5, 0.6, 0.4, 0.7, 0.3],
        }
    )
    x = plots.reputation_trajectories(history).to_dict()["encoding"]["x"]
    assert x["type"] == "temporal" and x["title"] == "time (UTC)"
    assert x["scale"]["type"] == "utc"
    assert x["axis"]["format"] == "%H:%M:%S" and x["axis"]["labelOverlap"] is True
