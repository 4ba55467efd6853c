"""MeshFeed: the workbench's model of a mesh, folded from its event stream.

Panels are thin views of one :class:`MeshFeed`. The feed replays the ledger once, then
receives every new event **pushed** by the node (``AuthorityNode.subscribe``, called on the
node's driver thread), folds it into its own :class:`~meshbench.core.books.Books` (the same
deterministic fold every node runs, so balances, reputation and policy are exactly the
node's) and keeps the rows the panels show: offers with their selection score broken down,
receipts with their signature checked, escrow timelines, payouts, reputation over time,
proposals and peers. Nothing polls; nothing blocks the kernel.

Subscribers (``feed.subscribe(fn)``) are called with ``(topic, event)`` after each change;
a subscriber that raises is reported in ``feed.errors`` and never breaks the stream.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from meshbench.core import governance as gov
from meshbench.core import reputation
from meshbench.core.books import Books
from meshbench.core.errors import MeshError
from meshbench.core.events import (
    AuditDrawn,
    EscrowStateChanged,
    HeldReleased,
    MeshPolicyActivated,
    MeshPolicyProposal,
    MeshPolicyVote,
    QuorumReached,
    RefereeRuled,
    ResultClawedBack,
    RewardDistributed,
    StakeSlashed,
    TaskAssigned,
    TaskExpired,
)
from meshbench.core.governance import CredentialRevoked, FederationCreated
from meshbench.core.model import Model, decode_object
from meshbench.core.outcome import task_outcome
from meshbench.core.policy import MeshPolicy
from meshbench.core.selection import ScoreBreakdown, score_breakdown
from meshbench.core.types import (
    ComputeOffer,
    Credential,
    ExecutionReceipt,
    PeerInfo,
    TaskIntent,
    VerificationReceipt,
)

if TYPE_CHECKING:
    from meshbench.runtime.node import AuthorityNode

__all__ = ["FeedError", "MeshFeed", "ScoreBreakdown", "score_breakdown"]

log = logging.getLogger("meshbench.workbench")

Subscriber = Callable[[str, Any], None]


@dataclass(frozen=True)
class FeedError:
    """Something the workbench could not show or do, as a message a person can act on."""

    at: datetime
    source: str
    error: str
    message: str

    def __str__(self) -> str:
        return f"{self.source}: {self.error}: {self.message}"


@dataclass
class _TaskView:
    task: TaskIntent
    books: Books
    offers: list[dict[str, Any]] = field(default_factory=list)
    escrow: list[dict[str, Any]] = field(default_factory=list)
    decision: str | None = None
    exit_code: int | None = None
    #: adaptive verification: whether the result was audited and why, the referee, the
    #: held payment and what became of it (one line each, in order)
    audit: list[str] = field(default_factory=list)

    @property
    def outcome(self) -> str | None:
        """The decision, or ``Failed`` for a verified guest failure (core/outcome.py)."""
        return task_outcome(self.decision, self.exit_code)[0]

    @property
    def state(self) -> str:
        """The task's state: its row of the books' ``tasks`` table (the one definition,
        :mod:`meshbench.core.books`; the feed folds the same events with the same rules)."""
        row = self.books.task(self.task.cid)
        return "Published" if row is None else row["state"]


def _audit_line(ev: AuditDrawn | RefereeRuled | HeldReleased | ResultClawedBack) -> str:
    if isinstance(ev, AuditDrawn):
        rate = f"{ev.rate_ppm / 10_000:g} %"
        if not ev.audited:
            return f"not audited (drawn at {rate}, {ev.reason})"
        return f"audited (drawn at {rate}, {ev.reason}) by " + ", ".join(
            short(v) for v in ev.auditors
        )
    if isinstance(ev, RefereeRuled):
        verdict = "confirmed" if ev.confirmed else "overruled"
        return f"referee {'re-check' if ev.recheck else 'ruling'}: {verdict}"
    if isinstance(ev, HeldReleased):
        return f"held payment {ev.amount} released"
    return f"held payment {ev.amount} clawed back to the publisher"


def _time(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, tz=UTC)


def short(did_or_cid: object, n: int = 10) -> str:
    """A short label for a DID or CID (the tail, which is where they differ)."""
    text = str(did_or_cid)
    if text.startswith("did:key:"):
        return "…" + text[-n:]
    return text[:4] + "…" + text[-n:] if len(text) > n + 4 else text


class MeshFeed:
    """The folded, live state of one mesh (or of a ledger file, offline)."""

    def __init__(self, authority: str, *, federation: str | None = None) -> None:
        self.authority = authority
        self.federation = federation
        self.books = Books(authority)
        self.tasks: dict[str, _TaskView] = {}
        self.receipts: list[dict[str, Any]] = []
        self.payouts: list[dict[str, Any]] = []
        self.reputation_points: list[dict[str, Any]] = []
        self.peers: dict[str, PeerInfo] = {}
        self.errors: list[FeedError] = []
        self.events_seen = 0
        #: The newest event time seen (ms): "now" for membership checks, from the ledger.
        self.last_ms = 0
        self._load: dict[str, int] = {}
        self._subscribers: list[Subscriber] = []
        self._node: AuthorityNode | None = None
        #: why each open task cannot proceed now (the node's ``why``), by task CID; only
        #: a feed attached to a node knows it (a ledger file does not say)
        self.waiting: dict[str, str] = {}
        self._stop_waiting: Callable[[], None] | None = None
        self._rejections_seen = 0
        self._changed = threading.Condition()
        self._lock = threading.RLock()

    # --- construction --------------------------------------------------------------------
    @classmethod
    def attach(cls, node: AuthorityNode) -> MeshFeed:
        """Follow a running :class:`~meshbench.runtime.node.AuthorityNode`: replay, then listen.

        The replay and the registration run on the node's driver thread together, so no
        event falls between them.
        """
        feed = cls(node.authority.did, federation=node.federation)
        feed._node = node

        def start() -> None:
            for ev in _ledger_events(node.ledger_path):
                feed.on_event(ev, replay=True)
            feed._rejections_seen = node.rejections.total
            node.subscribe(feed.on_event)  # on the driver thread: at once
            feed.waiting = {str(cid): why for cid, why in node.waiting().items()}
            feed._stop_waiting = node.watch_waiting(feed.on_waiting)

        node.call(start)
        return feed

    @classmethod
    def from_ledger(cls, path: str | Path) -> MeshFeed:
        """The state of a ledger file, offline (no node)."""
        path = Path(path)
        authority = _ledger_authority(path)
        feed = cls(authority)
        for ev in _ledger_events(path):
            feed.on_event(ev, replay=True)
        return feed

    def detach(self) -> None:
        node = self._node
        if node is not None:
            node.unsubscribe(self.on_event)
            if self._stop_waiting is not None:
                self._stop_waiting()
                self._stop_waiting = None
            self._node = None

    @property
    def attached(self) -> bool:
        """Whether this feed still follows a node (``detach`` ends that)."""
        return self._node is not None and self._node.subscribed(self.on_event)

    @contextmanager
    def reading(self) -> Iterator[MeshFeed]:
        """Hold the fold still while a view reads several of its rows together."""
        with self._lock:
            yield self

    # --- subscribers ---------------------------------------------------------------------
    def subscribe(self, fn: Subscriber) -> None:
        self._subscribers.append(fn)

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 30) -> bool:
        """Block until ``predicate()`` holds after some change (or ``timeout`` seconds)."""
        with self._changed:
            return self._changed.wait_for(predicate, timeout=timeout)

    def report(self, source: str, exc: BaseException) -> FeedError:
        err = FeedError(
            at=datetime.now(tz=UTC), source=source, error=type(exc).__name__, message=str(exc)
        )
        self.errors.append(err)
        self._notify("error", err)
        return err

    def _notify(self, topic: str, payload: Any) -> None:
        for fn in list(self._subscribers):
            try:
                fn(topic, payload)
            except Exception as exc:  # a view must never break the stream
                log.exception("workbench subscriber failed")
                if topic != "error":
                    self.report(f"panel ({topic})", exc)
        with self._changed:
            self._changed.notify_all()

    # --- the fold --------------------------------------------------------------------------
    def on_event(self, ev: Model, replay: bool = False) -> None:
        """Fold one ledger event (the node's listener; also used for the replay)."""
        with self._lock:
            try:
                topic = self._fold(ev)
            except Exception as exc:
                self.report(f"event {type(ev).__name__}", exc)
                return
            self.events_seen += 1
        if not replay:
            self._check_rejections()
        self._notify(topic, ev)

    def on_waiting(self, task_cid: object, why: str | None) -> None:
        """The node's word that a task's waiting reason changed (None: it proceeds)."""
        with self._lock:
            if why is None:
                self.waiting.pop(str(task_cid), None)
            else:
                self.waiting[str(task_cid)] = why
        self._notify("waiting", str(task_cid))

    def why(self, task_cid: str) -> str | None:
        """Why the task cannot proceed now, or None (nothing holds it up, or offline)."""
        with self._lock:
            view = self.tasks.get(task_cid)
            if view is not None and view.state in ("Settled", "Expired"):
                return None
            return self.waiting.get(task_cid)

    def _check_rejections(self) -> None:
        node = self._node
        if node is None:
            return
        rejections = node.rejections
        # on the node's driver thread (an event listener), where refusals are recorded: the
        # two reads agree; refusals beyond those the node keeps are not shown
        kept, total = list(rejections), rejections.total
        new = min(max(0, total - self._rejections_seen), len(kept))
        for r in kept[len(kept) - new :]:
            self.report(f"node refused {r.what}", r.error)
        self._rejections_seen = max(self._rejections_seen, total)

    def _fold(self, ev: Model) -> str:
        if isinstance(ev, TaskAssigned):
            self._score_offers(ev)  # with the books as they were when the node selected
        try:
            self.books.apply(ev)
        except MeshError as exc:
            # The node accepted it, so this is a workbench bug or a foreign ledger; say so.
            self.report(f"fold of {type(ev).__name__}", exc)
        stamp = _stamp(ev)
        self.last_ms = max(self.last_ms, stamp or 0)
        at = _time(stamp)
        if isinstance(ev, TaskIntent):
            self.tasks[str(ev.cid)] = _TaskView(task=ev, books=self.books)
            return "tasks"
        if isinstance(ev, ComputeOffer):
            view = self.tasks.get(str(ev.task_cid))
            if view is not None:
                view.offers.append(
                    {"offer": ev, "worker": ev.worker, "cost": ev.cost, "eta_ms": ev.eta_ms,
                     "capacity": ev.capacity, "score": None, "winner": False}
                )  # fmt: skip
            return "offers"
        if isinstance(ev, TaskAssigned):
            self._load[ev.worker] = self._load.get(ev.worker, 0) + 1
            return "offers"
        if isinstance(ev, ExecutionReceipt | VerificationReceipt):
            self._receipt(ev, at)
            return "receipts"
        if isinstance(ev, EscrowStateChanged):
            view = self.tasks.get(str(ev.task_cid))
            if view is not None:
                view.escrow.append(
                    {"from": ev.from_state, "to": ev.to_state, "amount": ev.amount,
                     "reason": ev.reason, "time": at}
                )  # fmt: skip
            return "escrow"
        if isinstance(ev, RewardDistributed):
            for p in ev.payouts:
                self.payouts.append(
                    {"task_cid": str(ev.task_cid), "account": p.account, "role": p.role,
                     "amount": p.amount, "time": at}
                )  # fmt: skip
            view = self.tasks.get(str(ev.task_cid))
            if view is not None:
                worker = next((p.account for p in ev.payouts if p.role in ("worker", "held")), None)
                held = sum(p.amount for p in ev.payouts if p.role == "held")
                if held:
                    view.audit.append(f"payment {held} held for the challenge window")
                if worker and self._load.get(worker):
                    self._load[worker] -= 1
            return "escrow"
        if isinstance(ev, AuditDrawn | RefereeRuled | HeldReleased | ResultClawedBack):
            view = self.tasks.get(str(ev.task_cid))
            if view is not None:
                view.audit.append(_audit_line(ev))
            return "escrow"
        if isinstance(ev, QuorumReached):
            view = self.tasks.get(str(ev.task_cid))
            if view is not None:
                view.decision = ev.outcome
            peers = [ev.worker, *ev.with_quorum, *ev.against_quorum]
            self._reputation_points([p for p in peers if p], ev.timestamp)
            return "reputation"
        if isinstance(ev, TaskExpired):
            if ev.worker:
                self._reputation_points([ev.worker], ev.timestamp)
            return "tasks"
        if isinstance(ev, StakeSlashed):
            return "escrow"
        if isinstance(ev, PeerInfo):
            self.peers[ev.did] = ev
            return "peers"
        if isinstance(
            ev,
            MeshPolicyActivated | MeshPolicyProposal | MeshPolicyVote | FederationCreated
            | Credential | CredentialRevoked,
        ):  # fmt: skip
            return "policy" if not isinstance(ev, Credential | CredentialRevoked) else "peers"
        return "events"

    def _score_offers(self, ev: TaskAssigned) -> None:
        view = self.tasks.get(str(ev.task_cid))
        if view is None:
            return
        task = view.task
        policy = self.books.policy_for(task.federation)
        for row in view.offers:
            offer: ComputeOffer = row["offer"]
            rec = self.books.reputation_record(offer.worker)
            row["score"] = score_breakdown(
                task,
                offer,
                policy,
                reputation=reputation.trusted(rec, ev.timestamp, policy),
                bond=self.books.bonded(offer.worker),
                load=self._load.get(offer.worker, 0),
            )
            row["winner"] = offer.cid == ev.offer_cid

    def _receipt(self, ev: ExecutionReceipt | VerificationReceipt, at: datetime | None) -> None:
        try:
            ev.verify()
            signature = "valid"
        except MeshError as exc:
            signature = f"INVALID ({type(exc).__name__})"
        if isinstance(ev, ExecutionReceipt):
            view = self.tasks.get(str(ev.task_cid))
            if view is not None:
                view.exit_code = ev.exit_code
            row = {"kind": "execution", "peer": ev.worker, "verdict": "—",
                   "fuel": ev.summary.fuel_used, "output_cid": str(ev.output_cid),
                   "reason": "" if ev.exit_code == 0 else f"exit code {ev.exit_code}"}  # fmt: skip
        else:
            row = {"kind": "verification", "peer": ev.verifier,
                   "verdict": "approve" if ev.approved else "reject", "fuel": ev.fuel_used,
                   "output_cid": "" if ev.output_cid is None else str(ev.output_cid),
                   "reason": ev.reason}  # fmt: skip
        row.update(task_cid=str(ev.task_cid), receipt_cid=str(ev.cid), signature=signature, time=at)
        self.receipts.append(row)

    def _reputation_points(self, peers: Iterable[str], at_ms: int) -> None:
        for peer in dict.fromkeys(peers):
            rec = self.books.reputation_record(peer)
            if rec is None:
                continue
            self.reputation_points.append(
                {"peer": peer, "time": _time(at_ms), "score": float(rec["score"]),
                 "executions_ok": rec["executions_ok"], "executions_bad": rec["executions_bad"],
                 "verifications_ok": rec["verifications_ok"],
                 "verifications_bad": rec["verifications_bad"]}
            )  # fmt: skip

    # --- reading (any thread) ------------------------------------------------------------
    def policy(self) -> MeshPolicy:
        with self._lock:
            return self.books.policy_for(self.federation) if self.federation else MeshPolicy()

    def balances(self) -> pl.DataFrame:
        with self._lock:
            accounts = self.books.table("accounts")
            stakes = self.books.table("stakes")
        rows = [
            {"account": a, "balance": int(accounts.get(a, 0)),
             "bonded": int(stakes[a]["bonded"]) if a in stakes else 0}
            for a in sorted(set(accounts) | set(stakes))
        ]  # fmt: skip
        schema = {"account": pl.Utf8, "balance": pl.Int64, "bonded": pl.Int64}
        return pl.DataFrame(rows, schema=schema, orient="row")

    def offers(self, task_cid: str | None = None) -> pl.DataFrame:
        """Offers (of one task, or all) with their score terms and the winner marked."""
        rows = []
        with self._lock:
            views = [self.tasks[task_cid]] if task_cid else list(self.tasks.values())
            for view in views:
                for r in view.offers:
                    s: ScoreBreakdown | None = r["score"]
                    rows.append(
                        {"task_cid": str(view.task.cid), "worker": r["worker"], "cost": r["cost"],
                         "eta_ms": r["eta_ms"], "capacity": r["capacity"],
                         "score_reputation": s and s.reputation, "score_cost": s and s.cost,
                         "score_eta": s and s.eta, "score_capacity": s and s.capacity,
                         "fair_queue_divisor": s and s.fair_queue_divisor,
                         "score": s and s.total, "winner": r["winner"]}
                    )  # fmt: skip
        schema = {
            "task_cid": pl.Utf8, "worker": pl.Utf8, "cost": pl.Int64, "eta_ms": pl.Int64,
            "capacity": pl.Int64, "score_reputation": pl.Float64, "score_cost": pl.Float64,
            "score_eta": pl.Float64, "score_capacity": pl.Float64,
            "fair_queue_divisor": pl.Float64, "score": pl.Float64, "winner": pl.Boolean,
        }  # fmt: skip
        return pl.DataFrame(rows, schema=schema, orient="row")

    def receipts_frame(self) -> pl.DataFrame:
        schema = {
            "task_cid": pl.Utf8, "receipt_cid": pl.Utf8, "kind": pl.Utf8, "peer": pl.Utf8,
            "verdict": pl.Utf8, "fuel": pl.Int64, "output_cid": pl.Utf8, "reason": pl.Utf8,
            "signature": pl.Utf8, "time": pl.Datetime("ms", "UTC"),
        }  # fmt: skip
        with self._lock:
            rows = [{k: r[k] for k in schema} for r in self.receipts]
        return pl.DataFrame(rows, schema=schema, orient="row")

    def reputation_history(self) -> pl.DataFrame:
        """One row per peer per observation: the score after it (the ledger's own fold)."""
        schema = {
            "peer": pl.Utf8, "time": pl.Datetime("ms", "UTC"), "score": pl.Float64,
            "executions_ok": pl.Int64, "executions_bad": pl.Int64,
            "verifications_ok": pl.Int64, "verifications_bad": pl.Int64,
        }  # fmt: skip
        with self._lock:
            rows = list(self.reputation_points)
        return pl.DataFrame(rows, schema=schema, orient="row")

    def proposals(self) -> list[dict[str, Any]]:
        """Proposals of the federation (newest first) with their tallies."""
        with self._lock:
            if not self.federation or self.books.get("federations", self.federation) is None:
                return []
            out = []
            for row in gov.proposals(self.books, self.federation):
                t = gov.tally(self.books, row["cid"])
                out.append(dict(row, tally=t))
            return out

    def policy_history(self) -> list[MeshPolicy]:
        with self._lock:
            if not self.federation:
                return []
            history = gov.policy_history(self.books, self.federation)
            if history:
                return history
            rows = [
                MeshPolicy.from_json(r["json"])
                for r in self.books.table("policy_history").values()
                if r.get("federation") == self.federation
            ]
            return sorted(rows, key=lambda p: p.policy_version)

    def members(self) -> list[str]:
        with self._lock:
            if not self.federation or self.books.get("federations", self.federation) is None:
                return []
            return gov.members(self.books, self.federation, self.last_ms)


def _stamp(ev: Model) -> int | None:
    for name in ("timestamp", "created_at", "updated_at", "at", "issued_at"):
        value = getattr(ev, name, None)
        if isinstance(value, int):
            return value
    return None


def _ledger_events(path: str | Path) -> Iterable[Model]:
    """Every event of a ledger file in order (read-only; the node checked them on append)."""
    db = sqlite3.connect(f"file:{Path(path)}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT data FROM events ORDER BY seq").fetchall()
    finally:
        db.close()
    for (data,) in rows:
        yield decode_object(data, verify_signature=False)


def _ledger_authority(path: Path) -> str:
    from meshbench.core.errors import LedgerError

    if not path.exists():
        raise LedgerError(f"no ledger at {path}")
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        row = db.execute("SELECT value FROM ledger_meta WHERE key = 'authority'").fetchone()
    finally:
        db.close()
    if row is None:
        raise LedgerError(f"{path} has no ledger authority recorded")
    return str(row[0])
