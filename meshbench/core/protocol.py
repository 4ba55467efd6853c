"""The mesh protocol as a sans-IO state machine: ``handle(event, now) -> list[Command]``.

:class:`AuthorityState` is the state of a federation's ledger authority, which orders the events
of every task. Events in are the participants' signed objects (:class:`TaskIntent`,
:class:`ComputeOffer`, :class:`ResultCommitment`, :class:`ExecutionReceipt`,
:class:`VerificationReceipt`, :class:`PeerInfo`, :class:`StakeRequest`) and the stimuli
defined here (:class:`TimeoutFired`, :class:`Faucet`, :class:`PrivateInput`). Commands out
are frozen dataclasses that the runtime (or the simulator) carries out: append to the
ledger, run an execution, ask for a reveal, seal a key, schedule a timeout. Nothing here
does I/O or reads a clock.

Task lifecycle (:data:`TRANSITIONS` is the table, as data; a pair that is not in it raises
:class:`ProtocolError` and changes nothing)::

    Published --offer--> Offered --offer window closes / all offers in--> Assigned
    Assigned --worker commits--> Executed --all verifiers committed--> Verifying
    Executed --verification timeout: commit phase closed--> Executed --worker reveals--> Verifying
    Verifying --verifiers reveal verdicts--> (Accepted | Rejected | NoConsensus) -> Settled
    Verifying --conflict or too few verdicts--> Disputed --more verdicts--> ... -> Settled
    Assigned | Executed | Verifying --worker misses its time--> Assigned (next offer)
        | Offered | Published (no eligible offer: window reopened) | Settled (refund)
    any open state --deadline--> Expired -> Settled (refund)

A task's state is one value, the ``state`` of its row in the books' ``tasks`` table (the
fold of the ledger's events, :mod:`meshbench.core.books`): this module never assigns it, it
emits the events whose fold moves it, and the dispatcher checks that the state it arrives
at is one the table allows. ``Accepted``, ``Rejected``, ``NoConsensus`` and ``Expired`` are
passed through inside a settlement's batch; a task rests in an open state or ``Settled``.

Every stimulus the authority accepts is journalled (:attr:`AuthorityState.journal`, with the
authority's time; the runtime persists it with the events, in one transaction), so a
restarted authority rebuilds itself by feeding the journal through these same handlers
(:meth:`AuthorityState.restore`), and ``story(task)`` reads it back.

Commit-reveal: the worker and every verifier first sign a :class:`ResultCommitment` (a hash
bound to the task, their own DID, their output and a salt), before anyone's output is
revealed; only when the commit phase closes is the worker asked to reveal, and only then
are verifiers asked for verdicts, which must open their own commitments. Copying another
party's output is therefore impossible before committing, and detected after.

Every decision reads the policy through the injected :class:`PolicyView` at that moment,
so a policy activated mid-run governs the very next selection, tally and settlement.
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final, Literal, NamedTuple

from meshbench.core import escrow, quorum, reputation, sampling, selection
from meshbench.core.books import Books, audit_record, cid_key
from meshbench.core.encoding import CID, parse_cid
from meshbench.core.errors import (
    InsufficientFunds,
    LedgerError,
    MeshError,
    ProtocolError,
    TransitionError,
    UnknownPeer,
)
from meshbench.core.events import (
    AuditDrawn,
    EscrowDispute,
    EscrowStateChanged,
    HeldReleased,
    Mint,
    QuorumReached,
    RefereeRuled,
    ResultClawedBack,
    RewardDistributed,
    StakeBonded,
    StakeRequest,
    StakeSlashed,
    StakeUnbonding,
    StakeWithdrawn,
    TaskAssigned,
    TaskExpired,
    VerdictJudged,
)
from meshbench.core.identity import Identity
from meshbench.core.model import Model, Signed
from meshbench.core.policy import MAX_CLOCK_SKEW_MS, MeshPolicy
from meshbench.core.tables import Changes
from meshbench.core.types import (
    ComputeOffer,
    ExecutionReceipt,
    PeerInfo,
    ReputationSnapshot,
    ResultCommitment,
    TaskIntent,
    VerificationReceipt,
    result_commitment,
)
from meshbench.core.views import BooksPolicyView, MembershipView, OpenMembership, PolicyView

__all__ = [
    "OPEN_STATES",
    "REASK_SHARE",
    "TRANSITIONS",
    "AllOffersIn",
    "AppendToLedger",
    "AuthorityState",
    "Broadcast",
    "Command",
    "Faucet",
    "Journaled",
    "JudgeVerdict",
    "PrivateInput",
    "RefereeResult",
    "RefereeRun",
    "RequestReveal",
    "RequestVerdict",
    "Resumed",
    "RunExecution",
    "RunVerification",
    "ScheduleTimeout",
    "SealKey",
    "SnapshotReputation",
    "TaskState",
    "TimeoutFired",
    "Transition",
    "VerdictJudgement",
    "suspended_due",
    "transition_diagram",
    "transition_mermaid",
    "transition_table_markdown",
]

TaskState = Literal[
    "Published",
    "Offered",
    "Assigned",
    "Executed",
    "Verifying",
    "Disputed",
    "Accepted",
    "Rejected",
    "NoConsensus",
    "Expired",
    "Settled",
]
Stage = Literal["offers", "execution", "verification", "deadline", "challenge"]


# --- stimuli that are not signed objects ------------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class TimeoutFired:
    """A timer scheduled by :class:`ScheduleTimeout` went off (stale ones are ignored)."""

    task_cid: CID
    stage: Stage
    token: int


@dataclass(frozen=True, slots=True, kw_only=True)
class AllOffersIn:
    """Every worker asked for an offer has answered: close the offer window now."""

    task_cid: CID


@dataclass(frozen=True, slots=True, kw_only=True)
class Faucet:
    """Genesis/faucet: the ledger authority mints ``amount`` to ``account``."""

    account: str
    amount: int
    memo: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class SnapshotReputation:
    """Record every known peer's current (decayed) reputation as signed snapshot events."""

    federation: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PrivateInput:
    """The task's input is encrypted: seal its key to the worker and verifiers once chosen."""

    task_cid: CID


@dataclass(frozen=True, slots=True, kw_only=True)
class VerdictJudgement:
    """The authority's runtime ran the task's content validator on the worker's and
    ``verifier``'s revealed bytes (asked by :class:`JudgeVerdict`): ``approved`` is the
    validator's answer, ``reason`` why not (bytes missing, outside the tolerance...)."""

    task_cid: CID
    verifier: str
    approved: bool
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class RefereeResult:
    """The authority's runtime re-executed the task itself (asked by :class:`RefereeRun`):
    ``output`` is the CID (text) of what it computed, ``confirmed`` whether the worker's
    revealed output stands (CIDs equal, or the task's content validator agrees)."""

    task_cid: CID
    confirmed: bool
    output: str = ""
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Resumed:
    """The authority starts again after being down (or holding its requests) since
    ``since``, its last recorded time: journalled, so that every later restart knows each
    interval in which nobody could answer it (see :func:`suspended_due`)."""

    since: int


#: After a restart, the share of its stage's timeout a party asked again has at least, from
#: the moment it is asked again, to answer (an answer sent while the authority was down is
#: lost: the authority cannot hold that against it).
REASK_SHARE: Final = 0.5


def suspended_due(scheduled: int, due: int, down: Iterable[tuple[int, int]]) -> int:
    """When a timer set at ``scheduled`` to fire at ``due`` fires if the intervals in which
    the authority was down (``down``: ``(from, to)``) do not count: a party asked to answer
    within a timeout gets that much of the authority's uptime, however often it restarts
    (a restart cannot take the time away, and restarts in a row cannot push it back beyond
    the downtime itself)."""
    left, cursor = due - scheduled, scheduled
    for start, end in sorted(down):
        if end <= cursor:
            continue
        if start >= cursor + left:
            break
        left -= max(0, start - cursor)
        cursor = end
    return cursor + left


#: The stimuli that are not signed objects (a signed object is journalled by its CID).
UNSIGNED_STIMULI: Final = (
    TimeoutFired,
    AllOffersIn,
    Faucet,
    SnapshotReputation,
    PrivateInput,
    VerdictJudgement,
    RefereeResult,
    Resumed,
)


class Journaled(NamedTuple):
    """One accepted stimulus and the authority's time when it was handled."""

    at: int
    stimulus: object


# --- commands --------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class AppendToLedger:
    """Append these events atomically (one transaction); the books already include them,
    and ``changes`` is what folding them changed (the rows the ledger writes with them)."""

    events: tuple[Model, ...]
    changes: Changes = field(default=(), compare=False, repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class Broadcast:
    topic: Literal["tasks", "offers", "executions", "verifications", "peers"]
    obj: Model


@dataclass(frozen=True, slots=True, kw_only=True)
class RunExecution:
    """``worker`` should execute ``task`` and answer with a ResultCommitment."""

    task: TaskIntent
    worker: str
    assignment: TaskAssigned


@dataclass(frozen=True, slots=True, kw_only=True)
class RunVerification:
    """``verifier`` should re-execute ``task`` and answer with a ResultCommitment."""

    task: TaskIntent
    verifier: str
    assignment: TaskAssigned


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestReveal:
    """The commit phase is closed: ``worker`` should send its ExecutionReceipt."""

    task_cid: CID
    worker: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestVerdict:
    """``verifier`` committed; it should now judge ``receipt`` with a VerificationReceipt."""

    task_cid: CID
    verifier: str
    receipt: ExecutionReceipt


@dataclass(frozen=True, slots=True, kw_only=True)
class JudgeVerdict:
    """Run the task's content validator ``validator`` on the worker's output
    (``worker_output``) and the verifier's (``verifier_output``), both revealed to the
    authority, and answer with :class:`VerdictJudgement`. Bytes that cannot be had (or do not
    hash to their CID) are judged ``approved=False``."""

    task_cid: CID
    verifier: str
    validator: str
    wasm_cid: CID
    worker_output: CID
    verifier_output: CID


@dataclass(frozen=True, slots=True, kw_only=True)
class RefereeRun:
    """Re-execute ``task`` here, at the authority (the referee), and answer with
    :class:`RefereeResult` judging ``receipt``; ``recheck``: a held result re-checked after
    its worker was caught."""

    task: TaskIntent
    receipt: ExecutionReceipt
    recheck: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class SealKey:
    """Seal the task input's key to ``recipients`` (and nobody else)."""

    task_cid: CID
    input_cid: CID
    recipients: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class ScheduleTimeout:
    """Deliver ``TimeoutFired(task_cid, stage, token)`` at ``at`` (ms)."""

    task_cid: CID
    stage: Stage
    at: int
    token: int


Command = (
    AppendToLedger
    | Broadcast
    | RunExecution
    | RunVerification
    | RequestReveal
    | RequestVerdict
    | JudgeVerdict
    | RefereeRun
    | SealKey
    | ScheduleTimeout
)


class Transition(NamedTuple):
    """One entry of the table: the handler and the states the task may be in after it."""

    handler: Callable[[AuthorityState, _Task, Any, int], list[Command]]
    next_states: frozenset[str]


def transition_table_markdown() -> str:
    """The transition table as Markdown (``docs/protocol.md`` embeds exactly this)."""
    rows = ["| state | stimulus | handler | next states |", "|---|---|---|---|"]
    rows += [
        f"| {s} | {k} | `{t.handler.__name__}` | {', '.join(sorted(t.next_states))} |"
        for (s, k), t in sorted(TRANSITIONS.items())
    ]
    return "\n".join(rows)


def transition_mermaid() -> str:
    """The table as a Mermaid state diagram, state -> state (``docs/protocol.md``)."""
    edges: dict[tuple[str, str], set[str]] = {}
    for (state, kind), t in sorted(TRANSITIONS.items()):
        for nxt in t.next_states:
            if kind != "Timeout:deadline" or nxt != "Settled" or state == "Published":
                edges.setdefault((state, nxt), set()).add(kind)
    lines = ["stateDiagram-v2", "    [*] --> Published: TaskIntent"]
    for (state, nxt), kinds in sorted(edges.items()):
        label = ", ".join(sorted(kinds)).replace(":", " ")
        lines.append(f"    {state} --> {nxt}: {label}")
    lines += [
        "    Settled --> [*]",
        "    note right of Settled: every open state -> Settled on Timeout deadline (refund)",
    ]
    return "\n".join(lines)


def transition_diagram() -> str:
    """The transition table as a Graphviz ``dot`` graph, state -> state, labelled by stimulus."""
    edges: dict[tuple[str, str], set[str]] = {}
    for (state, kind), t in sorted(TRANSITIONS.items()):
        for nxt in t.next_states:
            edges.setdefault((state, nxt), set()).add(kind)
    lines = ["digraph task {"]
    for (state, nxt), kinds in sorted(edges.items()):
        lines.append(f'  "{state}" -> "{nxt}" [label="{" | ".join(sorted(kinds))}"];')
    lines.append("}")
    return "\n".join(lines)


@dataclass(slots=True)
class _Task:
    """What the authority knows about one task (internal, replaced field by field)."""

    task: TaskIntent
    books: Books
    offers: dict[str, ComputeOffer] = field(default_factory=dict)
    tried: tuple[str, ...] = ()
    attempt: int = -1
    assignment: TaskAssigned | None = None
    assigned_at: int = 0
    verifiers: tuple[str, ...] = ()
    commitments: dict[str, ResultCommitment] = field(default_factory=dict)
    worker_committed_at: int | None = None
    receipt: ExecutionReceipt | None = None
    verdicts: dict[str, VerificationReceipt] = field(default_factory=dict)
    #: content validator: the authority's judgement of each differing verdict, and those
    #: still being judged (the tally waits for them)
    judged: dict[str, bool] = field(default_factory=dict)
    judging: set[str] = field(default_factory=set)
    timers: dict[str, int] = field(default_factory=dict)
    private: bool = False
    disputed: bool = False
    #: the worker has been asked to reveal (all verifiers committed, or the commit timer)
    commit_closed: bool = False
    #: the deadline fired after the reveal and was extended once by the verification timeout
    deadline_extended: bool = False
    #: the policy pinned by the current assignment (its CID is in the signed TaskAssigned)
    policy: MeshPolicy | None = None
    #: the verifiers drawn for the current round (the assignment's, then each dispute's)
    round_verifiers: tuple[str, ...] = ()
    #: why the task cannot proceed now (None while it can): for status lines and handles
    waiting: str | None = None
    #: adaptive verification (the pinned policy's ``audit`` section): sampled audits drawn
    #: when the worker commits, a referee on mismatch, the worker's payment held
    adaptive: bool = False
    #: the referee was asked (a disputed audit), or a held result is being re-checked
    refereeing: bool = False
    rechecking: bool = False
    #: settled, but kept until its held payment is released or clawed back (then forgotten)
    forget_later: bool = False

    @property
    def state(self) -> str:
        """The task's state: its row in the books (the one definition; read only here)."""
        row = self.books.task(self.task.cid)
        return "Published" if row is None else row["state"]

    def new_attempt(self, assignment: TaskAssigned | None) -> None:
        """Forget the previous attempt's commitments, reveal and votes (the one place)."""
        self.assignment = assignment
        if assignment is not None:
            self.attempt = assignment.attempt
            self.assigned_at = assignment.timestamp
            self.tried = (*self.tried, assignment.worker)
            self.verifiers = assignment.verifiers
        self.round_verifiers = self.verifiers
        self.commitments, self.verdicts, self.receipt = {}, {}, None
        self.judged, self.judging = {}, set()
        self.worker_committed_at = None
        self.commit_closed = False
        for stage in ("execution", "verification"):
            self.timers.pop(stage, None)


class AuthorityState:
    """A federation ledger authority's protocol state.

    ``policies`` and ``membership`` are read at every decision; ``books`` is the fold of
    every event this state machine has emitted (pass the ledger's books to resume).
    """

    def __init__(
        self,
        authority: Identity,
        *,
        books: Books | None = None,
        policies: PolicyView | None = None,
        membership: MembershipView | None = None,
        verify_signatures: bool = True,
        record_journal: bool = True,
        forget_settled: bool = False,
    ) -> None:
        """``forget_settled``: the runtime may call :meth:`forget` on settled tasks (the
        state then notes which replay-guard entries belong to each open task)."""
        self.authority = authority
        self.record_journal = record_journal
        #: accepted stimuli not yet taken by the runtime (see :meth:`take_journal`)
        self.journal: list[Journaled] = []
        self.books = books if books is not None else Books(authority.did)
        self.policies: PolicyView = policies or BooksPolicyView(self.books)
        self.membership: MembershipView = membership or OpenMembership()
        self.verify_signatures = verify_signatures
        self.tasks: dict[CID, _Task] = {}
        self.peers: dict[str, PeerInfo] = {}
        self.load: dict[str, int] = {}
        self._seen: set[CID] = set()
        #: per open task, the CIDs in ``_seen`` that only concern it (with forget_settled)
        self._seen_by_task: dict[CID, list[CID]] | None = {} if forget_settled else None
        #: forgotten tasks' intents still in ``_seen``, as (deadline, task CID), earliest first:
        #: each leaves the guard once its deadline has passed (:meth:`_age_out_intents`)
        self._guarded_intents: list[tuple[int, CID]] = []
        #: every TaskIntent with a deadline at or before this is refused: the guard entries
        #: of those deadlines may have left memory
        self._intent_horizon = 0
        self._token = 0
        #: intervals in which this authority was down (journalled :class:`Resumed`)
        self._down: list[tuple[int, int]] = []
        #: after :meth:`replay`: each pending timer's (set at, due), and the time replayed to
        self._replayed: dict[tuple[CID, str, int], tuple[int, int]] | None = None
        self._replayed_to = 0

    # --- public entry point ---
    def handle(self, event: object, now: int) -> list[Command]:
        """Apply one event at time ``now`` (ms); return what the runtime must do.

        Raises a :class:`MeshError` (``ProtocolError``, ``InvalidSignature``,
        ``UnknownPeer``, ``InsufficientFunds``...) for an event that is not allowed; the
        state is then exactly as before. A stale timer (its phase is over) changes nothing.
        Every accepted stimulus is added to :attr:`journal` (when ``record_journal``): the
        runtime takes it with :meth:`take_journal` and persists it before the events the
        stimulus produced.
        """
        try:
            out = self._handle(event, now)
        except _Stale:
            return []
        if self.record_journal:
            self.journal.append(Journaled(now, event))
        return out

    def take_journal(self) -> list[Journaled]:
        """The stimuli accepted since the last call (the caller persists them)."""
        taken, self.journal = self.journal, []
        return taken

    def _handle(self, event: object, now: int) -> list[Command]:
        if isinstance(event, TimeoutFired):
            rec = self.tasks.get(event.task_cid)
            if rec is None or rec.timers.get(event.stage) != event.token:
                raise _Stale  # the phase it guarded is over
            del rec.timers[event.stage]  # a timer fires once
            if event.stage == "challenge":  # a settled task's held payment: not a transition
                return self._on_challenge_end(rec, now)
            try:
                return self._dispatch(rec, f"Timeout:{event.stage}", event, now)
            except MeshError:
                rec.timers[event.stage] = event.token
                raise
        if isinstance(event, AllOffersIn):
            return self._dispatch(self._record(event.task_cid), "AllOffersIn", event, now)
        if isinstance(event, VerdictJudgement):
            return self._dispatch(self._record(event.task_cid), "VerdictJudgement", event, now)
        if isinstance(event, RefereeResult):
            rec = self._record(event.task_cid)
            if rec.state == "Settled":  # a held result re-checked: not a transition
                return self._on_recheck(rec, event, now)
            return self._dispatch(rec, "RefereeResult", event, now)
        if isinstance(event, Faucet):
            return self._on_faucet(event, now)
        if isinstance(event, SnapshotReputation):
            return self._on_snapshot(event, now)
        if isinstance(event, PrivateInput):
            rec = self._record(event.task_cid)
            rec.private = True
            return []
        if isinstance(event, Resumed):
            if event.since < now:
                self._down.append((event.since, now))
            return []
        if not isinstance(event, Signed):
            raise ProtocolError(f"unknown stimulus {type(event).__name__}")
        if event.cid in self._seen:
            raise ProtocolError(f"duplicate {type(event).__name__} {event.cid} (replay)")
        if self.verify_signatures:
            event.verify()
        if isinstance(event, TaskIntent):
            return self._on_task(event, now)
        if isinstance(event, PeerInfo):
            return self._on_peer(event, now)
        if isinstance(event, StakeRequest):
            return self._on_stake(event, now)
        task_cid = getattr(event, "task_cid", None)
        if task_cid is None:
            raise ProtocolError(f"{type(event).__name__} is not a protocol stimulus")
        rec = self._record(task_cid)
        return self._dispatch(rec, type(event).__name__, event, now)

    def policy(self, federation: str) -> MeshPolicy:
        return self.policies.policy_for(federation)

    def _policy_of(self, rec: _Task) -> MeshPolicy:
        """The policy a task is bound by: the one pinned in its assignment (tally, timeouts,
        penalties and settlement use it, whatever is activated meanwhile), else the active."""
        return rec.policy if rec.policy is not None else self.policy(rec.task.federation)

    def state_of(self, task_cid: CID) -> str:
        if task_cid not in self.tasks:
            row = self.books.task(task_cid)  # a forgotten task: what the books say
            if row is not None:
                return str(row["state"])
        return self._record(task_cid).state

    def why(self, task_cid: CID) -> str | None:
        """Why the task cannot proceed now ("needs 3 verifiers, 2 eligible: waiting for
        workers"), or None when nothing holds it up."""
        if task_cid not in self.tasks and self.books.task(task_cid) is not None:
            return None  # forgotten: settled, nothing holds it up
        rec = self._record(task_cid)
        if rec.state == "Settled":
            return None
        if rec.waiting is not None:
            return rec.waiting
        if rec.state == "Published":
            return "no offer yet: waiting for workers to offer"
        return None

    # --- plumbing ---
    def _record(self, task_cid: CID) -> _Task:
        rec = self.tasks.get(task_cid)
        if rec is None:
            raise ProtocolError(f"unknown task {task_cid}")
        return rec

    def _dispatch(self, rec: _Task, kind: str, event: Any, now: int) -> list[Command]:
        state = rec.state
        entry = TRANSITIONS.get((state, kind))
        if entry is None:
            raise ProtocolError(
                f"{kind} is not allowed for task {cid_key(rec.task.cid)} in state {state}"
            )
        out = entry.handler(self, rec, event, now)
        if rec.state not in entry.next_states:
            raise TransitionError(
                f"{entry.handler.__name__} took task {cid_key(rec.task.cid)} from {state} to "
                f"{rec.state}; the table allows {sorted(entry.next_states)}"
            )
        return out

    def _commit(self, events: list[Model]) -> AppendToLedger:
        """Fold ``events`` into the books (atomically, or raise) and make the append."""
        changes = self.books.apply(*events)
        for e in events:
            if isinstance(e, Signed):
                self._seen.add(e.cid)
        if self._seen_by_task is not None:
            self._note_seen(events)
        return AppendToLedger(events=tuple(events), changes=changes)

    def _note_seen(self, events: list[Model]) -> None:
        assert self._seen_by_task is not None
        for e in events:
            owner = getattr(e, "task_cid", None)
            if owner is not None and isinstance(e, Signed):
                self._seen_by_task.setdefault(owner, []).append(e.cid)

    def forget(self, task_cid: CID) -> bool:
        """Drop a settled (or expired) task from memory; True if it was dropped.

        What the task came to stays in the ledger (its events, its journal, and its rows in
        the derived tables, which frames, the story and restore read); what leaves memory is
        the per-task record, its paid-out escrow and task rows in the books, and the replay
        guard of the objects about it. An object about a forgotten task is refused as being
        about an unknown task (typed, nothing changes); its TaskIntent stays guarded until its
        deadline has passed, and after that its deadline refuses it, so it cannot be published
        again. So an authority holds memory for its open tasks, not for
        its history.
        """
        rec = self.tasks.get(task_cid)
        if rec is None or rec.state in OPEN_STATES:
            return False
        if self._still_held(rec):  # its challenge window (or a re-check) is not over
            rec.forget_later = True
            return False
        del self.tasks[task_cid]
        heapq.heappush(self._guarded_intents, (rec.task.deadline, task_cid))
        if self._seen_by_task is not None:
            for cid in self._seen_by_task.pop(task_cid, ()):
                self._seen.discard(cid)
        key = cid_key(task_cid)
        if self.books.evict("escrows", key):  # paid out (an escrow holding tokens stays)
            self.books.evict("tasks", key)
        return True

    def _age_out_intents(self, now: int) -> None:
        """Forgotten tasks' intents leave the replay guard once their deadline has passed: a
        TaskIntent whose deadline is past is refused anyway, and the horizon refuses every
        intent whose deadline is at or before the latest one aged out, even where ``now`` goes
        back (a clock stepped back, a restart on a slow clock). So the guard holds the intents
        of tasks that could still run, not the authority's whole history."""
        heap = self._guarded_intents
        while heap and heap[0][0] <= now:
            deadline, cid = heapq.heappop(heap)
            self._seen.discard(cid)
            self._intent_horizon = max(self._intent_horizon, deadline)

    def _still_held(self, rec: _Task) -> bool:
        """A settled task that still matters: its worker's payment is held (a caught worker's
        held results are re-checked from these records) or a re-check is under way."""
        return (
            rec.rechecking
            or "challenge" in rec.timers
            or self.books.get("held", cid_key(rec.task.cid)) is not None
        )

    def _forget_if_done(self, rec: _Task) -> None:
        """A task whose forgetting waited for its held payment leaves memory once it is done."""
        if rec.forget_later and not self._still_held(rec):
            self.forget(rec.task.cid)

    def _timer(self, rec: _Task, stage: Stage, at: int) -> ScheduleTimeout:
        self._token += 1
        rec.timers[stage] = self._token
        return ScheduleTimeout(task_cid=rec.task.cid, stage=stage, at=at, token=self._token)

    def _sign(self, obj: Signed) -> Any:
        return obj.sign(self.authority)

    def _member(self, federation: str, did: str, now: int) -> None:
        if not self.membership.is_member(federation, did, now):
            raise UnknownPeer(f"{did} is not a member of federation {federation}")

    # --- recovery ---
    def restore(self, history: Iterable[Journaled | Model], now: int) -> list[Command]:
        """Rebuild this (fresh) state after a restart (:meth:`replay`) and ask again for
        everything open tasks wait on (:meth:`reissue`), at ``now``."""
        self.replay(history, now)
        return self.reissue(now)

    def replay(
        self, history: Iterable[Journaled | Model], now: int, *, since: int | None = None
    ) -> None:
        """Rebuild this (fresh) state by replaying the ledger's history.

        ``history`` is the ledger in order: each journalled stimulus (:class:`Journaled`)
        is fed through :meth:`handle` at its recorded time, exactly as it was live, and the
        events it produces must be the ones the ledger holds next (same CIDs: signing is
        deterministic), else :class:`LedgerError`; events no stimulus produced (governance,
        policy) are folded as they come. Then a :class:`Resumed` is journalled at ``now``:
        from the last recorded time (or ``since``, the runtime's later mark of being alive,
        if it has one) until now the authority was down.
        """
        if self.tasks or self._seen or self.books.minted():
            raise ProtocolError("replay() needs a fresh AuthorityState (empty books)")
        expected: list[CID] = []
        timers: dict[tuple[CID, str, int], tuple[int, int]] = {}
        last = None
        for item in history:
            if isinstance(item, Journaled):
                if expected:
                    raise LedgerError(f"the journal resumes before event {expected[0]} was seen")
                last = item.at
                for cmd in self.handle(item.stimulus, item.at):
                    if isinstance(cmd, AppendToLedger):
                        expected += [e.cid for e in cmd.events]
                    elif isinstance(cmd, ScheduleTimeout):
                        timers[(cmd.task_cid, cmd.stage, cmd.token)] = (item.at, cmd.at)
                expected.reverse()
                continue
            if expected:
                want = expected.pop()
                if item.cid != want:
                    raise LedgerError(
                        f"replaying the journal gives event {want}, the ledger holds {item.cid}"
                    )
                continue
            self.books.apply(item)  # an event no stimulus produced (governance, policy)
            if isinstance(item, Signed):
                self._seen.add(item.cid)
        if expected:
            raise LedgerError(f"the ledger ends before event {expected[-1]} the journal produces")
        self.journal.clear()  # replayed, not new
        self._replayed, self._replayed_to = timers, now
        alive = max(x for x in (last, since, 0) if x is not None)
        self.handle(Resumed(since=min(now, alive or now)), now)

    @property
    def replaying(self) -> bool:
        """Replayed, and not yet :meth:`reissue`-d."""
        return self._replayed is not None

    def reissue(self, now: int) -> list[Command]:
        """After :meth:`replay`: every open task's outstanding requests again, and its
        pending timers (none before ``now``). A runtime that held its requests since the
        replay (until it knew its workers) calls it then: that wait is journalled as
        downtime too. The time a party had to answer an execution or verification request
        does not count the intervals the authority was down (:func:`suspended_due`), and a
        party asked again has at least :data:`REASK_SHARE` of that timeout to answer the
        request again (its first answer may have been lost with the authority)."""
        if self._replayed is None:
            raise ProtocolError("reissue() follows replay()")
        timers, self._replayed = self._replayed, None
        if now > self._replayed_to:
            self.handle(Resumed(since=self._replayed_to), now)
        out: list[Command] = []
        for rec in self.tasks.values():
            if rec.rechecking and rec.receipt is not None:  # a held result being re-checked
                out.append(RefereeRun(task=rec.task, receipt=rec.receipt, recheck=True))
            if rec.state in OPEN_STATES or "challenge" in rec.timers:
                out += self._outstanding(rec, now) if rec.state in OPEN_STATES else []
                for stage, token in sorted(rec.timers.items()):
                    key = (rec.task.cid, stage, token)
                    if key in timers:
                        set_at, at = timers[key]
                        if stage in ("execution", "verification"):
                            grace = int(self._stage_timeout(rec, stage) * REASK_SHARE)
                            at = max(suspended_due(set_at, at, self._down), now + grace)
                    else:  # set after the replay (while requests were held): as it was
                        continue
                    out.append(
                        ScheduleTimeout(
                            task_cid=rec.task.cid,
                            stage=stage,  # type: ignore[arg-type]
                            at=max(now, at),
                            token=token,
                        )
                    )
        return out

    def _stage_timeout(self, rec: _Task, stage: str) -> int:
        policy = self._policy_of(rec)
        if stage == "execution":
            return policy.scheduling.task_timeout * 1000
        return policy.verification_quorum.verification_timeout * 1000

    def _outstanding(self, rec: _Task, now: int) -> list[Command]:
        """The requests an open task still waits on (sent again after a restart)."""
        a = rec.assignment
        if a is None:
            return [Broadcast(topic="tasks", obj=rec.task)] if rec.state == "Published" else []
        out: list[Command] = []
        if a.worker not in rec.commitments:
            out.append(RunExecution(task=rec.task, worker=a.worker, assignment=a))
        for v in rec.verifiers:
            if v not in rec.commitments:
                out.append(RunVerification(task=rec.task, verifier=v, assignment=a))
            elif rec.receipt is not None and v not in rec.verdicts:
                out.append(RequestVerdict(task_cid=rec.task.cid, verifier=v, receipt=rec.receipt))
        if rec.commit_closed and rec.receipt is None:
            out.append(RequestReveal(task_cid=rec.task.cid, worker=a.worker))
        if rec.refereeing and rec.receipt is not None:
            out.append(RefereeRun(task=rec.task, receipt=rec.receipt))
        return out

    # --- faucet, peers, stake ----------------------------------------------------------------
    def _on_faucet(self, ev: Faucet, now: int) -> list[Command]:
        if ev.amount <= 0:
            raise ProtocolError(f"a faucet amount must be positive, not {ev.amount}")
        mint = self._sign(
            Mint(
                authority=self.authority.did,
                account=ev.account,
                amount=ev.amount,
                memo=ev.memo,
                timestamp=now,
            )
        )
        return [self._commit([mint])]

    def _on_snapshot(self, ev: SnapshotReputation, now: int) -> list[Command]:
        policy = self.policy(ev.federation)
        snaps: list[Model] = []
        for peer, rec in sorted(self.books.table("reputation").items()):
            snaps.append(
                self._sign(
                    ReputationSnapshot(
                        authority=self.authority.did,
                        peer=peer,
                        federation=ev.federation,
                        score=reputation.decayed(rec, now, policy),
                        executions_ok=rec["executions_ok"],
                        executions_bad=rec["executions_bad"],
                        verifications_ok=rec["verifications_ok"],
                        verifications_bad=rec["verifications_bad"],
                        at=now,
                    )
                )
            )
        return [self._commit(snaps)] if snaps else []

    def _on_peer(self, info: PeerInfo, now: int) -> list[Command]:
        self._member(info.federation, info.did, now)
        old = self.peers.get(info.did)
        if old is not None and old.updated_at >= info.updated_at:
            raise ProtocolError(f"stale PeerInfo for {info.did} (updated_at {info.updated_at})")
        cmd = self._commit([info])
        self.peers[info.did] = info
        out: list[Command] = [cmd]
        if old is None and "worker" in info.roles:
            # a worker that joins late is asked about the tasks still waiting for offers
            out += [
                Broadcast(topic="tasks", obj=rec.task)
                for rec in self.tasks.values()
                if rec.state in ("Published", "Offered")
            ]
        return out

    def _on_stake(self, req: StakeRequest, now: int) -> list[Command]:
        self._member(req.federation, req.account, now)
        policy = self.policy(req.federation)
        bonding = policy.bonding_requirements
        if req.token not in bonding.tokens:
            raise ProtocolError(
                f"token {req.token!r} is not bondable here; allowed: {bonding.tokens}"
            )
        common = {"authority": self.authority.did, "account": req.account, "amount": req.amount}
        parents = (req.cid,)
        ev: Signed
        if req.action == "bond":
            ev = StakeBonded(**common, token=req.token, timestamp=now, parents=parents)
        elif req.action == "unbond":
            unlock = now + bonding.lock_period * 1000
            ev = StakeUnbonding(**common, unlock_at=unlock, timestamp=now, parents=parents)
        else:
            ev = StakeWithdrawn(**common, timestamp=now, parents=parents)
        return [self._commit([req, self._sign(ev)])]

    # --- publish and offers ---
    def _on_task(self, task: TaskIntent, now: int) -> list[Command]:
        self._member(task.federation, task.publisher, now)
        if task.cid in self.tasks:
            raise ProtocolError(f"task {task.cid} was already published")
        self._age_out_intents(now)
        if task.deadline <= self._intent_horizon:
            raise ProtocolError(
                f"task deadline {task.deadline} is not after {self._intent_horizon}, a deadline "
                "this authority has already seen pass (a task as old may have been published)"
            )
        policy = self.policy(task.federation)
        minimum = policy.min_fee_for(task.scope)
        if task.fee < minimum:
            raise ProtocolError(f"fee {task.fee} is below the minimum {minimum} for this scope")
        if task.deadline <= now:
            raise ProtocolError(f"task deadline {task.deadline} has already passed (now {now})")
        _within_skew(task.created_at, now, "task")
        horizon = policy.bonding_requirements.lock_period * 1000
        if task.deadline - now > horizon:
            raise ProtocolError(
                f"task deadline is {(task.deadline - now) // 1000} s away; at most the bond lock "
                f"period ({horizon // 1000} s), so the stake that backs it stays slashable"
            )
        have = self.books.balance(task.publisher)
        if have < task.fee:
            raise InsufficientFunds(
                f"{task.publisher} holds {have}; publishing needs the fee {task.fee} in escrow"
            )
        created = self._sign(
            EscrowStateChanged(
                authority=self.authority.did,
                task_cid=task.cid,
                to_state="Created",
                amount=task.fee,
                reason="fee locked at publish",
                timestamp=now,
                parents=(task.cid,),
            )
        )
        cmd = self._commit([task, created])
        rec = _Task(task=task, books=self.books)
        self.tasks[task.cid] = rec
        window = now + policy.selection.offer_window_ms
        return [
            cmd,
            Broadcast(topic="tasks", obj=task),
            self._timer(rec, "offers", window),
            self._timer(rec, "deadline", task.deadline),
        ]

    def _on_offer(self, rec: _Task, offer: ComputeOffer, now: int) -> list[Command]:
        task = rec.task
        policy = self.policy(task.federation)
        if offer.worker in rec.offers:
            raise ProtocolError(f"{offer.worker} already offered for this task (double offer)")
        self._member(offer.federation, offer.worker, now)
        _within_skew(offer.created_at, now, "offer")  # when it arrives, not when ranked
        problems = selection.offer_problems(
            task,
            offer,
            policy,
            self.membership,
            bond=self.books.bonded(offer.worker),
            # a full queue is checked when the task is assigned, not here: an offer refused
            # for it left the task with none recorded (asked for again, at best, each
            # window), where a recorded one is taken once the queue has room
            load=None,
            now_ms=now,
        )
        if problems:
            raise ProtocolError("offer refused: " + "; ".join(problems))
        cmd = self._commit([offer])
        rec.offers[offer.worker] = offer
        return [cmd]

    def _on_all_offers_in(self, rec: _Task, ev: AllOffersIn, now: int) -> list[Command]:
        rec.timers.pop("offers", None)  # the window closes now, not at its timer
        return self._on_offer_window(rec, ev, now)

    def _on_offer_window(self, rec: _Task, _ev: object, now: int) -> list[Command]:
        policy = self.policy(rec.task.federation)
        window = now + max(1, policy.selection.offer_window_ms)
        if rec.state == "Published":
            # no offer was recorded (lost, or refused as it came, or nobody can serve it): a
            # worker offers when it is asked, so ask again, each window until the deadline
            rec.waiting = "no offer yet: the task is asked for again each offer window"
            return [Broadcast(topic="tasks", obj=rec.task), self._timer(rec, "offers", window)]
        if not self._eligible_offers(rec, policy, now):
            # offers, none eligible now: keep the window open until the deadline
            rec.waiting = f"none of the {len(rec.offers)} offers is eligible: waiting for workers"
            return [self._timer(rec, "offers", window)]
        return self._assign(rec, now, events=[])

    # --- assignment ---
    def _eligible_offers(self, rec: _Task, policy: MeshPolicy, now: int) -> list[ComputeOffer]:
        out = []
        for worker, offer in rec.offers.items():
            if worker in rec.tried:
                continue
            problems = selection.offer_problems(
                rec.task,
                offer,
                policy,
                self.membership,
                bond=self.books.bonded(worker),
                load=self.load.get(worker, 0),
                now_ms=now,
            )
            if not problems:
                out.append(offer)
        return out

    def _trusted(self, did: str, now: int, policy: MeshPolicy) -> float:
        """Reputation as selection ranks it: discounted by how little record is behind it."""
        return reputation.trusted(self.books.reputation_record(did), now, policy)

    def _reputation(self, did: str, now: int, policy: MeshPolicy) -> float:
        return reputation.decayed(self.books.reputation_record(did), now, policy)

    def _verifier_candidates(
        self, rec: _Task, worker: str, policy: MeshPolicy, now: int, exclude: tuple[str, ...]
    ) -> list[str]:
        fed = rec.task.federation
        worker_fed = self.peers[worker].federation if worker in self.peers else None
        worker_hw = self.peers[worker].hardware if worker in self.peers else None
        same_class = rec.task.scope.gpu_flops > 0 and policy.selection.homogeneous_gpu_verifiers
        min_stake = policy.bonding_requirements.min_stake
        out = []
        for did, info in self.peers.items():
            if did in (worker, rec.task.publisher) or did in exclude:
                continue
            if "verifier" not in info.roles or self.books.bonded(did) < min_stake:
                continue
            if self._reputation(did, now, policy) < reputation.MIN_VERIFIER_REPUTATION:
                continue  # a caught cheater does not judge others (bond alone is not enough)
            if rec.task.scope.gpu_flops > 0 and (
                info.hardware is None or not info.hardware.satisfies(rec.task.scope)
            ):
                continue  # a GPU task is re-executed only where it can run (like its worker)
            if same_class and (
                worker_hw is None
                or info.hardware is None
                or info.hardware.gpu_class != worker_hw.gpu_class
            ):
                continue
            if policy.selection.distinct_verifier_federation and info.federation == worker_fed:
                continue
            if not self.membership.is_member(info.federation, did, now):
                continue
            if policy.require_credentials and not self.membership.has_credential(fed, did, now):
                continue
            out.append(did)
        return out

    def _absent(self, now: int) -> frozenset[str]:
        """Peers that missed their last assignment: drawn after every present one."""
        return selection.absent_peers(self.books.table("absent"), now)

    def _draw_seed(self, rec: _Task, salt: str) -> bytes:
        msg = b"meshbench/draw/v1\0" + bytes(rec.task.cid) + salt.encode()
        return hashlib.sha256(self.authority.sign(msg)).digest()

    def _assign(self, rec: _Task, now: int, events: list[Model]) -> list[Command]:
        """Decide who works (:meth:`_choose`), then carry that decision out."""
        policy = self.policy(rec.task.federation)
        choice = self._choose(rec, now, policy)
        if isinstance(choice, str):
            if choice == "exhausted":
                return self._expire(rec, now, events, f"{rec.attempt + 1} assignments failed")
            # no eligible offer: ask workers again. Too few verifiers: asking workers cannot
            # help (and a runtime that closes offer rounds as soon as every worker answered
            # would spin): wait a window for verifiers.
            return self._reopen(rec, now, events, policy, ask_workers=choice == "no_offer")
        return self._apply_assignment(rec, now, events, policy, *choice)

    def _choose(
        self, rec: _Task, now: int, policy: MeshPolicy
    ) -> tuple[ComputeOffer, list[str]] | Literal["exhausted", "no_offer", "no_verifiers"]:
        """The pure decision of an assignment: the best eligible offer and the drawn
        verifiers, or why there is none. Changes nothing."""
        task = rec.task
        offers = selection.rank_offers(
            task,
            self._eligible_offers(rec, policy, now),
            policy,
            reputation_of=lambda d: reputation.trusted(
                self.books.reputation_record(d), now, policy
            ),
            bond_of=self.books.bonded,
            load_of=lambda d: self.load.get(d, 0),
        )
        attempt = rec.attempt + 1
        if attempt >= policy.selection.max_attempts:
            return "exhausted"
        q = policy.verification_quorum
        k = q.verifiers_for(task.verifier_count)
        raised = (
            f"; k raised from {task.verifier_count} to {k} by policy minimum_verifiers"
            if k > task.verifier_count
            else ""
        )
        if not offers:
            rec.waiting = (
                f"no eligible offer ({len(rec.offers)} received, {len(rec.tried)} tried): "
                f"waiting for workers{raised}"
            )
            return "no_offer"
        offer = offers[0]
        candidates = self._verifier_candidates(rec, offer.worker, policy, now, ())
        if sampling.adaptive(policy, task, private=rec.private):
            # auditors are drawn when the worker has committed (it cannot know whether)
            need = policy.audit.auditors
            if len(candidates) < need:
                rec.waiting = (
                    f"needs {need} eligible auditor(s), {len(candidates)} eligible: "
                    "waiting for workers"
                )
                return "no_verifiers"
            rec.waiting = None
            return offer, []
        verifiers = selection.draw_verifiers(
            self._draw_seed(rec, f"a{attempt}"), candidates, k, self._absent(now)
        )
        if len(verifiers) < max(1, q.minimum_verifiers):
            rec.waiting = (
                f"needs {k} verifiers, {len(candidates)} eligible: waiting for workers{raised}"
            )
            return "no_verifiers"
        rec.waiting = None
        return offer, verifiers

    def _apply_assignment(
        self,
        rec: _Task,
        now: int,
        events: list[Model],
        policy: MeshPolicy,
        offer: ComputeOffer,
        verifiers: list[str],
    ) -> list[Command]:
        """Sign the assignment, move the escrow, commit, and ask the chosen parties."""
        task, attempt = rec.task, rec.attempt + 1
        assignment = self._sign(
            TaskAssigned(
                assigner=self.authority.did,
                task_cid=task.cid,
                offer_cid=offer.cid,
                worker=offer.worker,
                verifiers=tuple(verifiers),
                attempt=attempt,
                price=offer.cost,
                due_at=now + offer.eta_ms,
                timestamp=now,
                policy_cid=policy.cid,
                parents=(task.cid, offer.cid),
            )
        )
        batch = [*events, assignment]
        escrow_row = self.books.escrow(task.cid)
        if escrow_row is not None and escrow_row["state"] == "Created":
            batch.append(
                self._sign(
                    EscrowStateChanged(
                        authority=self.authority.did,
                        task_cid=task.cid,
                        from_state="Created",
                        to_state="InProgress",
                        amount=escrow_row["amount"],
                        reason="worker assigned",
                        timestamp=now,
                        parents=(assignment.cid,),
                    )
                )
            )
        cmd = self._commit(batch)
        if rec.assignment is not None:
            self._release(rec.assignment.worker)
        rec.new_attempt(assignment)
        rec.policy = policy  # pinned: this attempt is tallied and settled under it
        rec.adaptive = sampling.adaptive(policy, task, private=rec.private)
        self.load[offer.worker] = self.load.get(offer.worker, 0) + 1
        out: list[Command] = [cmd]
        if rec.private:
            out.append(
                SealKey(
                    task_cid=task.cid,
                    input_cid=task.input_cid,
                    recipients=(offer.worker, *verifiers),
                )
            )
        out.append(RunExecution(task=task, worker=offer.worker, assignment=assignment))
        out += [RunVerification(task=task, verifier=v, assignment=assignment) for v in verifiers]
        timeout = policy.scheduling.task_timeout * 1000
        out.append(self._timer(rec, "execution", now + timeout))
        return out

    def _reopen(
        self,
        rec: _Task,
        now: int,
        events: list[Model],
        policy: MeshPolicy,
        *,
        ask_workers: bool,
    ) -> list[Command]:
        """No worker (or too few verifiers) now: try again each offer window until the
        deadline, re-broadcasting the task only when a new worker offer could help."""
        out: list[Command] = [self._commit(events)] if events else []
        if rec.assignment is not None:
            self._release(rec.assignment.worker)
        rec.new_attempt(None)
        if ask_workers:
            out.append(Broadcast(topic="tasks", obj=rec.task))
        out.append(self._timer(rec, "offers", now + max(1, policy.selection.offer_window_ms)))
        return out

    def _release(self, worker: str) -> None:
        left = self.load.get(worker, 0) - 1
        if left > 0:
            self.load[worker] = left
        else:
            self.load.pop(worker, None)

    # --- commit and reveal ---
    def _on_commitment(self, rec: _Task, c: ResultCommitment, now: int) -> list[Command]:
        assert rec.assignment is not None
        is_worker = c.worker == rec.assignment.worker
        if not is_worker and c.worker not in rec.verifiers:
            raise ProtocolError(f"{c.worker} is not assigned to task {c.task_cid}")
        if c.worker in rec.commitments:
            raise ProtocolError(f"{c.worker} already committed for this task")
        if is_worker and rec.state == "Disputed":
            raise ProtocolError("the worker's commitment is closed")
        if rec.commit_closed and rec.state != "Disputed":
            raise ProtocolError("the commit phase is closed: the worker was asked to reveal")
        if rec.state == "Disputed" and c.worker not in rec.round_verifiers:
            # drawn in an earlier round and silent then: it cannot join once the dispute
            # (and so the worker's output) is known; it is penalised at settlement
            raise ProtocolError(
                f"{c.worker} did not commit in its own round; only this dispute's verifiers may"
            )
        _within_skew(c.created_at, now, "commitment")
        drawn = self._draw_audit(rec, c, now) if is_worker and rec.adaptive else None
        cmd = self._commit([c] if drawn is None else [c, drawn])
        rec.commitments[c.worker] = c
        out: list[Command] = [cmd]
        if drawn is not None and drawn.auditors:
            rec.verifiers = rec.round_verifiers = drawn.auditors
            out += [
                RunVerification(task=rec.task, verifier=v, assignment=rec.assignment)
                for v in drawn.auditors
            ]
        if is_worker:
            rec.worker_committed_at = now
            rec.timers.pop("execution", None)
            timeout = self._policy_of(rec).verification_quorum.verification_timeout
            out.append(self._timer(rec, "verification", now + timeout * 1000))
        elif rec.state == "Disputed" and rec.receipt is not None:
            out.append(RequestVerdict(task_cid=c.task_cid, verifier=c.worker, receipt=rec.receipt))
        if rec.state == "Verifying" and not rec.commit_closed:  # the last one committed
            out += self._close_commit_phase(rec)
            if not is_worker:
                # the worker is asked to reveal now: its window runs from here, as it does
                # when the timer closes the phase (counted from its own commitment, a verifier
                # committing late, back from a restart, left it seconds and a no-show slash)
                timeout = self._policy_of(rec).verification_quorum.verification_timeout
                out.append(self._timer(rec, "verification", now + timeout * 1000))
        return out

    def _draw_audit(self, rec: _Task, c: ResultCommitment, now: int) -> AuditDrawn:
        """Whether the worker's result is audited, drawn from the authority's signature over
        its commitment (the worker could not know it; anyone can check it), and by whom."""
        assert rec.assignment is not None
        policy, worker = self._policy_of(rec), rec.assignment.worker
        rate, reason = sampling.audit_rate(
            policy,
            price=rec.assignment.price,
            bond=self.books.slashable(worker),
            **audit_record(self.books, worker),
        )
        draw = self.authority.sign(sampling.draw_message(c.cid))
        audited = sampling.draw_ppm(draw) < rate
        auditors: tuple[str, ...] = ()
        if audited:
            candidates = self._verifier_candidates(rec, worker, policy, now, ())
            seed = hashlib.sha256(draw).digest()
            auditors = tuple(
                selection.draw_verifiers(seed, candidates, policy.audit.auditors, self._absent(now))
            )
        return self._sign(
            AuditDrawn(
                authority=self.authority.did,
                task_cid=rec.task.cid,
                commitment_cid=c.cid,
                draw=draw,
                rate_ppm=rate,
                reason=reason,  # type: ignore[arg-type]
                audited=audited,
                auditors=auditors,
                timestamp=now,
                parents=(c.cid,),
            )
        )

    def _close_commit_phase(self, rec: _Task) -> list[Command]:
        assert rec.assignment is not None
        rec.commit_closed = True
        return [RequestReveal(task_cid=rec.task.cid, worker=rec.assignment.worker)]

    def _on_reveal(self, rec: _Task, receipt: ExecutionReceipt, now: int) -> list[Command]:
        assert rec.assignment is not None
        if receipt.worker != rec.assignment.worker:
            raise ProtocolError(f"{receipt.worker} is not the assigned worker of this task")
        if rec.receipt is not None:
            raise ProtocolError("the worker already revealed its receipt")
        if not rec.commit_closed:
            raise ProtocolError("the commit phase is still open: a reveal is not asked for yet")
        commitment = rec.commitments[receipt.worker]
        if commitment.commitment != receipt.result_commitment:
            raise ProtocolError("the receipt does not open the worker's commitment")
        pin = self._policy_of(rec).engine_pin
        if pin and receipt.summary.engine != pin:
            raise ProtocolError(f"engine {receipt.summary.engine!r} is not the pinned {pin!r}")
        cmd = self._commit([receipt])
        rec.receipt = receipt
        out: list[Command] = [cmd]
        for v in rec.verifiers:
            if v in rec.commitments:
                out.append(RequestVerdict(task_cid=receipt.task_cid, verifier=v, receipt=receipt))
        if not any(v in rec.commitments for v in rec.verifiers):
            out += self._decide(rec, now)
        return out

    def _on_verdict(self, rec: _Task, vr: VerificationReceipt, now: int) -> list[Command]:
        if vr.verifier not in rec.verifiers:
            raise ProtocolError(f"{vr.verifier} is not a verifier of this task")
        if vr.verifier in rec.verdicts:
            raise ProtocolError(f"{vr.verifier} already voted on this task (double vote)")
        own = rec.commitments.get(vr.verifier)
        if own is None:
            raise ProtocolError(f"{vr.verifier} did not commit before the reveal; vote refused")
        if rec.receipt is None or vr.receipt_cid != rec.receipt.cid:
            raise ProtocolError("the verdict is not about the worker's revealed receipt")
        if vr.output_cid is not None:
            opened = result_commitment(vr.task_cid, vr.verifier, vr.output_cid, vr.salt)
            if opened != own.commitment:
                raise ProtocolError("the verdict does not open the verifier's own commitment")
            same = vr.output_cid == rec.receipt.output_cid
            if rec.task.validator == "exact" and vr.approved != same:
                raise ProtocolError("approved must say whether the verifier's output matches")
            if same and not vr.approved:
                raise ProtocolError("a verifier whose output is identical must approve")
        elif vr.approved:
            raise ProtocolError("a verifier without an output cannot approve")
        pin = self._policy_of(rec).engine_pin
        if pin and vr.engine != pin:
            raise ProtocolError(f"verifier engine {vr.engine!r} is not the pinned {pin!r}")
        cmd = self._commit([vr])
        rec.verdicts[vr.verifier] = vr
        out: list[Command] = [cmd]
        if self._needs_judgement(rec, vr):
            rec.judging.add(vr.verifier)
            assert vr.output_cid is not None
            out.append(
                JudgeVerdict(
                    task_cid=vr.task_cid,
                    verifier=vr.verifier,
                    validator=rec.task.validator,
                    wasm_cid=rec.task.wasm_cid,
                    worker_output=rec.receipt.output_cid,
                    verifier_output=vr.output_cid,
                )
            )
        return out + self._decide_if_complete(rec, now)

    @staticmethod
    def _needs_judgement(rec: _Task, vr: VerificationReceipt) -> bool:
        """Under a content validator a differing output is judged by the authority."""
        return (
            rec.task.validator != "exact"
            and rec.receipt is not None
            and vr.output_cid is not None
            and vr.output_cid != rec.receipt.output_cid
        )

    def _decide_if_complete(self, rec: _Task, now: int) -> list[Command]:
        """Decide once every committed verifier has voted and every vote is judged."""
        waiting = [v for v in rec.verifiers if v in rec.commitments and v not in rec.verdicts]
        # in a dispute only that round's verifiers may still commit: once they all have, a
        # silent earlier one is not waited for (it is penalised at settlement)
        commit_closed = rec.state == "Verifying" or all(
            v in rec.commitments for v in rec.round_verifiers
        )
        if not waiting and commit_closed and not rec.judging:
            return self._decide(rec, now)
        return []

    def _on_judgement(self, rec: _Task, ev: VerdictJudgement, now: int) -> list[Command]:
        if ev.verifier not in rec.judging:
            raise ProtocolError(f"no judgement of {ev.verifier}'s verdict is awaited")
        vr = rec.verdicts[ev.verifier]
        judged = self._sign(
            VerdictJudged(
                authority=self.authority.did,
                task_cid=rec.task.cid,
                verdict_cid=vr.cid,
                verifier=ev.verifier,
                validator=rec.task.validator,
                approved=ev.approved,
                reason=ev.reason[:1024],
                timestamp=now,
                parents=(vr.cid,),
            )
        )
        cmd = self._commit([judged])
        rec.judging.discard(ev.verifier)
        rec.judged[ev.verifier] = ev.approved
        return [cmd, *self._decide_if_complete(rec, now)]

    # --- timeouts ---
    def _on_execution_timeout(self, rec: _Task, _ev: TimeoutFired, now: int) -> list[Command]:
        return self._worker_failed(rec, now, "execution", "no commitment in time")

    def _on_verification_timeout(self, rec: _Task, _ev: TimeoutFired, now: int) -> list[Command]:
        rec.timers.pop("verification", None)
        if not rec.commit_closed:  # some verifiers never committed: reveal anyway
            out = self._close_commit_phase(rec)
            timeout = self._policy_of(rec).verification_quorum.verification_timeout
            return [*out, self._timer(rec, "verification", now + timeout * 1000)]
        if rec.receipt is None:
            return self._worker_failed(rec, now, "reveal", "committed but never revealed")
        return self._decide(rec, now)

    def _on_deadline(self, rec: _Task, _ev: TimeoutFired, now: int) -> list[Command]:
        if rec.receipt is None:
            return self._expire(rec, now, [], "deadline passed")
        # The worker revealed: its work is not forfeited by a deadline that fires while
        # the verdicts come in. Wait once more by the verification timeout for committed
        # verifiers still to vote, then decide on the verdicts in hand (no escalation).
        waiting = [v for v in rec.verifiers if v in rec.commitments and v not in rec.verdicts]
        if waiting and not rec.deadline_extended:
            rec.deadline_extended = True
            return [self._timer(rec, "deadline", now + self._stage_timeout(rec, "verification"))]
        return self._decide(rec, now, final=True)

    def _worker_failed(self, rec: _Task, now: int, stage: str, why: str) -> list[Command]:
        assert rec.assignment is not None
        worker = rec.assignment.worker
        policy = self._policy_of(rec)
        expired = self._sign(
            TaskExpired(
                authority=self.authority.did,
                task_cid=rec.task.cid,
                stage=stage,
                worker=worker,
                reason=why,
                timestamp=now,
                parents=(rec.assignment.cid,),
            )
        )
        events: list[Model] = [expired]
        slash = self._slash(worker, policy.penalties.no_show_percentage, rec, "no_show", now)
        events += slash
        return self._assign(rec, now, events)

    # --- decisions and settlement ---
    def _decide(self, rec: _Task, now: int, *, final: bool = False) -> list[Command]:
        policy = self._policy_of(rec)
        q = policy.verification_quorum
        votes = self._votes(rec)
        if rec.adaptive and not rec.disputed:
            return self._decide_sampled(rec, now, votes, policy, final=final)
        decision = quorum.tally(votes, drawn=len(rec.verifiers), policy=policy, final=final)
        if decision in ("Conflict", "Insufficient") and not final:
            room = q.maximum_verifiers - len(rec.verifiers)
            if room > 0:
                return self._escalate(rec, now, room, decision)
            decision = quorum.tally(votes, drawn=len(rec.verifiers), policy=policy, final=True)
        if decision in ("Conflict", "Insufficient"):
            decision = "NoConsensus"
        return self._settle(rec, now, decision, votes)

    def _decide_sampled(
        self, rec: _Task, now: int, votes: dict[str, bool], policy: MeshPolicy, *, final: bool
    ) -> list[Command]:
        """Adaptive verification: an unaudited result, or one its auditors all confirm, is
        accepted (its worker's payment held); any mismatch or silence goes to the referee."""
        assert rec.receipt is not None
        if not rec.verifiers or (len(votes) == len(rec.verifiers) and all(votes.values())):
            return self._settle(rec, now, "Accepted", votes)
        if policy.audit.referee == "panel":
            room = policy.verification_quorum.maximum_verifiers - len(rec.verifiers)
            if room > 0 and not final:
                return self._escalate(rec, now, room, "Conflict")
            decision = quorum.tally(votes, drawn=len(rec.verifiers), policy=policy, final=True)
            if decision not in ("Accepted", "Rejected"):
                decision = "NoConsensus"
            return self._settle(rec, now, decision, votes)
        if rec.refereeing:
            return []  # the referee's answer decides
        rec.refereeing = True
        return [RefereeRun(task=rec.task, receipt=rec.receipt)]

    def _on_referee(self, rec: _Task, ev: RefereeResult, now: int) -> list[Command]:
        if not rec.refereeing or rec.receipt is None:
            raise ProtocolError("no referee ruling is awaited for this task")
        rec.refereeing = False
        ruled = self._ruling(rec, ev, now, recheck=False)
        decision = "Accepted" if ev.confirmed else "Rejected"
        return self._settle(rec, now, decision, self._votes(rec), ruling=ruled)

    def _ruling(self, rec: _Task, ev: RefereeResult, now: int, *, recheck: bool) -> Model:
        assert rec.receipt is not None
        return self._sign(
            RefereeRuled(
                authority=self.authority.did,
                task_cid=rec.task.cid,
                receipt_cid=rec.receipt.cid,
                output_cid=parse_cid(ev.output) if ev.output else None,
                confirmed=ev.confirmed,
                recheck=recheck,
                reason=ev.reason[:1024],
                timestamp=now,
                parents=(rec.receipt.cid,),
            )
        )

    def _on_challenge_end(self, rec: _Task, now: int) -> list[Command]:
        """The challenge window closed: the held payment is the worker's (unless a re-check
        of it is under way: its ruling releases or claws it back)."""
        row = self.books.get("held", cid_key(rec.task.cid))
        if row is None or rec.rechecking:
            self._forget_if_done(rec)
            return []
        out = [self._commit([self._held_released(rec, row["account"], int(row["amount"]), now)])]
        self._forget_if_done(rec)
        return out

    def _held_released(self, rec: _Task, account: str, amount: int, now: int) -> Model:
        return self._sign(
            HeldReleased(
                authority=self.authority.did,
                task_cid=rec.task.cid,
                account=account,
                amount=amount,
                timestamp=now,
                parents=(rec.task.cid,),
            )
        )

    def _backtrack(self, worker: str, caught: CID) -> list[Command]:
        """A caught worker's held results are re-checked by the referee, every one."""
        out: list[Command] = []
        for key, row in sorted(self.books.table("held").items()):
            rec = self.tasks.get(parse_cid(key))
            if row["account"] != worker or rec is None or rec.task.cid == caught:
                continue
            if not rec.rechecking and rec.receipt is not None:
                rec.rechecking = True
                out.append(RefereeRun(task=rec.task, receipt=rec.receipt, recheck=True))
        return out

    def _on_recheck(self, rec: _Task, ev: RefereeResult, now: int) -> list[Command]:
        """A held result re-checked after its worker was caught: confirmed, it is paid now;
        wrong, its held payment and then the worker's bond pay the publisher back the price,
        and auditors that vouched for it are slashed."""
        if not rec.rechecking or rec.assignment is None:
            raise ProtocolError("no re-check of this settled task is awaited")
        rec.rechecking = False
        policy, task, worker = self._policy_of(rec), rec.task, rec.assignment.worker
        events: list[Model] = [self._ruling(rec, ev, now, recheck=True)]
        row = self.books.get("held", cid_key(task.cid))
        held = int(row["amount"]) if row is not None else 0
        if ev.confirmed:
            if row is not None:
                events.append(self._held_released(rec, worker, held, now))
            rec.timers.pop("challenge", None)
            out = [self._commit(events)]
            self._forget_if_done(rec)
            return out
        if row is not None:
            events.append(
                self._sign(
                    ResultClawedBack(
                        authority=self.authority.did,
                        task_cid=task.cid,
                        account=worker,
                        amount=held,
                        publisher=task.publisher,
                        reason="the referee's re-execution differs from the result",
                        timestamp=now,
                        parents=(task.cid,),
                    )
                )
            )
        rest = min(self.books.slashable(worker), max(0, rec.assignment.price - held))
        if rest:
            events.append(
                self._sign(
                    StakeSlashed(
                        authority=self.authority.did,
                        account=worker,
                        recipient=task.publisher,
                        amount=rest,
                        task_cid=task.cid,
                        offence="wrong_result",
                        timestamp=now,
                        parents=(task.cid,),
                    )
                )
            )
        for v, approved in sorted(self._votes(rec).items()):
            if approved:  # vouched for a proven-wrong result
                events += self._slash(
                    v, policy.penalties.wrong_vote_percentage, rec, "wrong_vote", now
                )
        rec.timers.pop("challenge", None)
        out = [self._commit(events)]
        self._forget_if_done(rec)
        return out

    def _votes(self, rec: _Task) -> dict[str, bool]:
        """Each verdict's vote: under ``exact`` whether the outputs are equal (checked at
        intake); under a content validator an identical output approves and a differing one
        counts as the authority judged it (not judged yet, or never: disagreeing)."""
        return {
            v: (rec.judged.get(v, False) if self._needs_judgement(rec, r) else r.approved)
            for v, r in rec.verdicts.items()
            if r.output_cid is not None
        }

    def _escalate(self, rec: _Task, now: int, room: int, why: str) -> list[Command]:
        assert rec.assignment is not None
        policy = self._policy_of(rec)
        candidates = self._verifier_candidates(
            rec, rec.assignment.worker, policy, now, rec.verifiers
        )
        seed = self._draw_seed(rec, f"a{rec.attempt}d{len(rec.verifiers)}")
        extra = selection.draw_verifiers(seed, candidates, room, self._absent(now))
        if not extra:  # nobody left to ask: the final rules decide on the votes in hand
            return self._decide(rec, now, final=True)
        dispute = self._sign(
            EscrowDispute(
                authority=self.authority.did,
                task_cid=rec.task.cid,
                reason="conflicting verdicts" if why == "Conflict" else "too few verdicts",
                extra_verifiers=tuple(extra),
                timestamp=now,
                parents=(rec.assignment.cid,),
            )
        )
        cmd = self._commit([dispute])
        rec.disputed = True
        rec.verifiers = (*rec.verifiers, *extra)
        rec.round_verifiers = tuple(extra)
        out: list[Command] = [cmd]
        if rec.private:
            out.append(
                SealKey(
                    task_cid=rec.task.cid, input_cid=rec.task.input_cid, recipients=tuple(extra)
                )
            )
        out += [
            RunVerification(task=rec.task, verifier=v, assignment=rec.assignment) for v in extra
        ]
        timeout = policy.verification_quorum.verification_timeout
        out.append(self._timer(rec, "verification", now + timeout * 1000))
        return out

    def _slash(
        self, account: str, percentage: int, rec: _Task, offence: str, now: int
    ) -> list[Model]:
        amount = self.books.slashable(account) * percentage // 100
        if amount <= 0:
            return []
        return [
            self._sign(
                StakeSlashed(
                    authority=self.authority.did,
                    account=account,
                    recipient=rec.task.federation,
                    amount=amount,
                    task_cid=rec.task.cid,
                    offence=offence,  # type: ignore[arg-type]
                    timestamp=now,
                    parents=(rec.task.cid,),
                )
            )
        ]

    def _settle(
        self,
        rec: _Task,
        now: int,
        decision: str,
        votes: dict[str, bool],
        *,
        ruling: Model | None = None,
    ) -> list[Command]:
        assert rec.assignment is not None and rec.receipt is not None
        task, receipt, policy = rec.task, rec.receipt, self._policy_of(rec)
        worker = rec.assignment.worker
        with_q, against = quorum.sides(decision, votes)
        assert rec.worker_committed_at is not None
        on_time = rec.worker_committed_at <= rec.assignment.due_at
        quality_ppm = round(receipt.summary.contribution_score * 1_000_000)
        decided = self._sign(
            QuorumReached(
                authority=self.authority.did,
                task_cid=task.cid,
                outcome=decision,  # type: ignore[arg-type]
                output_cid=receipt.output_cid if decision == "Accepted" else None,
                approvals=tuple(rec.verdicts[v].cid for v in sorted(votes) if votes[v]),
                rejections=tuple(rec.verdicts[v].cid for v in sorted(votes) if not votes[v]),
                worker=worker,
                with_quorum=tuple(with_q),
                against_quorum=tuple(against),
                quality_ppm=quality_ppm,
                on_time=on_time,
                timestamp=now,
                parents=(receipt.cid,),
            )
        )
        escrow_row = self.books.escrow(task.cid)
        assert escrow_row is not None
        if decision == "Accepted":
            payouts = escrow.settle_accepted(
                fee=escrow_row["amount"],
                price=rec.assignment.price,
                publisher=task.publisher,
                worker=worker,
                treasury=task.federation,
                verifiers=escrow.verifier_weights(
                    {v: self._reputation(v, now, policy) for v in with_q}
                ),
                policy=policy,
                on_time=on_time,
                quality_ppm=quality_ppm,
            )
            if rec.adaptive and sampling.holds(policy):  # held for the challenge window
                payouts = sampling.hold_worker_payment(payouts)
            final_state = "Completed"
        else:
            payouts = escrow.refund_payouts(fee=escrow_row["amount"], publisher=task.publisher)
            final_state = "Failed"
        events: list[Model] = [] if ruling is None else [ruling]
        events += [decided, *self._escrow_final(rec, final_state, decision, now)]
        events.append(self._reward(rec, payouts, policy, now, decided))
        if decision == "Rejected":
            events += self._slash(
                worker, policy.penalties.wrong_result_percentage, rec, "wrong_result", now
            )
        for v in against:
            events += self._slash(v, policy.penalties.wrong_vote_percentage, rec, "wrong_vote", now)
        for v in rec.verifiers:  # drawn, and never committed or never voted: a no-show
            if v not in rec.verdicts:
                events += self._slash(v, policy.penalties.no_show_percentage, rec, "no_show", now)
        out = self._finish(rec, events)
        if rec.adaptive and decision == "Accepted" and sampling.holds(policy):
            out.append(self._timer(rec, "challenge", now + policy.audit.challenge_window_ms))
        elif rec.adaptive and decision == "Rejected":
            out += self._backtrack(worker, task.cid)
        return out

    def _escrow_final(self, rec: _Task, to_state: str, reason: str, now: int) -> list[Model]:
        row = self.books.escrow(rec.task.cid)
        assert row is not None
        return [
            self._sign(
                EscrowStateChanged(
                    authority=self.authority.did,
                    task_cid=rec.task.cid,
                    from_state=row["state"],
                    to_state=to_state,  # type: ignore[arg-type]
                    amount=row["amount"],
                    reason=reason,
                    timestamp=now,
                    parents=(rec.task.cid,),
                )
            )
        ]

    def _reward(
        self, rec: _Task, payouts: list[Any], policy: MeshPolicy, now: int, parent: Model
    ) -> Model:
        return self._sign(
            RewardDistributed(
                authority=self.authority.did,
                task_cid=rec.task.cid,
                total=sum(p.amount for p in payouts),
                payouts=tuple(payouts),
                policy_cid=policy.cid,
                timestamp=now,
                parents=(parent.cid,),
            )
        )

    def _expire(self, rec: _Task, now: int, events: list[Model], why: str) -> list[Command]:
        policy = self._policy_of(rec)
        expired = self._sign(
            TaskExpired(
                authority=self.authority.did,
                task_cid=rec.task.cid,
                stage="deadline",
                reason=why,
                timestamp=now,
                parents=(rec.task.cid,),
            )
        )
        row = self.books.escrow(rec.task.cid)
        assert row is not None
        batch = [*events, expired, *self._escrow_final(rec, "Expired", why, now)]
        payouts = escrow.refund_payouts(fee=row["amount"], publisher=rec.task.publisher)
        batch.append(self._reward(rec, payouts, policy, now, expired))
        return self._finish(rec, batch)

    def _finish(self, rec: _Task, events: list[Model]) -> list[Command]:
        cmd = self._commit(events)
        if rec.assignment is not None:
            self._release(rec.assignment.worker)
        rec.timers.clear()
        return [cmd]


def _within_skew(claimed: int, now: int, what: str) -> None:
    """A participant's timestamp counts only within MAX_CLOCK_SKEW_MS of the authority's."""
    if abs(claimed - now) > MAX_CLOCK_SKEW_MS:
        raise ProtocolError(
            f"the {what}'s timestamp {claimed} is {claimed - now:+d} ms from the ledger "
            f"authority's clock {now} (at most {MAX_CLOCK_SKEW_MS} ms allowed)"
        )


class _Stale(Exception):
    """Internal: a timer whose phase is over (ignored, not journalled)."""


_OPEN: Final = ("Published", "Offered", "Assigned", "Executed", "Verifying", "Disputed")
_REASSIGN: Final = frozenset({"Assigned", "Offered", "Published", "Settled"})
_DECIDE: Final = frozenset({"Disputed", "Settled"})
_M = AuthorityState

#: (state, stimulus kind) -> (handler, next states). Stimulus kinds: the object's type name,
#: ``AllOffersIn`` or ``Timeout:<stage>``. Everything that affects a transition is here; the
#: dispatcher refuses a pair that is not, and checks the state a handler arrives at.
TRANSITIONS: Final[dict[tuple[str, str], Transition]] = {
    **{
        (s, "ComputeOffer"): Transition(_M._on_offer, frozenset({"Offered"}))
        for s in ("Published", "Offered")
    },
    **{
        (s, "Timeout:offers"): Transition(
            _M._on_offer_window, frozenset({"Published", "Offered", "Assigned", "Settled"})
        )
        for s in ("Published", "Offered")
    },
    ("Offered", "AllOffersIn"): Transition(
        _M._on_all_offers_in, frozenset({"Offered", "Assigned", "Settled"})
    ),
    ("Assigned", "ResultCommitment"): Transition(
        _M._on_commitment, frozenset({"Assigned", "Executed", "Verifying"})
    ),
    ("Executed", "ResultCommitment"): Transition(
        _M._on_commitment, frozenset({"Executed", "Verifying"})
    ),
    ("Disputed", "ResultCommitment"): Transition(_M._on_commitment, frozenset({"Disputed"})),
    ("Assigned", "Timeout:execution"): Transition(_M._on_execution_timeout, _REASSIGN),
    ("Executed", "Timeout:verification"): Transition(
        _M._on_verification_timeout, frozenset({"Executed"}) | _REASSIGN
    ),
    ("Verifying", "Timeout:verification"): Transition(
        _M._on_verification_timeout,
        _REASSIGN | _DECIDE | {"Verifying"},  # referee asked
    ),
    ("Disputed", "Timeout:verification"): Transition(
        _M._on_verification_timeout, _REASSIGN | _DECIDE
    ),
    ("Executed", "ExecutionReceipt"): Transition(_M._on_reveal, frozenset({"Verifying"}) | _DECIDE),
    ("Verifying", "ExecutionReceipt"): Transition(
        _M._on_reveal, frozenset({"Verifying"}) | _DECIDE
    ),
    ("Verifying", "VerificationReceipt"): Transition(
        _M._on_verdict, frozenset({"Verifying"}) | _DECIDE
    ),
    ("Disputed", "VerificationReceipt"): Transition(
        _M._on_verdict, frozenset({"Disputed", "Settled"})
    ),
    ("Verifying", "RefereeResult"): Transition(_M._on_referee, frozenset({"Settled"})),
    ("Verifying", "VerdictJudgement"): Transition(
        _M._on_judgement, frozenset({"Verifying"}) | _DECIDE
    ),
    ("Disputed", "VerdictJudgement"): Transition(
        _M._on_judgement, frozenset({"Disputed", "Settled"})
    ),
    **{
        (s, "Timeout:deadline"): Transition(
            _M._on_deadline,
            frozenset({"Settled", s}) if s in ("Verifying", "Disputed") else frozenset({"Settled"}),
        )
        for s in _OPEN
    },
}
#: The states a task can be in while it is not settled (every one has a deadline timer).
OPEN_STATES: Final = frozenset(s for s, _ in TRANSITIONS)

#: The former name (the authority's state, not the mesh's); kept for code written against it.
MeshState = AuthorityState
