"""The embedded demo that ``make demo`` runs: a whole mesh lifecycle on this machine.

It starts a Dask ``LocalCluster`` of mesh workers (one of them dishonest), funds the
accounts, publishes a batch of the example tasks, and prints offers, receipts, quorum
outcomes, escrow settlements, payouts and reputation as tables, then checks the ledger.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import click
import polars as pl

DATASETS = Path(__file__).resolve().parent.parent / "datasets" / "wasm"
EXAMPLES = [
    ("sha256.wasm", b"the quick brown fox"),
    ("wordcount.wasm", b"to be or not to be that is the question"),
    ("hello.wasm", b""),
    ("sha256.wasm", b"jumps over the lazy dog"),
    ("wordcount.wasm", b"a mesh of machines that check each other"),
    ("sha256.wasm", b"verifiable mesh compute"),
]


def _short(col: str) -> pl.Expr:
    """DIDs and CIDs shortened for reading (the frames keep them whole)."""
    return (
        pl.when(pl.col(col).str.starts_with("did:key:"))
        .then(pl.lit("…") + pl.col(col).str.slice(-6))
        .otherwise(pl.lit("…") + pl.col(col).str.slice(-8))
        .alias(col)
    )


def _table(title: str, frame: pl.DataFrame) -> None:
    click.echo(f"\n== {title}")
    with pl.Config(tbl_rows=40, tbl_cols=12, fmt_str_lengths=40, tbl_width_chars=120):
        click.echo(frame)


def run_demo(
    data_dir: str | os.PathLike[str] | None = None, *, workers: int = 4, processes: bool = True
) -> None:
    import logging

    from meshbench.runtime.mesh import Mesh

    # Dask reports ordinary worker shutdown at WARNING; the demo's own output is the point.
    logging.getLogger("distributed").setLevel(logging.ERROR)
    root = Path(data_dir) if data_dir else Path(tempfile.mkdtemp(prefix="meshbench-demo-"))
    say = click.echo
    say(f"meshbench demo: {workers} Dask workers (worker 0 is dishonest), data dir {root}")
    t0 = time.monotonic()
    # A caught cheater's bond is slashed; below min_stake it may no longer work or verify,
    # so with few workers the quorum may use two verifiers.
    policy = {"verification_quorum": {"minimum_verifiers": min(3, workers - 2) or 1}}
    with Mesh.local(
        workers=workers,
        data_dir=root,
        behaviours={0: "wrong"},
        processes=processes,
        policy=policy,
    ) as mesh:
        say(f"mesh up in {time.monotonic() - t0:.1f} s; Dask dashboard: {mesh.dashboard_link}")
        say(f"publisher {mesh.publisher.did}")
        handles = []
        for name, data in EXAMPLES:
            handles.append(mesh.publish(DATASETS / name, data, fee=100, verifiers=3))
        say(f"published {len(handles)} tasks (fee 100 each, 3 verifiers)")
        for (name, _), h in zip(EXAMPLES, handles, strict=True):
            r = h.result(timeout=120)
            out = (r.output or b"").decode("utf-8", "replace").strip()[:60]
            say(f"  {name:<15} {r.outcome:<9} {out!r}")
        tasks = mesh.tasks().select("task_cid", "wasm_cid", "fee", "outcome")
        _table("tasks", tasks.with_columns(_short("task_cid"), _short("wasm_cid")))
        offers = mesh.offers().select("task_cid", "worker", "cost", "eta_ms", "selected")
        _table(
            "offers (the selected one marked)",
            offers.with_columns(_short("task_cid"), _short("worker")),
        )
        receipts = mesh.receipts().select(
            "task_cid", "kind", "peer", "approved", "fuel_used", "output_cid"
        )
        _table(
            "receipts (execution, then each verifier's verdict)",
            receipts.with_columns(_short("task_cid"), _short("peer"), _short("output_cid")),
        )
        escrow = mesh.escrow().select("task_cid", "from_state", "to_state", "amount", "reason")
        _table("escrow", escrow.with_columns(_short("task_cid")))
        payouts = mesh.payouts().group_by("account", "role").agg(pl.col("amount").sum())
        _table(
            "payouts by account and role",
            payouts.sort("account", "role").with_columns(_short("account")),
        )
        slashes = mesh.slashes().select("task_cid", "account", "offence", "amount")
        if slashes.height:
            _table(
                "slashes (bond penalties, paid to the federation treasury)",
                slashes.with_columns(_short("task_cid"), _short("account")),
            )
        else:
            say("\n== slashes: none (the dishonest worker was never chosen to execute)")
        bonds = mesh.balances().filter(pl.col("bonded") > 0).sort("bonded")
        _table("bonded stake after the run", bonds.with_columns(_short("account")))
        rep = mesh.reputation().sort("score", descending=True)
        _table("reputation", rep.with_columns(_short("peer")))
        report = mesh.node.verify_ledger()
        results = [h.result() for h in handles]
        caught_handle = next((h for h, r in zip(handles, results, strict=True)
                              if r.outcome == "Rejected"), None)  # fmt: skip
        if caught_handle is not None:
            say("\n== the story of the task the dishonest worker got (mesh.story(handle))")
            say(str(mesh.story(caught_handle)))
        accepted = sum(r.accepted for r in results)
        caught = sum(r.outcome == "Rejected" for r in results)
        say(
            f"\n{accepted}/{len(handles)} tasks accepted, {caught} wrong "
            f"result{'s' if caught != 1 else ''} caught by "
            f"re-execution and refunded. Ledger: {len(mesh.events())} signed events, "
            f"verify {'OK' if report.ok else 'FAILED: ' + '; '.join(report.problems)}."
        )
        if not report.ok:
            raise SystemExit(1)
    say(f"demo done in {time.monotonic() - t0:.1f} s")
