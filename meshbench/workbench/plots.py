"""Altair charts of the workbench frames (Altair reads Polars frames directly).

Each function takes the frame named in its docstring and returns an ``alt.Chart``; a chart
renders in Jupyter and ``save_png(chart, path)`` writes a static PNG without a browser
(``vl-convert``), which is how the README's figure is made.
"""

from __future__ import annotations

import os
from pathlib import Path

import altair as alt
import polars as pl

__all__ = [
    "audit_outcomes",
    "error_rate_vs_redundancy",
    "fee_market",
    "price_of_trust",
    "reputation_trajectories",
    "reward_distribution",
    "save_png",
    "task_latency",
]


def _short(frame: pl.DataFrame, col: str, out: str = "peer_label") -> pl.DataFrame:
    """A short label for DIDs (their last 8 characters) so legends stay readable."""
    return frame.with_columns(pl.concat_str([pl.lit("…"), pl.col(col).str.slice(-8)]).alias(out))


def reward_distribution(payouts: pl.DataFrame, *, top: int = 30) -> alt.Chart:
    """Tokens earned per account, stacked by role (``mesh.payouts()``; refunds left out)."""
    earned = payouts.filter(pl.col("role") != "refund")
    totals = earned.group_by("account").agg(total=pl.col("amount").sum())
    keep = totals.sort("total", descending=True).head(top)["account"]
    data = _short(earned.filter(pl.col("account").is_in(keep.implode())), "account")
    data = data.group_by("peer_label", "role").agg(amount=pl.col("amount").sum())
    return (
        alt.Chart(data, title="Rewards per peer")
        .mark_bar()
        .encode(
            x=alt.X("peer_label:N", sort="-y", title="peer"),
            y=alt.Y("sum(amount):Q", title="tokens"),
            color=alt.Color("role:N"),
            tooltip=["peer_label", "role", "amount"],
        )
    )


def reputation_trajectories(history: pl.DataFrame, *, color: str = "peer_label") -> alt.Chart:
    """Reputation score over time, one line per peer (``reputation_history(...)``).

    ``color="peer_class"`` colours a simulated run's peers by behaviour instead.
    """
    data = _short(history, "peer")
    return (
        alt.Chart(data, title="Reputation over time")
        .mark_line(interpolate="step-after", opacity=0.8)
        .encode(
            # clock time to the second, in UTC, few enough labels to read (a run often
            # lasts seconds: the default labels were milliseconds on top of each other)
            x=alt.X(
                "time:T",
                title="time (UTC)",
                scale=alt.Scale(type="utc"),
                axis=alt.Axis(format="%H:%M:%S", labelAngle=-30, labelOverlap=True, tickCount=6),
            ),
            y=alt.Y("score:Q", scale=alt.Scale(domain=[0, 1]), title="reputation"),
            color=alt.Color(f"{color}:N"),
            detail="peer:N",
            tooltip=["peer_label", "score", "time"],
        )
    )


def task_latency(latency: pl.DataFrame) -> alt.Chart:
    """Histogram of publish-to-settlement latency by outcome (``task_latency(tasks)``)."""
    return (
        alt.Chart(latency, title="Task latency")
        .mark_bar(opacity=0.8)
        .encode(
            x=alt.X("latency_s:Q", bin=alt.Bin(maxbins=30), title="seconds to settle"),
            y=alt.Y("count():Q", title="tasks"),
            color=alt.Color("outcome:N"),
        )
    )


def fee_market(market: pl.DataFrame) -> alt.Chart:
    """Offered cost range and accepted cost per task (``fee_market(offers, tasks)``)."""
    data = market.with_row_index("task").drop_nulls("min_cost")
    base = alt.Chart(data, title="Fee market: offers vs accepted cost").encode(
        x=alt.X("task:Q", title="task (publication order)")
    )
    band = base.mark_area(opacity=0.25).encode(
        y=alt.Y("min_cost:Q", title="tokens"), y2="max_cost:Q"
    )
    accepted = base.mark_line(color="#137333").encode(y="accepted_cost:Q")
    fee = base.mark_line(color="#b00020", strokeDash=[4, 2]).encode(y="fee:Q")
    return alt.layer(band, accepted, fee)


def error_rate_vs_redundancy(frame: pl.DataFrame) -> alt.Chart:
    """Wrongly accepted results against verifiers per task, with the binomial bound
    (``error_rate_vs_redundancy(...)`` of the data module)."""
    long = frame.unpivot(
        index="verifiers", on=["wrong_accept_rate", "binomial_bound"], variable_name="measure"
    )
    return (
        alt.Chart(long, title="Error rate vs redundancy")
        .mark_line(point=True)
        .encode(
            x=alt.X("verifiers:O", title="verifiers per task"),
            y=alt.Y("value:Q", title="wrong results accepted (fraction of tasks)"),
            color=alt.Color("measure:N"),
        )
    )


def price_of_trust(table: pl.DataFrame, *, attacker: str = "trust-then-cheat") -> alt.Chart:
    """Executions per accepted task against the finalized wrong-accept rate, a point per
    scheme and f, with each cell's closed-form bound as a hollow mark (the rows of
    ``meshbench.sim.table.verification_table`` for one ``attacker``)."""
    rows = table.filter(pl.col("attacker") == attacker).with_columns(
        pl.max_horizontal(pl.col("wrong_accept"), pl.lit(1e-5)).alias("measured (floor 1e-5)"),
        pl.max_horizontal(pl.col("bound"), pl.lit(1e-5)).alias("bound"),
    )
    x = alt.X("executions_per_task:Q", title="executions per accepted task")
    scale = alt.Scale(type="log", domain=[1e-5, 1])
    measured = (
        alt.Chart(rows, title=f"The price of trust ({attacker})")
        .mark_point(filled=True, size=70)
        .encode(
            x=x,
            y=alt.Y("measured (floor 1e-5):Q", scale=scale, title="finalized wrong accepts"),
            color=alt.Color("scheme:N"),
            shape=alt.Shape("f:O"),
            tooltip=["scheme", "f", "executions_per_task", "wrong_accept", "bound"],
        )
    )
    bound = (
        alt.Chart(rows)
        .mark_point(filled=False, size=70, opacity=0.5)
        .encode(x=x, y=alt.Y("bound:Q", scale=scale), color=alt.Color("scheme:N"))
    )
    return alt.layer(measured, bound)


def audit_outcomes(audits: pl.DataFrame) -> alt.Chart:
    """Results by whether they were audited and why, coloured by what became of the
    worker's payment (the ``audits`` frame: ``Mesh.audits()``)."""
    data = audits.with_columns(
        pl.when(pl.col("audited")).then(pl.col("reason")).otherwise(pl.lit("not audited"))
        .alias("draw"),
        pl.col("payment").fill_null("pending"),
    )  # fmt: skip
    return (
        alt.Chart(data, title="Audits and held payments")
        .mark_bar()
        .encode(
            x=alt.X("count():Q", title="results"),
            y=alt.Y("draw:N", title="draw"),
            color=alt.Color("payment:N", title="worker payment"),
        )
    )


def save_png(chart: alt.TopLevelMixin, path: str | os.PathLike[str], *, scale: float = 2) -> Path:
    """Write ``chart`` as a PNG (no browser needed: ``vl-convert``)."""
    import vl_convert as vlc

    out = Path(path)
    out.write_bytes(vlc.vegalite_to_png(chart.to_json(), scale=scale))
    return out
