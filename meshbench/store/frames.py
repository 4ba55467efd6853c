"""Polars frames of a ledger: every event, offers, receipts, escrow, payouts, reputation.

:class:`LedgerFrames` reads a ledger file through its own read-only SQLite connection (WAL
lets it read while a node appends), so a notebook can explore a live mesh or a ledger file
offline (``meshbench.open_ledger(path)``). Every frame has a fixed, documented schema;
times are UTC datetimes in milliseconds, CIDs and DIDs are strings, amounts integers.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import polars as pl

from meshbench.core.events import (
    AuditDrawn,
    EscrowStateChanged,
    HeldReleased,
    QuorumReached,
    RefereeRuled,
    ResultClawedBack,
    RewardDistributed,
    StakeSlashed,
    TaskAssigned,
)
from meshbench.core.model import Model, decode_object
from meshbench.core.outcome import task_outcome
from meshbench.core.types import ComputeOffer, ExecutionReceipt, TaskIntent, VerificationReceipt

__all__ = ["SCHEMAS", "LedgerFrames", "open_ledger"]

_TS: Final = pl.Datetime("ms", "UTC")
#: The schema of every frame (column -> Polars type).
SCHEMAS: Final[dict[str, dict[str, Any]]] = {
    "events": {"seq": pl.Int64, "cid": pl.Utf8, "type": pl.Utf8, "author": pl.Utf8, "time": _TS},
    "tasks": {
        "task_cid": pl.Utf8, "publisher": pl.Utf8, "wasm_cid": pl.Utf8, "input_cid": pl.Utf8,
        "fee": pl.Int64, "verifiers": pl.Int64, "memory_mb": pl.Int64, "cpu_cycles": pl.Int64,
        "published": _TS, "outcome": pl.Utf8, "settled": _TS,
    },
    "offers": {
        "task_cid": pl.Utf8, "offer_cid": pl.Utf8, "worker": pl.Utf8, "cost": pl.Int64,
        "eta_ms": pl.Int64, "capacity": pl.Int64, "memory_mb": pl.Int64, "time": _TS,
        "selected": pl.Boolean,
    },
    "receipts": {
        "task_cid": pl.Utf8, "receipt_cid": pl.Utf8, "kind": pl.Utf8, "peer": pl.Utf8,
        "output_cid": pl.Utf8, "approved": pl.Boolean, "fuel_used": pl.Int64,
        "wall_time_us": pl.Int64, "engine": pl.Utf8, "reason": pl.Utf8, "time": _TS,
    },
    "escrow": {
        "task_cid": pl.Utf8, "from_state": pl.Utf8, "to_state": pl.Utf8, "amount": pl.Int64,
        "reason": pl.Utf8, "time": _TS,
    },
    "payouts": {
        "task_cid": pl.Utf8, "account": pl.Utf8, "role": pl.Utf8, "amount": pl.Int64,
        "policy_cid": pl.Utf8, "time": _TS,
    },
    "reputation": {
        "peer": pl.Utf8, "score": pl.Float64, "executions_ok": pl.Int64,
        "executions_bad": pl.Int64, "verifications_ok": pl.Int64,
        "verifications_bad": pl.Int64,
    },
    "balances": {"account": pl.Utf8, "balance": pl.Int64, "bonded": pl.Int64},
    "slashes": {
        "task_cid": pl.Utf8, "account": pl.Utf8, "offence": pl.Utf8, "amount": pl.Int64,
        "recipient": pl.Utf8, "time": _TS,
    },
    "audits": {
        "task_cid": pl.Utf8, "audited": pl.Boolean, "reason": pl.Utf8, "rate_ppm": pl.Int64,
        "auditors": pl.Int64, "referee": pl.Utf8, "held": pl.Int64, "payment": pl.Utf8,
        "time": _TS,
    },
}  # fmt: skip


def _time(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, tz=UTC)


def _frame(name: str, rows: list[dict[str, Any]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=SCHEMAS[name], orient="row")


class LedgerFrames:
    """Read-only Polars views of one ledger file."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if not self.path.exists():
            from meshbench.core.errors import LedgerError

            raise LedgerError(f"no ledger at {self.path}")

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)

    def _events(self, types: tuple[str, ...] | None = None) -> Iterator[tuple[int, Model]]:
        db = self._connect()
        try:
            if types:
                marks = ",".join("?" * len(types))
                sql = f"SELECT seq, data FROM events WHERE type IN ({marks}) ORDER BY seq"
                rows = db.execute(sql, types).fetchall()
            else:
                rows = db.execute("SELECT seq, data FROM events ORDER BY seq").fetchall()
        finally:
            db.close()
        for seq, data in rows:
            # our own ledger: the node checked every signature when it appended
            yield seq, decode_object(data, verify_signature=False)

    def _derived(self, table: str) -> dict[str, Any]:
        db = self._connect()
        try:
            rows = db.execute("SELECT key, value FROM derived WHERE tbl = ?", (table,)).fetchall()
        finally:
            db.close()
        return {k: json.loads(v) for k, v in rows}

    # --- frames ----------------------------------------------------------------------------
    def events(self) -> pl.DataFrame:
        db = self._connect()
        try:
            rows = db.execute(
                "SELECT seq, cid, type, author, timestamp FROM events ORDER BY seq"
            ).fetchall()
        finally:
            db.close()
        return _frame(
            "events",
            [
                {"seq": s, "cid": c, "type": t, "author": a, "time": _time(ts)}
                for s, c, t, a, ts in rows
            ],
        )

    def tasks(self) -> pl.DataFrame:
        outcome: dict[str, str] = {}
        settled: dict[str, datetime | None] = {}
        rows = []
        exit_codes: dict[str, int] = {}
        kinds = ("TaskIntent", "ExecutionReceipt", "QuorumReached", "RewardDistributed")
        for _, ev in self._events(kinds):
            if isinstance(ev, TaskIntent):
                rows.append(
                    {
                        "task_cid": str(ev.cid), "publisher": ev.publisher,
                        "wasm_cid": str(ev.wasm_cid), "input_cid": str(ev.input_cid),
                        "fee": ev.fee, "verifiers": ev.verifier_count,
                        "memory_mb": ev.scope.memory_mb, "cpu_cycles": ev.scope.cpu_cycles,
                        "published": _time(ev.created_at),
                    }
                )  # fmt: skip
            elif isinstance(ev, ExecutionReceipt):
                exit_codes[str(ev.task_cid)] = ev.exit_code  # the last reveal is the decided one
            elif isinstance(ev, QuorumReached):
                outcome[str(ev.task_cid)] = ev.outcome
            elif isinstance(ev, RewardDistributed):
                settled[str(ev.task_cid)] = _time(ev.timestamp)
        for r in rows:
            # Failed: a verified guest failure (core/outcome.py)
            r["outcome"], _ = task_outcome(
                outcome.get(r["task_cid"]), exit_codes.get(r["task_cid"])
            )
            r["settled"] = settled.get(r["task_cid"])
        return _frame("tasks", rows)

    def offers(self) -> pl.DataFrame:
        rows, chosen = [], set()
        for _, ev in self._events(("ComputeOffer", "TaskAssigned")):
            if isinstance(ev, ComputeOffer):
                rows.append(
                    {
                        "task_cid": str(ev.task_cid), "offer_cid": str(ev.cid),
                        "worker": ev.worker, "cost": ev.cost, "eta_ms": ev.eta_ms,
                        "capacity": ev.capacity, "memory_mb": ev.hardware.memory_mb,
                        "time": _time(ev.created_at),
                    }
                )  # fmt: skip
            elif isinstance(ev, TaskAssigned):
                chosen.add(str(ev.offer_cid))
        for r in rows:
            r["selected"] = r["offer_cid"] in chosen
        return _frame("offers", rows)

    def receipts(self) -> pl.DataFrame:
        rows = []
        for _, ev in self._events(("ExecutionReceipt", "VerificationReceipt")):
            if isinstance(ev, ExecutionReceipt):
                rows.append(
                    {
                        "task_cid": str(ev.task_cid), "receipt_cid": str(ev.cid),
                        "kind": "execution", "peer": ev.worker,
                        "output_cid": str(ev.output_cid), "approved": None,
                        "fuel_used": ev.summary.fuel_used,
                        "wall_time_us": ev.summary.wall_time_us, "engine": ev.summary.engine,
                        "reason": "", "time": _time(ev.created_at),
                    }
                )  # fmt: skip
            elif isinstance(ev, VerificationReceipt):
                rows.append(
                    {
                        "task_cid": str(ev.task_cid), "receipt_cid": str(ev.cid),
                        "kind": "verification", "peer": ev.verifier,
                        "output_cid": None if ev.output_cid is None else str(ev.output_cid),
                        "approved": ev.approved, "fuel_used": ev.fuel_used,
                        "wall_time_us": None, "engine": ev.engine, "reason": ev.reason,
                        "time": _time(ev.created_at),
                    }
                )  # fmt: skip
        return _frame("receipts", rows)

    def escrow(self) -> pl.DataFrame:
        rows = [
            {
                "task_cid": str(ev.task_cid), "from_state": ev.from_state,
                "to_state": ev.to_state, "amount": ev.amount, "reason": ev.reason,
                "time": _time(ev.timestamp),
            }
            for _, ev in self._events(("EscrowStateChanged",))
            if isinstance(ev, EscrowStateChanged)
        ]  # fmt: skip
        return _frame("escrow", rows)

    def payouts(self) -> pl.DataFrame:
        rows = [
            {
                "task_cid": str(ev.task_cid), "account": p.account, "role": p.role,
                "amount": p.amount,
                "policy_cid": None if ev.policy_cid is None else str(ev.policy_cid),
                "time": _time(ev.timestamp),
            }
            for _, ev in self._events(("RewardDistributed",))
            if isinstance(ev, RewardDistributed)
            for p in ev.payouts
        ]  # fmt: skip
        return _frame("payouts", rows)

    def slashes(self) -> pl.DataFrame:
        """Bond penalties: who lost how much of their stake, for which offence and task."""
        rows = [
            {
                "task_cid": None if ev.task_cid is None else str(ev.task_cid),
                "account": ev.account, "offence": ev.offence, "amount": ev.amount,
                "recipient": ev.recipient, "time": _time(ev.timestamp),
            }
            for _, ev in self._events(("StakeSlashed",))
            if isinstance(ev, StakeSlashed)
        ]  # fmt: skip
        return _frame("slashes", rows)

    def audits(self) -> pl.DataFrame:
        """Adaptive verification, a row per result drawn for an audit: whether it was audited
        and why (``probation``, ``stake``, ``sampled``), the referee's ruling (``confirmed``,
        ``overruled``, a ``recheck:`` after its worker was caught), the worker payment held
        and what became of it (``held``, ``released``, ``clawed back``)."""
        rows: dict[str, dict[str, Any]] = {}
        kinds = ("AuditDrawn", "RefereeRuled", "RewardDistributed", "HeldReleased",
                 "ResultClawedBack")  # fmt: skip
        for _, ev in self._events(kinds):
            key = str(getattr(ev, "task_cid", ""))
            if isinstance(ev, AuditDrawn):
                rows[key] = {
                    "task_cid": key, "audited": ev.audited, "reason": ev.reason,
                    "rate_ppm": ev.rate_ppm, "auditors": len(ev.auditors), "referee": None,
                    "held": 0, "payment": None, "time": _time(ev.timestamp),
                }  # fmt: skip
            elif key not in rows:
                continue
            elif isinstance(ev, RefereeRuled):
                ruling = "confirmed" if ev.confirmed else "overruled"
                rows[key]["referee"] = f"recheck: {ruling}" if ev.recheck else ruling
            elif isinstance(ev, RewardDistributed):
                held = sum(p.amount for p in ev.payouts if p.role == "held")
                rows[key]["held"] = held
                rows[key]["payment"] = "held" if held else "paid"
            elif isinstance(ev, HeldReleased):
                rows[key]["payment"] = "released"
            elif isinstance(ev, ResultClawedBack):
                rows[key]["payment"] = "clawed back"
        return _frame("audits", list(rows.values()))

    def reputation(self) -> pl.DataFrame:
        rows = [
            {
                "peer": peer, "score": float(r["score"]), "executions_ok": r["executions_ok"],
                "executions_bad": r["executions_bad"],
                "verifications_ok": r["verifications_ok"],
                "verifications_bad": r["verifications_bad"],
            }
            for peer, r in sorted(self._derived("reputation").items())
        ]  # fmt: skip
        return _frame("reputation", rows)

    def balances(self) -> pl.DataFrame:
        accounts = self._derived("accounts")
        stakes = self._derived("stakes")
        rows = [
            {
                "account": a,
                "balance": int(accounts.get(a, 0)),
                "bonded": int(stakes[a]["bonded"]) if a in stakes else 0,
            }
            for a in sorted(set(accounts) | set(stakes))
        ]
        return _frame("balances", rows)


def open_ledger(path: str | os.PathLike[str]) -> LedgerFrames:
    """Explore a ledger file offline as Polars frames."""
    return LedgerFrames(path)
