"""Polars helpers over a mesh's frames: rewards per peer, reputation history, the fee market,
task latency, Parquet export, and frames of a simulated run.

``source`` below is anything with the frame methods of :class:`~meshbench.store.frames.
LedgerFrames` (a running ``Mesh``, ``meshbench.open_ledger(path)``) unless said otherwise.
Every function returns a ``pl.DataFrame`` with the columns its docstring names.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from meshbench.core.events import QuorumReached, RewardDistributed, TaskAssigned
from meshbench.core.model import Model
from meshbench.core.policy import MeshPolicy
from meshbench.core.types import ComputeOffer, TaskIntent
from meshbench.store.frames import LedgerFrames

if TYPE_CHECKING:
    from meshbench.runtime.mesh import Mesh

__all__ = [
    "FRAME_NAMES",
    "SimRun",
    "error_rate_vs_redundancy",
    "export_parquet",
    "fee_market",
    "open_trace",
    "reputation_history",
    "rewards_per_peer",
    "simulate",
    "task_latency",
]

FRAME_NAMES = (
    "events",
    "tasks",
    "offers",
    "receipts",
    "escrow",
    "payouts",
    "reputation",
    "balances",
)


def rewards_per_peer(payouts: pl.DataFrame) -> pl.DataFrame:
    """account, worker, verifier, platform, refund, penalty (tokens), tasks, total earned.

    ``total`` counts what the peer earned (worker + verifier + platform), not refunds.
    """
    roles = ["worker", "verifier", "platform", "refund", "penalty"]
    wide = (
        payouts.group_by("account")
        .agg(
            [pl.col("amount").filter(pl.col("role") == r).sum().alias(r) for r in roles]
            + [pl.col("task_cid").filter(pl.col("role") != "refund").n_unique().alias("tasks")]
        )
        .with_columns(total=pl.col("worker") + pl.col("verifier") + pl.col("platform"))
    )
    return wide.sort(["total", "account"], descending=[True, False])


def reputation_history(source: Mesh | LedgerFrames | str | os.PathLike[str]) -> pl.DataFrame:
    """peer, time, score, executions_ok/bad, verifications_ok/bad: one row per observation.

    Folds the ledger's events again (``source`` is a ``Mesh``, a ledger path, or a
    ``LedgerFrames``), recording each peer's reputation after every event that moved it.
    """
    from meshbench.workbench.feed import MeshFeed

    if isinstance(source, str | os.PathLike):
        path = Path(source)
    elif isinstance(source, LedgerFrames):
        path = Path(source.path)
    else:
        path = source.node.ledger_path
    return MeshFeed.from_ledger(path).reputation_history()


def fee_market(offers: pl.DataFrame, tasks: pl.DataFrame) -> pl.DataFrame:
    """Per task: fee, offers, min / median / max offered cost, accepted cost, accepted share.

    ``accepted_share`` is accepted cost / fee: what the publisher pays of what it escrowed.
    """
    per_task = offers.group_by("task_cid").agg(
        offers=pl.len(),
        min_cost=pl.col("cost").min(),
        median_cost=pl.col("cost").median(),
        max_cost=pl.col("cost").max(),
        accepted_cost=pl.col("cost").filter(pl.col("selected")).first(),
    )
    return (
        tasks.select("task_cid", "fee", "published")
        .join(per_task, on="task_cid", how="left")
        .with_columns(accepted_share=pl.col("accepted_cost") / pl.col("fee"))
        .sort("published")
    )


def task_latency(tasks: pl.DataFrame) -> pl.DataFrame:
    """task_cid, outcome, published, settled, latency_s (settled tasks only)."""
    return (
        tasks.filter(pl.col("settled").is_not_null())
        .with_columns(
            latency_s=(pl.col("settled") - pl.col("published")).dt.total_milliseconds() / 1000
        )
        .select("task_cid", "outcome", "published", "settled", "latency_s")
        .sort("published")
    )


def export_parquet(
    source: Mesh | LedgerFrames, directory: str | os.PathLike[str]
) -> dict[str, Path]:
    """Write every frame of ``source`` to ``<directory>/<name>.parquet``; returns the paths."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name in FRAME_NAMES:
        frame: pl.DataFrame = getattr(source, name)()
        path = out / f"{name}.parquet"
        frame.write_parquet(path)
        paths[name] = path
    return paths


def open_trace(path: str | os.PathLike[str]) -> LedgerFrames:
    """A recorded ledger (``datasets/traces/*.sqlite.gz`` or a plain ``.sqlite``) as a
    :class:`~meshbench.store.frames.LedgerFrames`; a gzipped one is unpacked to a temp file."""
    import gzip
    import shutil
    import tempfile

    from meshbench.store.frames import LedgerFrames

    src = Path(path)
    if src.suffix != ".gz":
        return LedgerFrames(src)
    out = Path(tempfile.mkdtemp(prefix="meshbench-trace-")) / src.stem
    with gzip.open(src, "rb") as fin, out.open("wb") as fout:
        shutil.copyfileobj(fin, fout)
    return LedgerFrames(out)


# --- simulated runs ---------------------------------------------------------------------------
@dataclass
class SimRun:
    """A finished simulation as Polars frames (and its summary report)."""

    report: dict[str, Any]
    tasks: pl.DataFrame
    offers: pl.DataFrame
    payouts: pl.DataFrame
    reputation: pl.DataFrame
    peers: pl.DataFrame


def _ts(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


class _Recorder:
    """The simulator's observer: shows each appended batch of events to ``observe`` (the
    simulation's books already include them)."""

    def __init__(self) -> None:
        self.observe: Callable[..., None] = lambda *events: None

    def append(self, *events: Model) -> None:
        self.observe(*events)


def simulate(
    *,
    tasks: int = 1000,
    workers: int = 50,
    malicious: float = 0.1,
    faulty: float = 0.0,
    verifiers: int = 3,
    seed: int = 0,
    policy: MeshPolicy | None = None,
    attackers: float = 0.0,
) -> SimRun:
    """Run the adversarial simulator (the real protocol engine) and collect frames.

    Frames: ``tasks`` (task_cid, publisher, fee, worker, worker_class, price, outcome,
    correct, disputed, published, settled), ``offers`` (task_cid, worker, cost, selected),
    ``payouts`` (task_cid, account, peer_class, role, amount), ``reputation`` (peer,
    peer_class, time, score: after every quorum), ``peers`` (peer, peer_class, score,
    earned).
    """
    from meshbench.sim.simulator import SimConfig, Simulation

    recorder = _Recorder()
    cfg = SimConfig(
        workers=workers, malicious=malicious, faulty=faulty, attackers=attackers, tasks=tasks,
        verifiers=verifiers, seed=seed, policy=policy or MeshPolicy(), observer=recorder.append,
    )  # fmt: skip
    sim = Simulation(cfg)
    klass = sim.behaviour
    task_rows: dict[str, dict[str, Any]] = {}
    offer_rows: list[tuple[str, str, int]] = []
    chosen: set[tuple[str, str]] = set()
    pay_rows: list[tuple[str, str, str, str, int]] = []
    rep_rows: list[tuple[str, str, int, float]] = []

    def observe(*events: Model) -> None:
        # the simulation appends each decision's events here, its books already folded
        for ev in events:
            if isinstance(ev, TaskIntent):
                task_rows[str(ev.cid)] = {
                    "task_cid": str(ev.cid), "publisher": ev.publisher, "fee": ev.fee,
                    "worker": None, "price": None, "outcome": None, "correct": None,
                    "disputed": False, "published": ev.created_at, "settled": None,
                }  # fmt: skip
            elif isinstance(ev, ComputeOffer):
                offer_rows.append((str(ev.task_cid), ev.worker, ev.cost))
            elif isinstance(ev, TaskAssigned):
                chosen.add((str(ev.task_cid), ev.worker))  # (no CID to compute per offer)
                row = task_rows[str(ev.task_cid)]
                row.update(worker=ev.worker, price=ev.price)
            elif isinstance(ev, QuorumReached):
                row = task_rows[str(ev.task_cid)]
                row["outcome"] = ev.outcome
                if ev.output_cid is not None:
                    row["correct"] = ev.output_cid == sim.truth[ev.task_cid]
                for peer in dict.fromkeys(p for p in (ev.worker, *ev.with_quorum,
                                                       *ev.against_quorum) if p):  # fmt: skip
                    rec = sim.state.books.reputation_record(peer)
                    if rec is not None:
                        rep_rows.append((peer, klass.get(peer, "?"), ev.timestamp, rec["score"]))
            elif isinstance(ev, RewardDistributed):
                row = task_rows[str(ev.task_cid)]
                row["settled"] = ev.timestamp
                for p in ev.payouts:
                    pay_rows.append(
                        (str(ev.task_cid), p.account, klass.get(p.account, "publisher"),
                         p.role, p.amount)
                    )  # fmt: skip

    recorder.observe = observe
    report = sim.run().to_dict()
    for cid, rec in sim.state.tasks.items():
        row = task_rows.get(str(cid))
        if row is not None:
            row["disputed"] = rec.disputed
            if row["outcome"] is None:
                row["outcome"] = "Expired"
    ts = pl.Datetime("ms", "UTC")
    tasks_df = pl.DataFrame(
        list(task_rows.values()),
        schema={
            "task_cid": pl.Utf8,
            "publisher": pl.Utf8,
            "fee": pl.Int64,
            "worker": pl.Utf8,
            "price": pl.Int64,
            "outcome": pl.Utf8,
            "correct": pl.Boolean,
            "disputed": pl.Boolean,
            "published": pl.Int64,
            "settled": pl.Int64,
        },
        orient="row",
    ).with_columns(
        pl.col("published").cast(ts),
        pl.col("settled").cast(ts),
        worker_class=pl.col("worker").replace_strict(klass, default=None),
    )
    offers_df = pl.DataFrame(
        [(t, w, c, (t, w) in chosen) for t, w, c in offer_rows],
        schema=["task_cid", "worker", "cost", "selected"],
        orient="row",
    )
    payouts_df = pl.DataFrame(
        pay_rows, schema=["task_cid", "account", "peer_class", "role", "amount"], orient="row"
    )
    rep_df = pl.DataFrame(
        rep_rows, schema=["peer", "peer_class", "time", "score"], orient="row"
    ).with_columns(pl.col("time").cast(ts))
    earned = (
        payouts_df.filter(pl.col("role") != "refund")
        .group_by("account")
        .agg(earned=pl.col("amount").sum())
    )
    from meshbench.core import reputation

    peers_df = (
        pl.DataFrame(
            [
                (
                    did,
                    kind,
                    reputation.decayed(sim.state.books.reputation_record(did), sim.now, cfg.policy),
                )
                for did, kind in klass.items()
            ],
            schema=["peer", "peer_class", "score"],
            orient="row",
        )
        .join(earned.rename({"account": "peer"}), on="peer", how="left")
        .with_columns(pl.col("earned").fill_null(0))
        .sort("peer")
    )
    return SimRun(
        report=report, tasks=tasks_df, offers=offers_df, payouts=payouts_df,
        reputation=rep_df, peers=peers_df,
    )  # fmt: skip


def error_rate_vs_redundancy(
    verifiers: Iterable[int] = (1, 2, 3, 5),
    *,
    tasks: int = 500,
    workers: int = 30,
    malicious: float = 0.3,
    faulty: float = 0.0,
    seed: int = 0,
) -> pl.DataFrame:
    """verifiers, wrong_accept_rate, binomial_bound, executions_per_task, disputes, refunded.

    One simulation per verifier count, each with the policy's ``minimum_verifiers`` set to
    that count. At least one verifier: a quorum of none decides nothing (every task would be
    refunded).
    """
    from meshbench.core.policy import MeshPolicyFragment
    from meshbench.sim.simulator import SimConfig, run_simulation

    rows = []
    for k in verifiers:
        if k < 1:
            raise ValueError(f"verifiers per task must be at least 1, not {k}")
        quorum: dict[str, Any] = {"minimum_verifiers": k, "maximum_verifiers": max(k, 7)}
        policy = MeshPolicy().apply(MeshPolicyFragment(updates={"verification_quorum": quorum}))
        r = run_simulation(
            SimConfig(
                workers=workers,
                malicious=malicious,
                faulty=faulty,
                tasks=tasks,
                verifiers=k,
                seed=seed,
                policy=policy,
            )
        )
        rows.append(
            {"verifiers": k, "wrong_accept_rate": r.wrong_accept_rate,
             "binomial_bound": r.binomial_bound, "executions_per_task": r.executions_per_task,
             "disputes": r.disputes, "refunded": r.refunded}
        )  # fmt: skip
    return pl.DataFrame(rows)
