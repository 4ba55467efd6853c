"""AuthorityNode: the protocol core driven with a real clock, a ledger, a blob store and workers.

The node is a federation's ledger authority (and, in the embedded mesh, the publisher's
node too). One driver thread owns the :class:`~meshbench.core.protocol.AuthorityState` and the
SQLite ledger; everything else (API calls, workers' answers, timers) reaches it as work on
its queue, so the core stays single-threaded and deterministic in what it decides.

What comes back from workers arrives as bytes and is decoded with
:func:`~meshbench.core.model.decode_object` (CID, schema, signature) before the core sees
it. Whatever the core refuses is recorded (``node.rejections``) and changes nothing.

The node's public face: :meth:`AuthorityNode.submit` (the one way in for signed objects, their
bytes and the runtime's stimuli), :meth:`AuthorityNode.subscribe` (ledger events as they are
appended), :attr:`AuthorityNode.rejections` (read-only) and :meth:`AuthorityNode.snapshot` (the
books as of now, for readers). With a :class:`~meshbench.runtime.clock.ManualClock` the
node runs on virtual time: its driver sleeps until work arrives or the clock is advanced.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import heapq
import itertools
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, assert_never, overload

from meshbench.core import governance as gov
from meshbench.core.books import Books, cid_key
from meshbench.core.encoding import CID, blob_cid
from meshbench.core.errors import CIDMismatch, MeshError, ProtocolError
from meshbench.core.events import QuorumReached, RewardDistributed
from meshbench.core.identity import Identity
from meshbench.core.model import Model, decode_object
from meshbench.core.policy import MeshPolicy
from meshbench.core.protocol import (
    AllOffersIn,
    AppendToLedger,
    AuthorityState,
    Broadcast,
    Command,
    Faucet,
    JudgeVerdict,
    PrivateInput,
    RefereeResult,
    RefereeRun,
    RequestReveal,
    RequestVerdict,
    RunExecution,
    RunVerification,
    ScheduleTimeout,
    SealKey,
    SnapshotReputation,
    TimeoutFired,
    VerdictJudgement,
)
from meshbench.core.types import ExecutionReceipt, TaskIntent, VerificationReceipt
from meshbench.runtime.backends import WorkerBackend
from meshbench.runtime.clock import ManualClock, wall_clock_ms
from meshbench.store.blobs import BlobStore, EncryptedBlob, StagedBlob
from meshbench.store.ledger import Ledger, LedgerReport

__all__ = ["AuthorityNode", "NodeSnapshot", "Rejection", "Rejections", "TaskRecord"]

log = logging.getLogger("meshbench.node")

#: How often (authority ms) a running node notes in its ledger that it is alive: after a
#: crash, the time parties had to answer does not count from that mark on.
ALIVE_MARK_MS: Final = 250


@dataclass
class Rejection:
    """Something the node refused: what, from whom, and the typed error."""

    at_ms: int
    what: str
    error: MeshError | Exception


class Rejections(Sequence[Rejection]):
    """A read-only view of what a node refused lately, oldest first: the newest
    :data:`REJECTIONS_KEPT` (a node that refuses a thousand offers an hour for years holds
    no more); :attr:`total` counts every refusal since the node started."""

    def __init__(self, items: collections.deque[Rejection], total: Callable[[], int]) -> None:
        self.__items = items
        self.__total = total

    @property
    def total(self) -> int:
        """How many things the node refused since it started (kept or not)."""
        return self.__total()

    @overload
    def __getitem__(self, index: int) -> Rejection: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[Rejection]: ...
    def __getitem__(self, index: int | slice) -> Rejection | Sequence[Rejection]:
        return self.__items[index]

    def __len__(self) -> int:
        return len(self.__items)

    def __iter__(self) -> Iterator[Rejection]:
        return iter(list(self.__items))

    def __repr__(self) -> str:
        return f"Rejections({len(self)})"


@dataclass(frozen=True)
class NodeSnapshot:
    """The node's books as of ``at_ms`` (an independent copy: reading it never races the
    driver), and the peers that announced themselves."""

    at_ms: int
    books: Books
    peers: tuple[str, ...]

    def balance(self, did: str) -> int:
        return self.books.balance(did)

    def bonded(self, did: str) -> int:
        return self.books.bonded(did)


@dataclass
class TaskRecord:
    """What the node knows about one task it published, for handles and frames."""

    task: TaskIntent
    receipt: ExecutionReceipt | None = None
    output: bytes | None = None
    verdicts: list[VerificationReceipt] = field(default_factory=list)
    outcome: str | None = None
    settlement: RewardDistributed | None = None
    #: A private task's input key envelope (sealed to the publisher, then to those chosen).
    envelope: EncryptedBlob | None = None
    done: threading.Event = field(default_factory=threading.Event)


@dataclass
class _OfferRound:
    expected: int
    received: int = 0
    offers: int = 0
    #: rounds asked so far for this task (see OFFER_ROUNDS)
    asked: int = 1


class AuthorityNode:
    """A ledger authority node with its workers behind a :class:`WorkerBackend`."""

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        backend: WorkerBackend,
        *,
        authority: Identity,
        federation: str,
        clock: Callable[[], int] = wall_clock_ms,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.backend = backend
        self.authority = authority
        self.federation = federation
        self.clock = clock
        # a task's input put by the publisher is read once, right after, for its workers
        self.blobs = BlobStore(self.data_dir / "blobs", handoff_bytes=HANDOFF_BYTES)
        self.ledger_path = self.data_dir / "ledger.sqlite"
        self._ledger: Ledger | None = None
        self.state: AuthorityState | None = None
        self.records: dict[CID, TaskRecord] = {}
        self._rejections: collections.deque[Rejection] = collections.deque(maxlen=REJECTIONS_KEPT)
        self._rejected = 0
        self._listeners: list[Callable[[Model], None]] = []
        #: who hears when a task's waiting reason changes (watch_waiting), and the reasons
        #: they were last told (tracked while anyone listens)
        self._waiting_listeners: list[Callable[[CID, str | None], None]] = []
        self._waiting: dict[CID, str] = {}
        #: Seals a private input's key to recipients (set by the publisher's side).
        self.sealer: Callable[[EncryptedBlob, tuple[str, ...]], EncryptedBlob] | None = None
        self._queue: queue.Queue[Callable[[], None] | None] = queue.Queue()
        #: CPU spent checking workers' answers off the driver thread (see _deliver)
        self._intake_cpu = 0.0
        self._intake_lock = threading.Lock()
        self._timers: list[tuple[int, int, TimeoutFired]] = []
        #: the timer heap's size after it was last swept of forgotten tasks' timers
        self._timers_swept = 0
        self._seq = itertools.count()
        self._rounds: dict[CID, _OfferRound] = {}
        self._inflight: dict[CID, tuple[bytes, bytes]] = {}
        self._settled: list[TaskRecord] = []
        #: the records not yet settled (the only ones a burst looks at: O(open), not O(history))
        self._open: dict[CID, TaskRecord] = {}
        #: settled records kept for readers by CID (the newest; a handle keeps its own)
        self._recent: collections.deque[CID] = collections.deque()
        self.keep_settled_records = KEEP_SETTLED_RECORDS
        #: how many tasks this node has published since it started
        self.tasks_published = 0
        self._answers: list[Callable[[], None]] = []
        #: answers to reads (call(durable=False)): given after their burst, commit or not
        self._reads: list[Callable[[], None]] = []
        self._modules: dict[CID, bytes] = {}
        self._thread: threading.Thread | None = None
        self._referee_threads: ThreadPoolExecutor | None = None
        #: the referee's agents by executor name (used on the referee thread only)
        self._referees: dict[str, Any] = {}
        self._started = threading.Event()
        self._start_error: BaseException | None = None
        #: Requests to workers held back until :meth:`resume` (after a restart, the backend
        #: may not know its workers yet: a request sent now would be lost).
        self._held: list[Command] | None = None
        self._alive_at = 0
        self._unwake: Callable[[], None] | None = None
        if isinstance(clock, ManualClock):
            self._unwake = clock.on_advance(self._clock_advanced)

    # --- life cycle --------------------------------------------------------------------
    def start(self, *, resume: bool = True) -> AuthorityNode:
        """Open the ledger (restoring the state machine from it after a restart) and start
        the driver thread.

        With ``resume=False`` the requests to workers (offers, executions, reveals,
        verdicts) are held, in order, until :meth:`resume`: the caller first lets the
        backend learn its workers, so that what a restart re-sends reaches them. Ledger
        writes and timers are carried out at once either way.
        """
        self._held = None if resume else []
        self._thread = threading.Thread(target=self._main, name="mesh-node", daemon=True)
        self._thread.start()
        self._started.wait()
        if self._start_error is not None:
            raise self._start_error
        return self

    def resume(self) -> int:
        """Send the worker requests held since :meth:`start` (``resume=False``) and stop
        holding; after a restart, ask again for what open tasks wait on
        (``AuthorityState.reissue``: their timers start from here). Returns how many
        requests were sent."""

        def work() -> int:
            assert self.state is not None and self._ledger is not None
            held, self._held = self._held or [], None
            if self.state.replaying:  # a restart: ask again for what open tasks wait on
                held = [*self.state.reissue(self.clock()), *held]
                self._ledger.journal(self.state.take_journal())  # the wait was downtime
            self._run(held)
            return sum(isinstance(c, _WORKER_REQUESTS) for c in held)

        return self.call(work)

    def close(self) -> None:
        if self._referee_threads is not None:
            self._referee_threads.shutdown(wait=True, cancel_futures=True)
            self._referee_threads = None
        if self._unwake is not None:
            self._unwake()
            self._unwake = None
        if self._thread is not None and self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout=30)
        self._thread = None

    def call(
        self, fn: Callable[[], Any], timeout: float | None = 60, *, durable: bool = True
    ) -> Any:
        """Run ``fn`` on the driver thread and return its result (or raise its error).

        The answer is given once the burst that computed it is committed; with
        ``durable=False`` (a read of the node's memory that changes nothing) it is given as
        soon as the burst ends, without making the open transaction commit early."""
        if threading.current_thread() is self._thread:
            return fn()
        fut: Future[Any] = Future()
        answers = self._answers if durable else self._reads

        def work() -> None:
            try:
                result = fn()
            except BaseException as exc:  # re-raised in the caller
                answers.append(lambda e=exc: fut.set_exception(e))
            else:
                answers.append(lambda: fut.set_result(result))

        self._queue.put(work)
        return fut.result(timeout=timeout)

    def _clock_advanced(self) -> None:
        """A :class:`ManualClock` moved: wake the driver and return once it has fired the
        timers now due and committed what they did (an empty call does both: the driver
        fires due timers after every burst, before it answers)."""
        if self._thread is None or not self._thread.is_alive():
            return
        if threading.current_thread() is self._thread:
            return  # advanced from inside a burst: due timers fire when it ends
        self.call(lambda: None)

    # --- the driver thread ---------------------------------------------------------------
    def _main(self) -> None:
        try:
            # Every object is checked exactly once, where it enters the node (decode_object
            # for bytes from outside, verify() for objects handed to the API), so neither
            # the state machine nor the ledger re-checks signatures on the hot path;
            # `ledger verify` re-checks everything at any time.
            self._ledger = Ledger(
                self.ledger_path, authority=self.authority.did, verify_on_append=False
            )
            # One Books per node: the state machine folds into the ledger's books and the
            # ledger persists what that fold changed. After a restart the state machine is
            # rebuilt by replaying the ledger's journal through its own handlers (into fresh
            # books, which must equal the stored tables and then become the ledger's): every
            # open task gets its outstanding requests and pending timers again.
            restarting = len(self._ledger) > 0
            books = Books(self.authority.did) if restarting else self._ledger.books
            self.state = AuthorityState(
                self.authority,
                books=books,
                membership=gov.BooksMembership(books),
                verify_signatures=False,
                forget_settled=True,
            )
            resumed: list[Command] = []
            if restarting:
                since = self._ledger.alive_mark()  # the last time it was seen running
                self.state.replay(self._ledger.history(), self.clock(), since=since)
                if self._held is None:  # else resume() asks again, once it is told to
                    resumed = self.state.reissue(self.clock())
                self._ledger.adopt(books)
                self._ledger.journal(self.state.take_journal())  # the downtime (Resumed)
                for cid in list(self.state.tasks):
                    self.state.forget(cid)  # settled before the restart: memory for open ones
        except BaseException as exc:
            self._start_error = exc
            self._started.set()
            return
        self._started.set()
        try:
            if resumed:
                with self._ledger.batch():
                    self._run(resumed)
            self._drive()
        finally:
            self._ledger.close()

    def _drive(self) -> None:
        """The driver's loop: bursts of work, each in the open ledger transaction (group
        commit; each append stays atomic).

        A burst that owes somebody something (an API answer, a settled task's handle)
        commits at once, and only then is it told; a burst that owes nothing (workers'
        answers moving tasks along) may stay in the transaction for up to
        :data:`COMMIT_DELAY_S` (0 by default: it commits too), so that the bursts of that
        time commit together. Reads (``call(durable=False)``) are answered after their
        burst without making it commit early.
        """
        assert self._ledger is not None
        manual = isinstance(self.clock, ManualClock)
        tx: contextlib.ExitStack | None = None
        commit_by = 0.0
        try:
            while True:
                # on a manual clock only work wakes the driver (an advance sends some)
                wait: float | None = None if manual else 0.5
                if self._timers and not manual:
                    wait = max(0.0, min(0.5, (self._timers[0][0] - self.clock()) / 1000))
                if tx is not None:
                    left = max(0.0, commit_by - time.monotonic())
                    wait = left if wait is None else min(wait, left)
                try:
                    work = self._queue.get(timeout=wait)
                except queue.Empty:
                    work = _IDLE
                if work is None:
                    break
                if tx is None:
                    tx = contextlib.ExitStack()
                    tx.enter_context(self._ledger.batch())
                    commit_by = time.monotonic() + COMMIT_DELAY_S
                try:
                    stop = self._burst(work)
                    self._fire_due_timers()
                    self._mark_alive()
                except BaseException as exc:
                    tx.__exit__(type(exc), exc, exc.__traceback__)  # rolled back
                    tx = None
                    raise
                if stop or self._answers or self._settled or time.monotonic() >= commit_by:
                    tx.close()
                    tx = None
                    # only now is it committed: answers are given, readers of the file see it
                    for rec in self._settled:
                        rec.done.set()
                    self._settled.clear()
                    for answer in self._answers:
                        answer()
                    self._answers.clear()
                for answer in self._reads:
                    answer()
                self._reads.clear()
                if stop:
                    break
        finally:
            if tx is not None:
                tx.close()  # stopping: commit what the last bursts did

    def _mark_alive(self) -> None:
        """At most every :data:`ALIVE_MARK_MS`, note in the ledger that the authority runs:
        after a crash the downtime is counted from there, not from its last stimulus (an
        idle authority is not down)."""
        now = self.clock()
        if now - self._alive_at >= ALIVE_MARK_MS:
            assert self._ledger is not None
            self._ledger.mark_alive(now)
            self._alive_at = now

    def _burst(self, work: Callable[[], None], limit: int = 256) -> bool:
        """Run ``work`` and whatever else is already queued (up to ``limit`` in all); True to
        stop. (It used to take a 257th item off the queue and drop it: a burst of more than
        256 lost one submission, worker answer or call in every 256.)"""
        work()
        for _ in range(limit - 1):
            try:
                nxt = self._queue.get_nowait()
            except queue.Empty:
                return False
            if nxt is None:
                return True
            nxt()
        return False

    def _fire_due_timers(self) -> None:
        now = self.clock()
        while self._timers and self._timers[0][0] <= now:
            _, _, fired = heapq.heappop(self._timers)
            self.feed(fired)

    # --- feeding the core --------------------------------------------------------------
    def feed(self, event: object) -> list[Command]:
        """Hand one event to the state machine (driver thread only) and carry out its
        commands; a refused event is recorded in ``rejections``."""
        try:
            cmds = self._handle(event)
        except MeshError as exc:
            self._reject(event, exc)
            return []
        self._run(cmds)
        return cmds

    def _handle(self, event: object) -> list[Command]:
        """The state machine's answer to ``event`` (raises what it refuses); the stimulus
        is journalled before its commands are carried out (same transaction)."""
        assert self.state is not None and self._ledger is not None
        cmds = self.state.handle(event, self.clock())
        self._ledger.journal(self.state.take_journal())
        if self._waiting_listeners:
            self._tell_waiting(event)
        return cmds

    def _tell_waiting(self, event: object) -> None:
        """Tell the waiting listeners when ``event`` changed its task's waiting reason (a
        closed offer window changes it without a ledger event)."""
        assert self.state is not None
        cid = event.cid if isinstance(event, TaskIntent) else getattr(event, "task_cid", None)
        if not isinstance(cid, CID) or cid not in self.state.tasks:
            return
        why = self.state.why(cid)
        if self._waiting.get(cid) == why:
            return
        if why is None:
            del self._waiting[cid]
        else:
            self._waiting[cid] = why
        for listener in self._waiting_listeners:
            try:
                listener(cid, why)
            except Exception:
                log.exception("waiting listener failed")

    def feed_bytes(self, data: bytes) -> None:
        """An object from outside: checked (CID, schema, signature) before the core sees it."""
        try:
            obj = decode_object(data)
        except MeshError as exc:
            self._reject(f"{len(data)} bytes", exc)
            return
        self.feed(obj)

    def intake_cpu_seconds(self) -> float:
        """CPU time spent so far checking workers' answers (decoding, CID, schema, each
        signature) on the threads they arrive on, before they reach the driver thread:
        together with :meth:`cpu_seconds` the whole protocol cost on the authority."""
        with self._intake_lock:
            return self._intake_cpu

    def _reject(self, what: object, exc: BaseException) -> None:
        label = type(what).__name__ if not isinstance(what, str) else what
        if isinstance(what, Model):
            label = f"{label} {what.cid}"
        log.info("refused %s: %s: %s", label, type(exc).__name__, exc)
        # kept without its traceback: its frames would hold what they were working on (a
        # refused offer's frames, the task's whole record) long after the task left memory
        exc.__traceback__ = None
        self._rejections.append(Rejection(at_ms=self.clock(), what=label, error=exc))
        self._rejected += 1

    def _deliver(
        self, handler: Callable[[Any], None], check: Callable[[Any], Any] | None = None
    ) -> Callable[[Any], None]:
        """A thread-safe callback that runs ``handler(answer)`` on the driver thread.

        With ``check``, the answer is first checked by ``check(answer)`` on the thread it
        arrives on (a worker's answer is decoded and its signature checked there, exactly
        once): the driver thread gets the checked objects, or records what ``check``
        refused (a :class:`_Refused`), so the serial part of the node does no decoding."""

        def deliver(answer: Any) -> None:
            if check is not None and not isinstance(answer, BaseException):
                answer = self._check_answer(check, answer)
            self._queue.put(lambda: self._answer(handler, answer))

        return deliver

    def _check_answer(self, check: Callable[[Any], Any], answer: Any) -> Any:
        t0 = time.thread_time()
        try:
            return check(answer)
        except MeshError as exc:
            return _Refused(_answer_label(answer), exc)
        except Exception as exc:  # a malformed answer: recorded by the driver, as a failure
            return exc
        finally:
            spent = time.thread_time() - t0
            with self._intake_lock:
                self._intake_cpu += spent

    def _answer(self, handler: Callable[[Any], None], answer: Any) -> None:
        if isinstance(answer, _Refused):
            self._reject(answer.what, answer.error)
            return
        if isinstance(answer, BaseException):
            # A worker that fails or disappears is handled by the protocol's timeouts.
            self._reject("worker answer", answer)
            return
        handler(answer)

    # --- carrying out commands ------------------------------------------------------------
    def _run(self, cmds: list[Command]) -> None:
        for cmd in cmds:
            try:
                self._carry_out(cmd)
            except MeshError as exc:
                self._reject(cmd, exc)
            except Exception as exc:
                if not isinstance(cmd, _WORKER_REQUESTS):
                    raise
                # a request that cannot reach its worker is a lost message (the protocol's
                # timeouts handle it); the driver thread must not die of it
                log.warning("could not send %s: %r", type(cmd).__name__, exc)
                self._reject(cmd, exc)
        self._refresh_records(cmds)

    def _carry_out(self, cmd: Command) -> None:
        assert self._ledger is not None
        if self._held is not None and isinstance(cmd, _WORKER_REQUESTS):
            self._held.append(cmd)  # sent by resume(), once the backend knows its workers
            return
        match cmd:
            case AppendToLedger():
                self._ledger.persist(
                    *cmd.events, changes=cmd.changes
                )  # the state machine folded them already
                for ev in cmd.events:
                    self._observe(ev)
            case ScheduleTimeout():
                fired = TimeoutFired(task_cid=cmd.task_cid, stage=cmd.stage, token=cmd.token)
                heapq.heappush(self._timers, (cmd.at, next(self._seq), fired))
            case Broadcast():
                if isinstance(cmd.obj, TaskIntent):
                    self._ask_for_offers(cmd.obj)
            case RunExecution():
                self.backend.execute(
                    cmd.worker,
                    cmd.task,
                    self._blobs_of(cmd.task),
                    "worker",
                    self._deliver(self.feed, _check_object),
                )
            case RunVerification():
                self.backend.execute(
                    cmd.verifier,
                    cmd.task,
                    self._blobs_of(cmd.task),
                    "verifier",
                    self._deliver(self.feed, _check_object),
                )
            case RequestReveal():
                check = functools.partial(_check_reveal, blobs=self.blobs)
                self.backend.reveal(cmd.worker, cmd.task_cid, self._deliver(self._on_reveal, check))
            case RequestVerdict():
                rec = self.records.get(cmd.task_cid)
                # a content validator (not ``exact``) judges the worker's bytes: send them along
                extra = {}
                if rec is not None and rec.task.validator != "exact":
                    extra["output"] = rec.output
                self.backend.verdict(
                    cmd.verifier,
                    cmd.task_cid,
                    cmd.receipt,
                    self._deliver(self._on_verdict, _check_verdict),
                    **extra,
                )
            case JudgeVerdict():
                self._deliver(self.feed)(self._judge(cmd))
            case RefereeRun():
                self._referee_pool().submit(self._referee, cmd, self._deliver(self.feed))
            case SealKey():
                rec = self.records.get(cmd.task_cid)
                if rec is None or rec.envelope is None or self.sealer is None:
                    raise ProtocolError(f"task {cmd.task_cid} has no sealed input this node holds")
                # the content key, sealed now to exactly the chosen worker and verifiers
                rec.envelope = self.sealer(rec.envelope, cmd.recipients)
                self.blobs.put_object(rec.envelope.encode())
            case _:
                assert_never(cmd)

    def _blobs_of(self, task: TaskIntent) -> tuple[bytes, bytes, bytes | None]:
        """Module, input (and, for a private task, the sealed key envelope) of a task in
        flight; module and input are read and hash-checked once, then kept."""
        cached = self._inflight.get(task.cid)
        if cached is None:
            wasm = self._modules.get(task.wasm_cid)
            if wasm is None:
                wasm = self.blobs.get(task.wasm_cid)
                if len(self._modules) >= 32:
                    self._modules.pop(next(iter(self._modules)))
                self._modules[task.wasm_cid] = wasm
            cached = self._inflight[task.cid] = (wasm, self.blobs.get(task.input_cid))
        rec = self.records.get(task.cid)
        envelope = rec.envelope.encode() if rec is not None and rec.envelope else None
        return (*cached, envelope)

    def _ask_for_offers(self, task: TaskIntent, asked: int = 1) -> None:
        rnd = _OfferRound(expected=self.backend.worker_count(), asked=asked)
        self._rounds[task.cid] = rnd

        def on_offer(answer: Any) -> None:
            if self._rounds.get(task.cid) is rnd:
                rnd.received += 1
                rnd.offers += answer is not None and not isinstance(answer, _Refused)
            if isinstance(answer, _Refused):
                self._reject(answer.what, answer.error)
            elif answer is not None:
                self.feed(answer)
            self._close_offers_if_complete(task.cid, task)

        def check(answer: Any) -> Any:
            # an offer refused still counts as an answer: it reaches on_offer as such
            try:
                return None if answer is None else _check_object(answer)
            except MeshError as exc:
                return _Refused(_answer_label(answer), exc)

        deliver = self._deliver(on_offer, check)
        self.backend.request_offers(task, self._blobs_of(task), deliver)

    def _close_offers_if_complete(self, task_cid: CID, task: TaskIntent | None = None) -> None:
        """Every worker answered: tell the state machine (``AllOffersIn``), which closes the
        offer window now rather than at its timer.

        A round in which no worker answered with an offer (their calls failed, or they all
        declined) is asked again, up to :data:`OFFER_ROUNDS` rounds: a lost broadcast is
        sent again, as the transport's retry, rather than leaving the task published with
        no offer until its deadline."""
        rnd = self._rounds.get(task_cid)
        if rnd is None or rnd.received < rnd.expected:
            return
        del self._rounds[task_cid]
        assert self.state is not None
        if (
            task is not None
            and rnd.offers == 0
            and rnd.asked < OFFER_ROUNDS
            and task_cid in self.state.tasks
            and self.state.state_of(task_cid) == "Published"
        ):
            log.info("no offer for %s in round %d: asking again", task_cid, rnd.asked)
            self._ask_for_offers(task, rnd.asked + 1)
            return
        if task_cid in self.state.tasks and self.state.state_of(task_cid) == "Offered":
            self.feed(AllOffersIn(task_cid=task_cid))

    def _on_reveal(self, answer: tuple[ExecutionReceipt, bytes, StagedBlob]) -> None:
        """A reveal, checked (and its output staged, :func:`_check_reveal`) on the thread it
        arrived on; the output is kept in the store only if the core accepts the reveal."""
        receipt, output, staged = answer
        rec = self.records.get(receipt.task_cid)
        before = None if rec is None else rec.output
        if rec is not None:
            rec.output = output  # before feeding: verdict requests may need the bytes
        cmds: list[Command] = []
        try:
            cmds = self.feed(receipt)
        finally:
            if not (cmds and rec is not None):
                staged.discard()  # refused (or not this node's task): nothing is stored
        if cmds and rec is not None:
            staged.keep(hold_gil=True)  # the driver: see StagedBlob.keep
        elif rec is not None:
            rec.output = before

    def _on_verdict(self, answer: Model | tuple[VerificationReceipt, bytes]) -> None:
        """A verdict (checked by :func:`_check_verdict`); under a content validator with the
        verifier's own output, which is kept (hash-checked) as the evidence the authority
        judges it by (:class:`JudgeVerdict`)."""
        if not isinstance(answer, tuple):
            self.feed(answer)
            return
        verdict, output = answer
        if verdict.output_cid is not None:
            # before feeding: the judgement reads it from the store
            self.blobs.put(output, hold_gil=True)
        self.feed(verdict)

    def _referee_pool(self) -> ThreadPoolExecutor:
        if self._referee_threads is None:
            self._referee_threads = ThreadPoolExecutor(1, thread_name_prefix="meshbench-referee")
        return self._referee_threads

    def _referee(self, cmd: RefereeRun, deliver: Callable[[Any], None]) -> None:
        """The referee: the authority re-executes the task itself (deterministically, as a
        verifier would) and says whether the worker's revealed output stands."""
        from meshbench.core.types import HardwareProfile
        from meshbench.exec.plugins import judge_outputs, load_executor
        from meshbench.runtime.agent import WorkerAgent

        task, receipt = cmd.task, cmd.receipt
        try:
            referee = self._referees.get(task.executor)
            if referee is None:  # one per executor, made once (an engine is costly to build)
                extra = (
                    {} if task.executor == "wasm" else {task.executor: load_executor(task.executor)}
                )
                referee = self._referees[task.executor] = WorkerAgent(
                    self.authority, self.federation, HardwareProfile(memory_mb=1), executors=extra
                )
            wasm, data = self.blobs.get(task.wasm_cid), self.blobs.get(task.input_cid)
            mine = referee.recompute(task, wasm, data)
            if blob_cid(mine) == receipt.output_cid:
                confirmed, reason = True, ""
            elif task.validator != "exact":
                has = self.blobs.has(receipt.output_cid)
                theirs = self.blobs.get(receipt.output_cid) if has else None
                confirmed, reason = judge_outputs(task.validator, theirs, mine, module=wasm)
            else:
                confirmed, reason = False, f"the referee computed {blob_cid(mine)}"
            answer: Any = RefereeResult(
                task_cid=task.cid, confirmed=confirmed, output=str(blob_cid(mine)), reason=reason
            )
        except Exception as exc:  # delivered: the node records it
            log.exception("the referee could not re-execute %s", task.cid)
            answer = exc
        deliver(answer)

    def _judge(self, cmd: JudgeVerdict) -> VerdictJudgement:
        """Run the task's content validator on the two revealed outputs (the authority's own
        judgement; bytes it does not hold judge as disagreeing)."""
        from meshbench.exec.plugins import judge_outputs

        def get(cid: CID) -> bytes | None:
            try:
                return self.blobs.get(cid) if self.blobs.has(cid) else None
            except MeshError:
                return None

        approved, reason = judge_outputs(
            cmd.validator,
            get(cmd.worker_output),
            get(cmd.verifier_output),
            module=self._modules.get(cmd.wasm_cid) or get(cmd.wasm_cid),
        )
        return VerdictJudgement(
            task_cid=cmd.task_cid, verifier=cmd.verifier, approved=approved, reason=reason
        )

    def _observe(self, ev: Model) -> None:
        task_cid = getattr(ev, "task_cid", None)
        rec = self.records.get(task_cid) if task_cid is not None else None
        if rec is not None:
            if isinstance(ev, ExecutionReceipt):
                rec.receipt = ev
            elif isinstance(ev, VerificationReceipt):
                rec.verdicts.append(ev)
            elif isinstance(ev, QuorumReached):
                rec.outcome = ev.outcome
            elif isinstance(ev, RewardDistributed):
                rec.settlement = ev
        for listener in self._listeners:
            try:
                listener(ev)
            except Exception:
                log.exception("event listener failed")

    def _refresh_records(self, cmds: list[Command]) -> None:
        """Retire the records of the tasks these commands settled or expired. A task's
        state moves only by the fold of an event about it, so only the tasks named by the
        events appended here are looked at (O(events), not O(open tasks))."""
        assert self.state is not None
        touched = dict.fromkeys(  # in the order of the events (a set's would vary by run)
            ev.task_cid
            for cmd in cmds
            if isinstance(cmd, AppendToLedger)
            for ev in cmd.events
            if isinstance(getattr(ev, "task_cid", None), CID)
        )
        for cid in touched:
            rec = self._open.get(cid)
            if rec is not None and self.state.state_of(cid) in ("Settled", "Expired"):
                if rec.outcome is None:
                    rec.outcome = "Expired"
                self._inflight.pop(cid, None)
                del self._open[cid]
                self._settled.append(rec)
                self._leave_memory(cid)

    def _leave_memory(self, cid: CID) -> None:
        """A settled task leaves memory (its events are in this burst's transaction, and the
        books' row says what it came to): the state machine forgets it, and the node keeps
        only the newest settled records for readers by CID."""
        assert self.state is not None
        self.state.forget(cid)
        self._recent.append(cid)
        while len(self._recent) > self.keep_settled_records:
            self.records.pop(self._recent.popleft(), None)
        self._sweep_timers()

    def _sweep_timers(self) -> None:
        """Drop the timers of tasks that have left memory (they would fire stale: a
        deadline set 10 min ahead outlives its task by minutes, and a soak's heap grew by three
        timers per task). Swept when the heap has doubled since the last sweep, so each timer
        costs O(1) amortised."""
        assert self.state is not None
        if len(self._timers) < max(TIMERS_SWEPT_FROM, 2 * self._timers_swept):
            return
        remembered = self.state.tasks
        self._timers = [t for t in self._timers if t[2].task_cid in remembered]
        heapq.heapify(self._timers)
        self._timers_swept = len(self._timers)

    # --- API (any thread) ------------------------------------------------------------------
    def publish(self, task: TaskIntent, *, envelope: EncryptedBlob | None = None) -> TaskRecord:
        """Submit a signed task whose module and input are already in the blob store.

        With ``envelope`` the input is private: ``input_cid`` is its ciphertext, and its key
        is sealed to the worker and verifiers only when the protocol chooses them.
        """
        for cid in (task.wasm_cid, task.input_cid):
            if not self.blobs.has(cid):
                raise ProtocolError(f"the blob {cid} is not in this node's store; put it first")

        task.verify()  # checked once here; the core and the ledger trust the node's check

        def work() -> TaskRecord:
            rec = TaskRecord(task=task, envelope=envelope)
            self.records[task.cid] = rec
            self._open[task.cid] = rec
            self.tasks_published += 1
            try:
                cmds = self._handle(task)
                if envelope is not None:
                    # each stimulus's events are written before the next stimulus is
                    # journalled: restore replays the journal in exactly that order
                    self._run(cmds)
                    cmds = self._handle(PrivateInput(task_cid=task.cid))
            except MeshError:
                del self.records[task.cid]
                del self._open[task.cid]
                self.tasks_published -= 1
                raise
            self._run(cmds)
            return rec

        return self.call(work)

    def append(self, *events: Model) -> None:
        """Append signed events that are not protocol stimuli (governance, policy) to the
        ledger and the state machine's books, and tell the listeners.

        The ledger folds them into the node's one books (which the state machine reads) and
        writes them; a refused event raises its typed error and changes nothing.
        """

        def work() -> None:
            assert self._ledger is not None
            # proposals and votes are decided by the authority's time: stamp it first
            stamp = gov.clock_stamp(self._ledger.books, self.authority, events, self.clock())
            batch = events if stamp is None else (stamp, *events)
            self._ledger.append(*batch)
            for ev in batch:
                self._observe(ev)

        self.call(work)

    def submit(self, item: Model | bytes | Stimulus, *, wait: bool = True) -> None:
        """The one way in for a protocol stimulus: a signed object (a PeerInfo, a stake
        request, an offer, ...), its encoded bytes, or a runtime stimulus (:class:`Faucet`).

        Bytes are decoded and checked (CID, schema, signature); an object handed over as
        such is checked here (:meth:`Model.verify`) since the core trusts the node's check.
        With ``wait`` (from any thread but the driver's) a refused item raises its typed
        :class:`MeshError` and changes nothing. Without ``wait`` the item is queued and this
        returns at once (safe from a listener on the driver thread too); what the core
        refuses is then recorded in :attr:`rejections`.
        """
        if not wait:
            self._queue.put(lambda: self._take(item, raising=False))
            return
        if threading.current_thread() is self._thread:
            raise ProtocolError(
                "submit(wait=True) on the node's driver thread would re-enter the state "
                "machine; use submit(..., wait=False) there"
            )
        obj = self._checked_input(item)
        self.call(lambda: self._take(obj, raising=True))

    def _checked_input(self, item: Model | bytes | Stimulus) -> object:
        if isinstance(item, bytes | bytearray | memoryview):
            return decode_object(bytes(item))
        if isinstance(item, Model):
            item.verify()
        return item

    def _take(self, item: Model | bytes | Stimulus, *, raising: bool) -> None:
        """Driver thread: hand one checked input to the core and carry out its commands."""
        assert self.state is not None
        if raising:
            self._run(self._handle(item))
            return
        try:
            obj = self._checked_input(item)
        except MeshError as exc:
            label = f"{len(item)} bytes" if isinstance(item, bytes) else item
            self._reject(label, exc)
            return
        self.feed(obj)

    def subscribe(self, listener: Callable[[Model], None]) -> Callable[[], None]:
        """Call ``listener(event)`` for every ledger event from now on (on the driver
        thread, after it is appended); returns the function that unsubscribes it.

        Subscribing from the driver thread (inside :meth:`call`) takes effect at once, so a
        replay done in the same call misses nothing.
        """
        self.call(lambda: self._listeners.append(listener))
        return lambda: self.unsubscribe(listener)

    def unsubscribe(self, listener: Callable[[Model], None]) -> None:
        def drop() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        if self._thread is None or not self._thread.is_alive():
            drop()  # a closed node has no driver to run it on
        else:
            self.call(drop)

    def watch_waiting(self, listener: Callable[[CID, str | None], None]) -> Callable[[], None]:
        """Call ``listener(task_cid, why)`` (on the driver thread) whenever a task's reason
        for waiting (:meth:`why`) changes, None once nothing holds it up; returns the
        function that stops it. Registered from the driver thread, it takes effect at once."""

        def add() -> None:
            # a reason changes only in handle(): from now on, every change is told
            self._waiting = self._reasons()
            self._waiting_listeners.append(listener)

        def remove() -> None:
            if listener in self._waiting_listeners:
                self._waiting_listeners.remove(listener)

        def stop() -> None:
            if self._thread is None or not self._thread.is_alive():
                remove()  # a closed node has no driver to run it on
            else:
                self.call(remove)

        self.call(add)
        return stop

    def waiting(self) -> dict[CID, str]:
        """Every open task that cannot proceed now, with the reason (see :meth:`why`)."""
        return self.call(self._reasons)

    def _reasons(self) -> dict[CID, str]:
        if self.state is None:
            return {}
        reasons = ((cid, self.state.why(cid)) for cid in self.state.tasks)
        return {cid: why for cid, why in reasons if why is not None}

    def subscribed(self, listener: Callable[[Model], None]) -> bool:
        return listener in self._listeners

    @property
    def rejections(self) -> Rejections:
        """What this node refused lately (read-only, oldest first; ``.total`` counts all)."""
        return Rejections(self._rejections, lambda: self._rejected)

    def snapshot(self) -> NodeSnapshot:
        """The books as of now, copied on the driver thread (readers never race it)."""

        def take() -> NodeSnapshot:
            assert self.state is not None
            peers = tuple(sorted(self.state.peers))
            return NodeSnapshot(at_ms=self.clock(), books=self.state.books.copy(), peers=peers)

        return self.call(take)

    def state_of(self, task_cid: CID) -> str:
        return self.call(lambda: self._task_state(task_cid) if self.state else "Unknown")

    def why(self, task_cid: CID) -> str | None:
        """Why the task cannot proceed now (see :meth:`AuthorityState.why`), or None."""

        def why() -> str | None:
            assert self.state is not None
            if self._stored_task(task_cid) is not None and task_cid not in self.state.tasks:
                return None  # settled and forgotten: nothing holds it up
            return self.state.why(task_cid)

        return self.call(why if self.state else lambda: None)

    def _task_state(self, task_cid: CID) -> str:
        """A task's state: the state machine's, or for a settled task that left memory, the
        row the ledger keeps (unknown tasks raise ProtocolError)."""
        assert self.state is not None
        if task_cid not in self.state.tasks:
            row = self._stored_task(task_cid)
            if row is not None:
                return str(row["state"])
        return self.state.state_of(task_cid)

    def _stored_task(self, task_cid: CID) -> dict[str, Any] | None:
        assert self.state is not None and self._ledger is not None
        row = self.state.books.task(task_cid)
        return row if row is not None else self._ledger.stored_row("tasks", cid_key(task_cid))

    def task_row(self, task_cid: CID) -> dict[str, Any] | None:
        """The task's row of the derived tables (from memory while it is open, from the
        ledger once settled and forgotten), or None for a task this node never saw."""
        return self.call(lambda: self._stored_task(task_cid))

    def balance(self, did: str) -> int:
        return self.call(lambda: self._ledger.books.balance(did) if self._ledger is not None else 0)

    def policy(self) -> MeshPolicy:
        """The active policy of this node's federation (read on the driver thread; unlike
        :meth:`snapshot` it copies nothing, so its cost does not grow with history)."""
        return self.call(
            lambda: self.state.books.policy_for(self.federation) if self.state else MeshPolicy(),
            durable=False,
        )

    def bonded_workers(self, min_stake: int) -> int:
        """How many accounts have bonded at least ``min_stake`` (reads the stakes only)."""

        def count() -> int:
            stakes = self._ledger.books.table("stakes") if self._ledger is not None else {}
            return sum(1 for s in stakes.values() if s["bonded"] >= min_stake)

        return self.call(count, durable=False)

    def cpu_seconds(self) -> float:
        """CPU time the driver thread has used so far (every signature made and checked,
        every fold, ledger write and command carried out on the authority's side)."""
        return self.call(time.thread_time)

    def books_tables(self) -> dict[str, dict[str, Any]]:
        return self.call(lambda: self._ledger.books.tables() if self._ledger is not None else {})

    def ledger_events(self) -> list[Model]:
        """Every event of the ledger, in order (e.g. to serve peers that join late)."""
        return self.call(
            lambda: (
                [ev for _, _, ev in self._ledger.iter_events(check=False)]
                if self._ledger is not None
                else []
            )
        )

    def verify_ledger(self, timeout: float | None = None) -> LedgerReport | None:
        """Refold every committed event and compare with the stored tables, through a
        connection of its own on a thread of its own, in one read transaction (the events
        and tables of one moment: WAL lets the driver commit meanwhile). It took the driver
        thread before, and the node did nothing else for about 3 s per 10,000 events.
        Waits up to ``timeout`` seconds (None: until it is done; TimeoutError after, the
        check going on by itself). None if the node never opened its ledger."""
        ledger = self._ledger
        if ledger is None:
            return None
        path = ledger.path
        done: Future[LedgerReport] = Future()

        def check() -> None:
            try:
                with Ledger(path) as reader:
                    done.set_result(reader.verify())
            except BaseException as exc:
                done.set_exception(exc)

        threading.Thread(target=check, name="mesh-ledger-verify", daemon=True).start()
        return done.result(timeout)


@dataclass(frozen=True)
class _Refused:
    """A worker's answer that its check refused (recorded by the driver thread)."""

    what: str
    error: MeshError


def _answer_label(answer: Any) -> str:
    if isinstance(answer, bytes):
        return f"{len(answer)} bytes"
    return "reveal or verdict" if isinstance(answer, tuple) else type(answer).__name__


def _check_object(data: bytes) -> Model:
    """A worker's signed object: decoded and checked (CID, schema, signature) once."""
    return decode_object(data)


def _check_reveal(
    answer: tuple[bytes, bytes], *, blobs: BlobStore
) -> tuple[ExecutionReceipt, bytes, StagedBlob] | _Refused:
    """A reveal: the worker's receipt, checked, and the output it names (hash-checked and
    staged in ``blobs``: written and fsynced here, kept by the driver if accepted)."""
    data, output = answer
    try:
        receipt = decode_object(data)
        if not isinstance(receipt, ExecutionReceipt):
            raise ProtocolError(f"a reveal must be an ExecutionReceipt, not {type(receipt)}")
        if blob_cid(output) != receipt.output_cid:
            raise CIDMismatch("the revealed output does not hash to the receipt's output_cid")
    except MeshError as exc:
        return _Refused("reveal", exc)
    return receipt, output, blobs.stage(output, expected=receipt.output_cid)


def _check_verdict(
    answer: bytes | tuple[bytes, bytes],
) -> Model | tuple[VerificationReceipt, bytes] | _Refused:
    """A verdict (bytes), or a verdict with the verifier's own output (hash-checked)."""
    if isinstance(answer, bytes):
        return decode_object(answer)
    data, output = answer
    try:
        verdict = decode_object(data)
        if not isinstance(verdict, VerificationReceipt):
            raise ProtocolError(f"a verdict must be a VerificationReceipt, not {type(verdict)}")
        if verdict.output_cid is not None and blob_cid(output) != verdict.output_cid:
            raise CIDMismatch("the verifier's output does not hash to its verdict's output_cid")
    except MeshError as exc:
        return _Refused("verdict", exc)
    return verdict, output


_IDLE: Callable[[], None] = lambda: None  # noqa: E731

#: How long a burst that owes nobody an answer may wait in the open transaction for the
#: next bursts to commit with it (seconds of wall time, whatever the node's clock). 0: each
#: burst commits (measured: a longer delay makes fewer but larger commits at about the same
#: CPU, and a SIGKILL then loses more of the workers' answers; the crash suite saw more
#: no-shows at 20 ms).
COMMIT_DELAY_S = 0.0

#: How many offer rounds a task gets when a round brings no offer at all.
OFFER_ROUNDS = 3

#: Bytes of freshly put blobs the node's store keeps for their first read (see BlobStore).
HANDOFF_BYTES = 8 * 1024 * 1024

#: How many settled tasks' records a node keeps for readers by CID (``records``); older
#: ones are read from the ledger (frames, story), and each handle keeps its own record.
KEEP_SETTLED_RECORDS = 1024
#: How many of its newest refusals a node keeps (:attr:`AuthorityNode.rejections`).
REJECTIONS_KEPT = 1024

#: The timer heap is swept of settled tasks' timers once it holds this many (and then each
#: time it has doubled): a few dozen tasks' worth, so that the heap's saw-tooth stays small
#: beside what a task keeps (a sweep of this many takes ~30 us).
TIMERS_SWEPT_FROM = 256

#: The commands that reach workers through the backend (held until :meth:`resume`).
_WORKER_REQUESTS = (Broadcast, RunExecution, RunVerification, RequestReveal, RequestVerdict)

#: What :meth:`AuthorityNode.submit` takes besides signed objects and their bytes.
Stimulus = Faucet | SnapshotReputation

#: The former name (the node is the federation's ledger authority); kept for older code.
MeshNode = AuthorityNode
