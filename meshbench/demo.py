"""The embedded demo that ``make demo`` runs: a whole mesh lifecycle on this machine.

It starts a Dask ``LocalCluster`` of mesh workers (one of them dishonest, and bidding low to
win work), funds the accounts, publishes the example tasks one after another, and prints
offers, receipts, quorum outcomes, escrow settlements, payouts, the slash of the dishonest
worker's bond and reputation as tables, then checks the ledger.

The same seed tells the same story: every key is derived from it (``Mesh.local(seed=...)``),
the mesh runs on a :class:`~meshbench.runtime.clock.ManualClock` that the demo moves one
second per task (the workers sign with the node's time, so offers, and the ties between
them, carry no wall-clock time), and each task is published once the one before it has
settled (so every selection sees the same books). Only the seconds it took and the folders
differ between two runs.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import click
import polars as pl

from meshbench.core.errors import StoreError

if TYPE_CHECKING:
    from meshbench.runtime.mesh import Mesh

__all__ = ["DEFAULT_SEED", "DemoReport", "run_demo"]

DATASETS = Path(__file__).resolve().parent.parent / "datasets" / "wasm"
EXAMPLES = [
    ("sha256.wasm", b"the quick brown fox"),
    ("wordcount.wasm", b"to be or not to be that is the question"),
    ("hello.wasm", b""),
    ("sha256.wasm", b"jumps over the lazy dog"),
    ("wordcount.wasm", b"a mesh of machines that check each other"),
    ("sha256.wasm", b"verifiable mesh compute"),
]
DEFAULT_SEED = "meshbench-demo"
#: Mesh time between two tasks (the demo moves its manual clock by this much).
TASK_INTERVAL_MS = 1_000
#: The dishonest worker's base price: below the others' (50), so it wins while it may work.
CHEAT_BASE_COST = 30


@dataclass(frozen=True)
class DemoReport:
    """What a demo run decided (equal for two runs with the same seed and workers)."""

    seed: str
    #: (task CID, outcome, executing worker's DID) per task, in publication order
    tasks: tuple[tuple[str, str, str], ...]
    #: (task CID, account, offence, amount) per slash
    slashes: tuple[tuple[str, str, str, int], ...]
    accepted: int
    rejected: int
    events: int
    ledger_ok: bool


def _short(col: str) -> pl.Expr:
    """DIDs and CIDs shortened for reading (the frames keep them whole)."""
    return (
        pl.when(pl.col(col).str.starts_with("did:key:"))
        .then(pl.lit("…") + pl.col(col).str.slice(-6))
        .otherwise(pl.lit("…") + pl.col(col).str.slice(-8))
        .alias(col)
    )


def _table(say: Callable[[str], None], title: str, frame: pl.DataFrame) -> None:
    say(f"\n== {title}")
    with pl.Config(tbl_rows=40, tbl_cols=12, fmt_str_lengths=40, tbl_width_chars=120):
        say(str(frame))


def _fresh_dir(data_dir: str | os.PathLike[str] | None) -> Path:
    if data_dir is None:
        return Path(tempfile.mkdtemp(prefix="meshbench-demo-"))
    root = Path(data_dir)
    if root.exists() and any(root.iterdir()):
        raise StoreError(
            f"the demo needs an empty data dir ({root} has files: the same seed would publish "
            "the same tasks again); give another --data-dir"
        )
    root.mkdir(parents=True, exist_ok=True)
    return root


def run_demo(
    data_dir: str | os.PathLike[str] | None = None,
    *,
    workers: int = 4,
    processes: bool = True,
    seed: str = DEFAULT_SEED,
    say: Callable[[str], None] = click.echo,
) -> DemoReport:
    import logging

    from meshbench.runtime.agent import CostModel
    from meshbench.runtime.clock import ManualClock
    from meshbench.runtime.mesh import Mesh

    # Dask reports ordinary worker shutdown at WARNING; the demo's own output is the point.
    logging.getLogger("distributed").setLevel(logging.ERROR)
    root = _fresh_dir(data_dir)
    say(f"meshbench demo: {workers} Dask workers (worker 0 is dishonest), seed {seed!r}")
    say(f"data dir {root}")
    t0 = time.monotonic()
    clock = ManualClock()
    # A caught cheater's bond is slashed; below min_stake it may no longer work or verify,
    # so with few workers the quorum may use two verifiers.
    policy = {"verification_quorum": {"minimum_verifiers": min(3, workers - 2) or 1}}
    with Mesh.local(
        workers=workers,
        data_dir=root,
        behaviours={0: "wrong"},
        costs={0: CostModel(base=CHEAT_BASE_COST)},
        processes=processes,
        policy=policy,
        seed=seed.encode(),
        clock=clock,
    ) as mesh:
        say(f"mesh up in {time.monotonic() - t0:.1f} s; Dask dashboard: {mesh.dashboard_link}")
        say(f"publisher {mesh.publisher.did}")
        say(f"publishing {len(EXAMPLES)} tasks one after another (fee 100 each, 3 verifiers)")
        handles, results = [], []
        for name, data in EXAMPLES:
            h = mesh.publish(DATASETS / name, data, fee=100, verifiers=3)
            r = h.result(timeout=120)
            handles.append(h)
            results.append(r)
            out = (r.output or b"").decode("utf-8", "replace").strip()[:60]
            say(f"  {name:<15} {r.outcome:<9} {out!r}")
            clock.advance(TASK_INTERVAL_MS)
        order = pl.DataFrame({"task_cid": [str(h.cid) for h in handles]}).with_row_index("n")
        _tables(mesh, order, say)
        report = mesh.node.verify_ledger()
        caught = next((h for h, r in zip(handles, results, strict=True)
                       if r.outcome == "Rejected"), None)  # fmt: skip
        if caught is not None:
            say("\n== the story of the task the dishonest worker got (mesh.story(handle))")
            say(str(mesh.story(caught)))
        demo = DemoReport(
            seed=seed,
            tasks=tuple(
                (str(h.cid), r.outcome, r.receipt.worker if r.receipt else "")
                for h, r in zip(handles, results, strict=True)
            ),
            slashes=tuple(
                mesh.slashes()
                .select("task_cid", "account", "offence", "amount")
                .sort("task_cid", "account")
                .iter_rows()
            ),
            accepted=sum(r.accepted for r in results),
            rejected=sum(r.outcome == "Rejected" for r in results),
            events=len(mesh.events()),
            ledger_ok=report.ok,
        )
        slashed = sum(s[3] for s in demo.slashes)
        say(
            f"\n{demo.accepted}/{len(handles)} tasks accepted, {demo.rejected} wrong "
            f"result{'s' if demo.rejected != 1 else ''} caught by re-execution and refunded, "
            f"{slashed} slashed from the dishonest worker's bond. Ledger: {demo.events} signed "
            f"events, verify {'OK' if report.ok else 'FAILED: ' + '; '.join(report.problems)}."
        )
        if not report.ok:
            raise SystemExit(1)
    say(f"demo done in {time.monotonic() - t0:.1f} s")
    return demo


def _tables(m: Mesh, order: pl.DataFrame, say: Callable[[str], None]) -> None:
    """The frames of the run as tables, rows in a fixed order (publication order, then
    names): answers that arrive together (verdicts) are in the ledger in arrival order."""

    def by_task(frame: pl.DataFrame, *more: str) -> pl.DataFrame:
        return frame.join(order, on="task_cid").sort("n", *more).drop("n")

    tasks = by_task(m.tasks().select("task_cid", "wasm_cid", "fee", "outcome"))
    _table(say, "tasks", tasks.with_columns(_short("task_cid"), _short("wasm_cid")))
    offers = by_task(
        m.offers().select("task_cid", "worker", "cost", "eta_ms", "selected"), "worker"
    )
    _table(say, "offers (the selected one marked)",
           offers.with_columns(_short("task_cid"), _short("worker")))  # fmt: skip
    receipts = by_task(
        m.receipts().select("task_cid", "kind", "peer", "approved", "fuel_used", "output_cid"),
        "kind",
        "peer",
    )
    receipts = receipts.with_columns(_short("task_cid"), _short("peer"), _short("output_cid"))
    _table(say, "receipts (execution, then each verifier's verdict)", receipts)
    escrow = by_task(
        m.escrow()
        .select("task_cid", "from_state", "to_state", "amount", "reason")
        .with_row_index("seq"),
        "seq",
    ).drop("seq")
    _table(say, "escrow", escrow.with_columns(_short("task_cid")))
    payouts = m.payouts().group_by("account", "role").agg(pl.col("amount").sum())
    _table(say, "payouts by account and role",
           payouts.sort("account", "role").with_columns(_short("account")))  # fmt: skip
    slashes = by_task(m.slashes().select("task_cid", "account", "offence", "amount"), "account")
    if slashes.height:
        _table(say, "slashes (the dishonest worker's bond penalties, paid to the treasury)",
               slashes.with_columns(_short("task_cid"), _short("account")))  # fmt: skip
    else:
        say("\n== slashes: none (the dishonest worker was never chosen to execute)")
    bonds = m.balances().filter(pl.col("bonded") > 0).sort("bonded", "account")
    _table(say, "bonded stake after the run", bonds.with_columns(_short("account")))
    rep = m.reputation().sort(["score", "peer"], descending=[True, False])
    _table(say, "reputation", rep.with_columns(_short("peer")))
