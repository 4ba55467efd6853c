"""The Dask backend: every Dask worker hosts one mesh worker identity.

A :class:`MeshWorkerPlugin` gives each Dask worker process a
:class:`~meshbench.runtime.agent.WorkerAgent`: its own Ed25519 key (kept under the data dir,
by Dask worker name, so a restarted worker keeps its identity and reputation), its hardware
as Dask sees it (memory limit, threads, ``GPU`` resources) and its behaviour.

Every request goes to the one worker it is for, so a verifier never re-checks its own work.
By default (``direct``) the node calls the chosen worker straight, without the scheduler: on
a lane to each worker (:mod:`meshbench.runtime.lane`: one TCP connection, MessagePack
frames, opened with a secret the worker gives over Dask's comm; where Dask's comm is not
plain TCP, or ``lanes`` is off, over Dask's own comms instead: the client's connection pool
and a handler the plugin adds to each Dask worker, op :data:`DIRECT_OP`). An execution runs
on the worker's thread pool, an offer, reveal or verdict at once where it arrives. A Dask
task costs the node about 2 ms of CPU and its worker as much (scheduler, task states, a
fetch of the result), a ``Client.run`` 1.5 ms and 1 ms, a direct call over Dask's comms
about 0.6 ms and 0.4 ms (one at a time, 4 worker processes on 2 cores), on a lane a small
fraction of that (``meshbench bench mesh`` runs all of these side by side). A module
travels to a worker with its first execution there and is named by its CID afterwards (the
worker keeps the newest :data:`MODULES_KEPT`, and asks for it again when it has let it go).
With ``direct=False`` executions and verifications are Dask tasks pinned to the chosen
worker (``workers=[address]``, ``allow_other_workers=False``: on a cluster shared with other
Dask work, its scheduler then counts them against the worker's threads), the module
scattered to each worker once, and offers, reveals and verdicts go through ``Client.run``.

On a :class:`~meshbench.runtime.clock.ManualClock` (``clock``) every call carries the
node's time and the agents sign offers, commitments, reveals and verdicts with it, as the
in-process backend's agents do, so a mesh on a manual clock is reproducible over Dask too;
on the wall clock (the default) each worker signs with its own clock when it answers.

A worker lost mid-task simply never answers: the protocol's execution timeout reassigns the
task, escrow stays locked until the task settles, and nobody is paid twice.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import contextlib
import functools
import logging
import os
import re
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import dask
from distributed import Client, get_worker
from distributed.diagnostics.plugin import WorkerPlugin
from distributed.protocol.serialize import ToPickle

from meshbench.core.encoding import CID, blob_cid
from meshbench.core.errors import InvalidModule, NetworkError, ProtocolError, UnknownPeer
from meshbench.core.model import decode_object
from meshbench.core.types import ExecutionReceipt, HardwareProfile, TaskIntent
from meshbench.runtime.agent import Behaviour, CostModel, WorkerAgent
from meshbench.runtime.backends import Blobs, Deliver, verdict_answer
from meshbench.runtime.clock import wall_clock_ms as _now
from meshbench.runtime.commitments import CommitmentStore
from meshbench.runtime.lane import KNOWN_ERRORS, Lane, LaneServer
from meshbench.store.keystore import Keystore

__all__ = ["DaskBackend", "MeshWorkerPlugin", "ModuleNotHeld", "worker_key_name"]

PLUGIN_NAME = "meshbench"
#: The Dask comm op of the node's direct calls to a worker (a handler the plugin installs).
DIRECT_OP = "meshbench_call"
#: How many modules a worker process keeps for direct calls (newest used last), and at most
#: how many bytes of them: one it let go is sent again with the next execution that needs it.
MODULES_KEPT = 32
MODULES_KEPT_BYTES = 512 * 1024 * 1024
#: How many (module, worker address) pairs the node remembers as sent (then it sends again).
MODULES_SENT_KEPT = 4096
#: How long the list of live workers an offer burst is sent to is used before the scheduler
#: is asked again (a worker lost meanwhile answers its call with an error: no offer).
LIVE_WORKERS_FOR_S = 1.0
#: How long the backend's first direct call to each worker (see ``_check_direct``) may take.
DIRECT_CHECK_S = 10.0

#: How long a request for a worker not known (yet) waits for it to appear (a worker its
#: nanny restarts is back in a few seconds) before it is answered UnknownPeer.
UNKNOWN_WORKER_WAIT_S = 15.0

#: Every so many Dask tasks submitted the scheduler forgets its finished spans.
PRUNE_SPANS_EVERY = 500
#: How many entries of its metadata's ``collections`` a span the backend's tasks joined keeps
#: (see :func:`_prune_span`; all are ``{"type": "Future"}``).
SPAN_COLLECTIONS_KEPT = 64
log = logging.getLogger("meshbench.dask")
#: How long a reveal or verdict call to a worker that was lost waits for the worker (its
#: key) to come back under a new address, to be sent again there: a worker its nanny
#: restarts keeps its commitments on disk and can still answer within the protocol's
#: timeout (an answer after it is refused by the node like any late one).
RETURN_WITHIN_S = 60.0


#: This worker process's agents by (keys dir, key name): a plugin registered again (a
#: restarted authority registers it on connecting) takes over the agent's commit-reveal
#: state, so a commitment made before the restart can still be revealed and judged.
_AGENTS: dict[tuple[str, str], WorkerAgent] = {}


def worker_key_name(worker_name: object) -> str:
    """The key a Dask worker's agent keeps under the keys dir (by its Dask name)."""
    return "worker-" + re.sub(r"[^A-Za-z0-9_.-]", "_", str(worker_name))[:50]


class MeshWorkerPlugin(WorkerPlugin):
    """Installs a WorkerAgent on every Dask worker (present and future)."""

    name = PLUGIN_NAME

    def __init__(
        self,
        keys_dir: str,
        federation: str,
        *,
        behaviours: Mapping[str, Behaviour] | None = None,
        cost: CostModel | None = None,
        module_cache_dir: str | None = None,
        executors: tuple[str, ...] = (),
        costs: Mapping[str, CostModel] | None = None,
    ) -> None:
        """``executors``: extra executor plug-ins (by entry point name, e.g. ``cuda``) each
        worker loads; one with an ``advertise(hardware)`` method amends the worker's
        HardwareProfile (a GPU executor calibrates and reports its throughput).
        ``costs``: the cost model of some workers, by Dask worker name (else ``cost``)."""
        self.keys_dir = keys_dir
        self.federation = federation
        self.behaviours = dict(behaviours or {})
        self.cost = cost
        self.costs = dict(costs or {})
        self.module_cache_dir = module_cache_dir
        self.executors = tuple(executors)
        self.agent: WorkerAgent | None = None

    def setup(self, worker: Any) -> None:
        from meshbench.exec.plugins import load_executor
        from meshbench.exec.wasm import WasmExecutor

        key_name = worker_key_name(worker.name)
        identity = Keystore(self.keys_dir).load_or_create(key_name)
        memory = getattr(getattr(worker, "memory_manager", None), "memory_limit", None)
        gpus = int(worker.state.total_resources.get("GPU", 0)) if hasattr(worker, "state") else 0
        hardware = HardwareProfile(
            memory_mb=int(memory // (1024 * 1024)) if memory else 4096,
            cpu_cores=max(1, int(worker.state.nthreads)),
            gpu_flops=0,
            gpu_class=f"{gpus}xGPU" if gpus else "",
        )
        extra = {name: load_executor(name) for name in self.executors}
        for executor in extra.values():
            advertise = getattr(executor, "advertise", None)
            if advertise is not None:
                hardware = advertise(hardware)
        self.agent = WorkerAgent(
            identity,
            self.federation,
            hardware,
            executor=WasmExecutor(cache_dir=self.module_cache_dir),
            cost=self.costs.get(str(worker.name), self.cost),
            behaviour=self.behaviours.get(str(worker.name), "honest"),
            capacity=max(1, int(worker.state.nthreads)),
            executors=extra,
            # next to its key: a worker its nanny restarts still opens its commitments
            commitments=CommitmentStore(Path(self.keys_dir) / f"{key_name}.commitments"),
        )
        previous = _AGENTS.get((self.keys_dir, key_name))
        if previous is not None and previous.did == identity.did:
            self.agent.take_over(previous)
        _AGENTS[(self.keys_dir, key_name)] = self.agent
        worker.handlers[DIRECT_OP] = _direct_handler(worker)
        _open_lane(worker)

    def teardown(self, worker: Any) -> None:
        worker.handlers.pop(DIRECT_OP, None)
        server = _LANE_SERVERS.pop(str(worker.address), None)
        if server is not None:
            server.close()


def _agent(dask_worker: Any = None) -> WorkerAgent:
    """This Dask worker's agent (``Client.run`` passes ``dask_worker``; tasks find it)."""
    plugin = (dask_worker or get_worker()).plugins[PLUGIN_NAME]
    agent = getattr(plugin, "agent", None)
    if agent is None:
        raise RuntimeError("the meshbench worker plugin is not set up on this Dask worker")
    return agent


# --- functions that run on Dask workers (module level: pickled by reference) -----------------
# Each takes ``now_ms``: the node's time when it asked (a manual clock's), which the agent
# signs with, or None for the worker's own wall clock at the moment it answers.
def _at(now_ms: int | None) -> int:
    return _now() if now_ms is None else now_ms


def _describe(now_ms: int | None, dask_worker: Any = None) -> tuple[str, bytes]:
    agent = _agent(dask_worker)
    return agent.did, agent.peer_info(_at(now_ms), addresses=(dask_worker.address,)).encode()


def _stake(amount: int, now_ms: int | None, dask_worker: Any = None) -> bytes:
    return _agent(dask_worker).stake_request(amount, _at(now_ms), nonce=_at(now_ms)).encode()


#: Tasks this worker process decoded lately, by their bytes: a task is decoded (CID, schema,
#: the publisher's signature) when it is offered for, and its execution here brings the same
#: bytes again (decoding is a pure function of the bytes, and a TaskIntent is frozen).
_TASKS: OrderedDict[bytes, TaskIntent] = OrderedDict()
_TASKS_LOCK = threading.Lock()
TASKS_KEPT = 512


def _task_of(task_bytes: bytes) -> TaskIntent:
    """The checked TaskIntent of ``task_bytes`` (decoded once, see :data:`_TASKS`); anything
    else raises as :func:`decode_object` does."""
    with _TASKS_LOCK:
        task = _TASKS.get(task_bytes)
        if task is not None:
            _TASKS.move_to_end(task_bytes)
            return task
    decoded = decode_object(task_bytes)
    if not isinstance(decoded, TaskIntent):
        raise ProtocolError(f"a task was asked for, and the bytes are a {type(decoded).__name__}")
    with _TASKS_LOCK:
        _TASKS[task_bytes] = decoded
        while len(_TASKS) > TASKS_KEPT:
            _TASKS.popitem(last=False)
    return decoded


def _offer(task_bytes: bytes, now_ms: int | None, dask_worker: Any = None) -> bytes | None:
    task = _task_of(task_bytes)
    offer = _agent(dask_worker).offer(task, _at(now_ms))
    return None if offer is None else offer.encode()


def _offer_batch(
    tasks: list[bytes], now_ms: int | None, dask_worker: Any = None
) -> list[bytes | None]:
    return [_offer(t, now_ms, dask_worker=dask_worker) for t in tasks]


def _execute(
    task_bytes: bytes,
    wasm: bytes,
    data: bytes,
    role: str,
    envelope: bytes | None,
    now_ms: int | None,
    dask_worker: Any = None,
) -> bytes:
    task = _task_of(task_bytes)
    agent = _agent(dask_worker)
    return agent.execute(task, wasm, data, _at(now_ms), role=role, envelope=envelope).encode()


def _reveal(task_cid: str, now_ms: int | None, dask_worker: Any = None) -> tuple[bytes, bytes]:
    receipt, output = _agent(dask_worker).reveal(CID.decode(task_cid), _at(now_ms))
    return receipt.encode(), output


def _verdict(
    task_cid: str,
    receipt_bytes: bytes,
    output: bytes | None,
    now_ms: int | None,
    dask_worker: Any = None,
) -> bytes | tuple[bytes, bytes]:
    receipt = decode_object(receipt_bytes)
    assert isinstance(receipt, ExecutionReceipt)
    agent = _agent(dask_worker)
    return verdict_answer(agent, CID.decode(task_cid), receipt, _at(now_ms), output)


def _each(items: Iterable[Any], answer: Callable[[Any], Any]) -> list[Any]:
    """``answer(item)`` for each of a batch's items, or the error it raised (one item that
    fails does not take the others with it)."""
    out: list[Any] = []
    for item in items:
        try:
            out.append(answer(item))
        except Exception as exc:
            out.append(exc)
    return out


def _execute_batch(
    items: list[tuple[bytes, bytes, bytes, str, bytes | None]], now_ms: int | None
) -> list[Any]:
    """Several executions in one Dask task; each answer is its commitment or its error."""
    return _each(items, lambda item: _execute(*item, now_ms))


class ModuleNotHeld(LookupError):
    """A direct execution named a module by its CID that this worker does not hold (it let
    it go, or it restarted): the node sends the call again with the module's bytes."""


#: modules held for direct calls by this worker process, by CID text (newest used last)
_MODULES: OrderedDict[str, bytes] = OrderedDict()
_MODULES_LOCK = threading.Lock()


def _held_module(cid: str, wasm: bytes | None) -> bytes:
    """The module ``cid``: ``wasm`` kept when it came along (the agent checks its hash before
    running it), else the one kept; :class:`ModuleNotHeld` if there is none."""
    if wasm is not None and str(blob_cid(wasm)) != cid:  # kept for later calls: check it now
        raise InvalidModule(f"the module bytes sent do not hash to {cid}")
    with _MODULES_LOCK:
        if wasm is not None:
            _MODULES[cid] = wasm
            _MODULES.move_to_end(cid)
            total = sum(len(m) for m in _MODULES.values())
            while len(_MODULES) > 1 and (
                len(_MODULES) > MODULES_KEPT or total > MODULES_KEPT_BYTES
            ):
                total -= len(_MODULES.popitem(last=False)[1])
            return wasm
        held = _MODULES.get(cid)
        if held is None:
            raise ModuleNotHeld(f"this worker does not hold the module {cid}")
        _MODULES.move_to_end(cid)
        return held


def _execute_direct(
    items: list[tuple[bytes, str, bytes | None, bytes, str, bytes | None]],
    now_ms: int | None,
    dask_worker: Any,
) -> list[Any]:
    """Several executions of one direct call (on the worker's thread pool): each item's
    module comes along or is named by its CID (:func:`_held_module`)."""

    def one(item: tuple[bytes, str, bytes | None, bytes, str, bytes | None]) -> bytes:
        task_bytes, wasm_cid, wasm, data, role, envelope = item
        module = _held_module(wasm_cid, wasm)
        return _execute(task_bytes, module, data, role, envelope, now_ms, dask_worker)

    return _each(items, one)


def _answer_now(dask_worker: Any, kind: str, items: Any, now_ms: int | None) -> Any:
    """A direct call answered at once (on the thread it arrives on): offers, reveals and
    verdicts, a ping, or the worker's lane (``None`` where it has none)."""
    if kind == "offer":
        return _offer_batch(list(items), now_ms, dask_worker=dask_worker)
    if kind == "answer":
        return _answer_batch(list(items), now_ms, dask_worker=dask_worker)
    if kind == "ping":
        return "pong"
    if kind == "lane":
        server = _LANE_SERVERS.get(str(dask_worker.address))
        return None if server is None else (server.port, server.token)
    return ProtocolError(f"no direct call {kind!r} on a mesh worker")


async def _direct(
    dask_worker: Any, kind: str = "", items: Any = (), now_ms: int | None = None
) -> Any:
    """The handler of the node's direct calls over Dask's comms (:data:`DIRECT_OP`) on a
    Dask worker: a batch of executions (on the worker's thread pool) or of offers or answers
    (on its event loop, as ``Client.run`` runs them); one answer or error per item."""
    if kind == "execute":
        loop = asyncio.get_running_loop()
        run = functools.partial(_execute_direct, list(items), now_ms, dask_worker)
        out = await loop.run_in_executor(dask_worker.executor, run)
    else:
        out = _answer_now(dask_worker, kind, items, now_ms)
    return ToPickle(out)


Answer = Callable[[Any], None]
#: The lane server of each Dask worker in this process, by its Dask address.
_LANE_SERVERS: dict[str, LaneServer] = {}


def _open_lane(dask_worker: Any) -> None:
    """Serve the node's direct calls on a lane (:mod:`meshbench.runtime.lane`) beside Dask's
    comm, where that comm is plain TCP (under TLS, or in-process, calls stay on Dask's)."""
    address = str(dask_worker.address)
    previous = _LANE_SERVERS.pop(address, None)
    if previous is not None:  # the plugin registered again (a restarted authority)
        previous.close()
    if not address.startswith("tcp://"):
        return
    host = _tcp_host(address)

    def handle(kind: str, items: list[Any], now_ms: int | None, answer: Answer) -> None:
        if kind != "execute":
            answer(_answer_now(dask_worker, kind, items, now_ms))
            return
        try:
            fut = dask_worker.executor.submit(_execute_direct, items, now_ms, dask_worker)
        except RuntimeError as exc:  # the worker is closing
            answer(exc)
            return
        fut.add_done_callback(lambda f: answer(f.exception() or f.result()))

    _LANE_SERVERS[address] = LaneServer(host, handle, name=address)


def _unwrapped(answer: Any) -> Any:
    """A direct call's answer: in-process workers pass the ``ToPickle`` through unserialised."""
    return answer.data if isinstance(answer, ToPickle) else answer


def _direct_handler(dask_worker: Any) -> Callable[..., Any]:
    """:func:`_direct` bound to ``dask_worker``, as a function with a name (Dask logs it)."""

    async def meshbench_call(kind: str = "", items: Any = (), now_ms: int | None = None) -> Any:
        return await _direct(dask_worker, kind, items, now_ms)

    return meshbench_call


def _answer_batch(
    items: list[tuple[str, Any]], now_ms: int | None, dask_worker: Any = None
) -> list[Any]:
    """Several reveals (``("reveal", task_cid)``) and verdicts (``("verdict", (task_cid,
    receipt_bytes, output))``) in one ``Client.run``."""

    def one(item: tuple[str, Any]) -> Any:
        kind, arg = item
        if kind == "reveal":
            return _reveal(arg, now_ms, dask_worker=dask_worker)
        return _verdict(*arg, now_ms, dask_worker=dask_worker)

    return _each(items, one)


def _prune_span(span_id: str, scattered: Iterable[str] = (), dask_scheduler: Any = None) -> int:
    """Have the scheduler forget what it keeps of the finished work of the span ``span_id``;
    how many task groups went.

    Dask keeps every span for the scheduler's life, and in it (dask/distributed#7977):
    - every task group it ever aggregated: a task group is made again each time the cluster
      has finished all of its kind, so a mesh settling tasks one after another left a few
      groups per idle moment (and, outside a span of its own, a new default span too);
    - one entry (``{"type": "Future"}``) per ``Client.submit`` in its metadata's
      ``collections``, in the span of each of its tasks and of each task it depends on:
      the data the backend scatters (modules, inputs) is in a default span that never ends
      (the data stays), which so got an entry per submission, and the backend's span about
      one in five: ~2 dicts a task that a soak's authority held for good.
    The scheduler's computations (deprecated, kept for the dashboard: the newest 100) also
    hold every group made while the cluster was busy, and one stays open as long as the
    cluster never idles. The backend's tasks go to one span of its own (so no default
    spans); this drops the groups of that span the scheduler has forgotten from it and from
    the computations (each computation keeps its latest group, so its ``stop`` stays true),
    and the metadata's entries but the newest :data:`SPAN_COLLECTIONS_KEPT` of it and of the
    spans of the ``scattered`` keys. The span itself stays (workers' heartbeats report to it
    by id); other spans keep their groups, and spans the backend's tasks never joined are
    not touched.
    """
    ext = dask_scheduler.extensions.get("spans")
    span = None if ext is None else ext.spans.get(span_id)
    if span is None:
        return 0
    live = dask_scheduler.task_groups
    gone = {tg for tg in span.groups if live.get(tg.name) is not tg}
    span.groups.difference_update(gone)
    joined = {span_id}
    for key in scattered:
        ts = dask_scheduler.tasks.get(key)
        if ts is not None and ts.group.span_id:
            joined.add(ts.group.span_id)
    for sid in joined:
        joined_span = ext.spans.get(sid)
        metadata = None if joined_span is None else joined_span.metadata
        if metadata is not None and len(metadata.get("collections", ())) > SPAN_COLLECTIONS_KEPT:
            del metadata["collections"][:-SPAN_COLLECTIONS_KEPT]
    for computation in getattr(dask_scheduler, "computations", ()):
        ours = [
            tg for tg in computation.groups if tg.span_id == span_id and live.get(tg.name) is not tg
        ]
        if len(ours) > 1:
            ours.remove(max(ours, key=lambda tg: tg.stop))
            computation.groups.difference_update(ours)
    return len(gone)


def _tcp_host(address: str) -> str:
    """The host of a Dask ``tcp://host:port`` address (an IPv6 host without its brackets)."""
    return address.removeprefix("tcp://").rsplit(":", 1)[0].strip("[]")


#: Errors a worker's lane answers may name: every meshbench error, and ModuleNotHeld.
_LANE_ERRORS: dict[str, type[Exception]] = {**KNOWN_ERRORS, "ModuleNotHeld": ModuleNotHeld}


def _is_lane(answer: Any) -> bool:
    """A worker's answer to ``lane``: its lane's port and secret."""
    return (
        isinstance(answer, tuple)
        and len(answer) == 2
        and isinstance(answer[0], int)
        and isinstance(answer[1], bytes)
    )


class _Batcher:
    """Collects requests per worker and sends each worker's in one call.

    A flush is scheduled on the first request and runs as soon as a pool thread is free, so
    a lone request goes out at once, while a burst (many tasks published together, many
    answers arriving together) is grouped: batching happens exactly when it keeps the
    cluster busy, and costs nothing when it is idle.

    ``one_in_flight``: while a call to a worker is out (until every request of it has been
    delivered), what comes for that worker waits and goes in the next call, sent when the
    call returns: under load the batches grow by themselves (a direct call returns at once,
    so a pool thread is always free and the rule above alone would send one call a request).
    """

    def __init__(
        self,
        pool: cf.Executor,
        send: Callable[[str, list[tuple[Any, Deliver]]], None],
        *,
        one_in_flight: bool = False,
    ) -> None:
        self._pool = pool
        self._send = send
        self.one_in_flight = one_in_flight
        self._lock = threading.Lock()
        self._pending: dict[str, list[tuple[Any, Deliver]]] = {}
        self._busy: set[str] = set()  # addresses with a call out (one_in_flight)
        self._scheduled = False
        self.batches = 0
        self.items = 0

    def add(self, address: str, item: Any, deliver: Deliver) -> None:
        with self._lock:
            self._pending.setdefault(address, []).append((item, deliver))
            if self._scheduled or address in self._busy:
                return
            self._scheduled = True
        self._pool.submit(self._flush)

    def _flush(self) -> None:
        with self._lock:
            self._scheduled = False
            if self.one_in_flight:
                pending = {a: i for a, i in self._pending.items() if a not in self._busy}
                for address in pending:
                    del self._pending[address]
                self._busy.update(pending)
            else:
                pending, self._pending = self._pending, {}
        for address, items in pending.items():
            self.batches += 1
            self.items += len(items)
            if self.one_in_flight:
                items = self._counted(address, items)
            try:
                self._send(address, items)
            except Exception as exc:
                for _, deliver in items:
                    deliver(exc)

    def _counted(self, address: str, items: list[tuple[Any, Deliver]]) -> list[tuple[Any, Deliver]]:
        """``items`` whose delivers, once all called, end the call out to ``address``."""
        left = [len(items)]

        def counted(deliver: Deliver) -> Deliver:
            def once(answer: Any) -> None:
                try:
                    deliver(answer)
                finally:
                    with self._lock:
                        left[0] -= 1
                        done = left[0] == 0
                        if done:
                            self._busy.discard(address)
                        again = done and bool(self._pending.get(address)) and not self._scheduled
                        if again:
                            self._scheduled = True
                    if again:
                        with contextlib.suppress(RuntimeError):  # closed meanwhile
                            self._pool.submit(self._flush)

            return once

        return [(item, counted(deliver)) for item, deliver in items]


class DaskBackend:
    """Workers are the Dask workers of ``client``'s cluster."""

    def __init__(
        self,
        client: Client,
        keys_dir: str | os.PathLike[str],
        federation: str,
        *,
        behaviours: Mapping[str, Behaviour] | None = None,
        cost: CostModel | None = None,
        module_cache_dir: str | os.PathLike[str] | None = None,
        batching: bool = True,
        batch_max_cycles: int = 20_000_000,
        executors: tuple[str, ...] = (),
        costs: Mapping[str, CostModel] | None = None,
        clock: Callable[[], int] = _now,
        direct: bool = True,
        lanes: bool = True,
    ) -> None:
        """``costs``: cost models by Dask worker name (the others use ``cost``); ``clock``:
        the node's clock, whose time every call to a worker carries; ``direct``: call the
        workers straight (else Dask tasks and ``Client.run``: see the module's text);
        ``lanes``: make those calls on a lane to each worker (:mod:`meshbench.runtime.lane`)
        where it has one, else over Dask's comms."""
        self.client = client
        self.clock = clock
        self.direct = direct
        self.lanes = lanes
        #: each worker's lane (port, secret) as it said over Dask's comm, None: it has none
        self._lane_info: dict[str, tuple[int, bytes] | None] = {}
        self._lane_by_address: dict[str, Lane] = {}
        self._lane_opening: set[str] = set()
        #: direct calls made on lanes, and over Dask's comms
        self.lane_calls = 0
        self.comm_calls = 0
        #: (module CID, address) pairs whose module went to that worker (direct calls)
        self._modules_sent: OrderedDict[tuple[CID, str], None] = OrderedDict()
        self._live: tuple[float, set[str]] | None = None  # (when asked, live addresses)
        #: executions sent again with their module (the worker had let it go)
        self.modules_resent = 0
        plugin = MeshWorkerPlugin(
            str(Path(keys_dir)),
            federation,
            behaviours=behaviours,
            cost=cost,
            module_cache_dir=str(module_cache_dir) if module_cache_dir else None,
            executors=tuple(executors),
            costs=costs,
        )
        client.register_plugin(plugin, name=PLUGIN_NAME)
        self._addr: dict[str, str] = {}
        self._scattered: dict[tuple[CID, str], Any] = {}
        self._lock = threading.Lock()
        self._pool = cf.ThreadPoolExecutor(max_workers=4, thread_name_prefix="mesh-dask")
        #: requests for workers not known yet wait here, one at a time (see _to)
        self._waits = cf.ThreadPoolExecutor(max_workers=1, thread_name_prefix="mesh-dask-wait")
        self._closed = threading.Event()
        self._futures: set[Any] = set()
        self.batching = batching
        self.batch_max_cycles = batch_max_cycles
        self._executions = _Batcher(self._pool, self._send_executions)
        self._offer_queue: list[tuple[bytes, Deliver]] = []
        self._offer_flush_scheduled = False
        self._answers = _Batcher(self._pool, self._send_answers, one_in_flight=True)
        self._submitted = 0  # Dask tasks submitted (the scheduler's span pruned every so many)
        self._prune = True
        #: the span of every Dask task this backend submits (see _prune_span)
        self._span = {"name": ("meshbench",), "ids": (f"meshbench-{uuid.uuid4()}",)}
        #: answer calls that failed with their worker, waiting for it to come back, by did
        self._awaiting: dict[str, list[tuple[Any, Deliver]]] = {}
        #: answers sent again to a worker that came back under a new address
        self.resent = 0
        if self.direct:
            self._check_direct()

    def _rpc(self, address: str) -> Any:
        """The client's pooled connection to the Dask worker at ``address``."""
        return self.client.rpc(address)

    def _check_direct(self) -> None:
        """Direct calls need this client to reach the workers' own addresses (Dask's
        ``gather`` does too, but a client may sit where only the scheduler is reachable): one
        call to each worker; if one fails, this backend goes through the scheduler instead
        (``direct`` false), with a warning that says why."""
        workers = list(self.client.scheduler_info()["workers"])

        async def all_of() -> list[Any]:
            calls = [asyncio.wait_for(self._lane_of(a), DIRECT_CHECK_S) for a in workers]
            return list(await asyncio.gather(*calls, return_exceptions=True))

        try:
            answers = self.client.sync(all_of)
        except Exception as exc:
            answers = [exc]
        answers = [_unwrapped(a) for a in answers]
        failed = []
        for address, answer in zip(workers, answers, strict=False):
            if answer is None or _is_lane(answer):
                self._lane_info[address] = answer
            else:
                failed.append((address, answer))
        if failed or len(answers) != len(workers):
            self.direct = False
            log.warning(
                "direct calls to the Dask workers failed (%s): the mesh goes through the "
                "scheduler (Dask tasks and Client.run)",
                ", ".join(f"{w}: {a!r}" for w, a in failed[:3]) or repr(answers[:1]),
            )

    def _now(self) -> int | None:
        """The time a call carries: the node's manual clock, or None (the worker's own
        wall clock when it answers, as a separate machine's would be)."""
        return None if self.clock is _now else self.clock()

    # --- membership --------------------------------------------------------------------
    def _refresh(self) -> dict[str, bytes]:
        """Ask every worker who it is; one that cannot answer yet (still starting) keeps the
        address it had."""
        answers = self.client.run(_describe, self._now(), on_error="return")
        infos = {}
        with self._lock:
            for address, answer in answers.items():
                if isinstance(answer, BaseException):
                    # not counted as a worker now; say why (a restarted worker whose plugin
                    # failed stays out of the mesh: the crash suite saw workers drop out)
                    log.info("Dask worker %s cannot describe itself: %r", address, answer)
                    continue
                did, info = answer
                self._addr[did] = address
                infos[did] = info
        return infos

    def describe(self, now_ms: int) -> list[bytes]:
        return list(self._refresh().values())

    def stake_requests(self, amount: int, now_ms: int) -> list[bytes]:
        return list(self.client.run(_stake, amount, self._now()).values())

    def worker_count(self) -> int:
        return len(self._addr)

    def address_of(self, did: str) -> str:
        """The Dask address of worker ``did`` (asking the workers again when it is not known:
        a worker that restarts keeps its key under a new address)."""
        with self._lock:
            address = self._addr.get(did)
        if address is None:
            self._refresh()
            with self._lock:
                address = self._addr.get(did)
        if address is None:
            raise UnknownPeer(f"no Dask worker of this cluster holds the key {did}")
        return address

    def _live_addresses(self) -> set[str]:
        """The workers the scheduler has now. A worker lost and started again (by its
        nanny) comes back under a new address with the same key: its address is learnt
        here, and a lost worker is not asked (a call to it would wait for a timeout)."""
        current = set(self.client.scheduler_info()["workers"])
        with self._lock:
            known = set(self._addr.values())
            # the data scattered to a worker that is gone is gone with it (a worker that
            # comes back is at a new address and gets it again): forget those futures
            for key in [k for k in self._scattered if k[1] not in current]:
                del self._scattered[key]
            # so are its lane and what it said of it (a worker back is at a new address)
            for address in [a for a in self._lane_info if a not in current]:
                del self._lane_info[address]
            went = [a for a in self._lane_by_address if a not in current]
            gone = [self._lane_by_address.pop(a) for a in went]
        for lane in gone:
            lane.close()
        if current - known:
            self._refresh()
        return current

    # --- requests ------------------------------------------------------------------------
    def request_offers(self, task: TaskIntent, blobs: Blobs, deliver: Deliver) -> None:
        # tasks published together are offered for together: one Client.run per burst
        with self._lock:
            self._offer_queue.append((task.encode(), deliver))
            if self._offer_flush_scheduled:
                return
            self._offer_flush_scheduled = True
        self._pool.submit(self._flush_offers)

    def _live_for_offers(self) -> set[str]:
        """The live workers, asked of the scheduler at most every :data:`LIVE_WORKERS_FOR_S`
        for direct offers (a burst of offers each asking it was a scheduler round trip a
        burst); a Dask-task mesh asks every burst."""
        cached = self._live
        if self.direct and cached is not None and time.monotonic() - cached[0] < LIVE_WORKERS_FOR_S:
            return cached[1]
        live = self._live_addresses()
        self._live = (time.monotonic(), live)
        return live

    def _flush_offers(self) -> None:
        try:
            live: set[str] | None = self._live_for_offers()
        except Exception as exc:  # the offers below go to the workers known so far
            log.warning("could not list the Dask workers: %r", exc)
            live = None
        with self._lock:
            queue, self._offer_queue = self._offer_queue, []
            self._offer_flush_scheduled = False
            known = list(set(self._addr.values()))
        asked = [a for a in known if live is None or a in live]  # a lost one answers None
        tasks = [t for t, _ in queue]
        if self.direct:
            for address in known:
                if address in asked:
                    self._call(address, "offer", tasks, functools.partial(self._offers_in, queue))
                else:
                    self._offers_in(queue, None)
            return
        try:
            answers = (
                self.client.run(_offer_batch, tasks, self._now(), workers=asked, on_error="return")
                if asked
                else {}
            )
        except Exception as exc:
            answers = dict.fromkeys(asked, exc)
        for address, answer in answers.items():
            if isinstance(answer, BaseException):  # its offers count as declined: say why
                log.warning("the offer call to %s failed: %r", address, answer)
        for i, (_, deliver) in enumerate(queue):
            for address in known:
                answer = answers.get(address)
                ok = isinstance(answer, list) and i < len(answer)
                deliver(answer[i] if ok else None)

    def _offers_in(self, queue: list[tuple[bytes, Deliver]], answer: Any) -> None:
        """One worker's answer to a direct offer call for the tasks of ``queue``."""
        if isinstance(answer, BaseException):  # its offers count as declined: say why
            log.warning("an offer call failed: %r", answer)
        ok = isinstance(answer, list)
        for i, (_, deliver) in enumerate(queue):
            deliver(answer[i] if ok and i < len(answer) else None)

    def _call(self, address: str, kind: str, items: list[Any], then: Callable[[Any], None]) -> None:
        """Call worker ``address`` directly, on its lane (:meth:`_lane`) or else over Dask's
        comms (:data:`DIRECT_OP`, the client's connection pool, on its event loop);
        ``then(answers or the call's exception)`` runs on this backend's pool, so nothing of
        the node's work runs on a lane's reader or on Dask's event loop."""
        now = self._now()
        lane = self._lane(address)
        if lane is not None:
            try:
                lane.call(kind, items, now, functools.partial(self._answered, then))
                self.lane_calls += 1
                return
            except NetworkError:  # the worker went (or its lane did): Dask's comm says which
                with self._lock:
                    if self._lane_by_address.get(address) is lane:
                        del self._lane_by_address[address]
        self.comm_calls += 1

        async def call() -> Any:
            return await self._rpc(address).meshbench_call(kind=kind, items=items, now_ms=now)

        def done(fut: cf.Future[Any]) -> None:
            try:
                result = fut.result()
            except BaseException as exc:  # lost worker, closed comm, cancelled at close
                result = exc
            self._answered(then, _unwrapped(result))

        try:
            fut = asyncio.run_coroutine_threadsafe(call(), self.client.loop.asyncio_loop)
        except Exception as exc:  # the client's loop is gone (closing)
            then(exc)
            return
        fut.add_done_callback(done)

    def _answered(self, then: Callable[[Any], None], answers: Any) -> None:
        with contextlib.suppress(RuntimeError):  # closed: nobody waits for it any more
            self._pool.submit(then, answers)

    def _lane(self, address: str) -> Lane | None:
        """The open lane to ``address``, or None: it has none (it said so, or it has not
        said yet: asked now, in the background), it is being opened, or opening it failed
        (the worker is gone, or unreachable there: its calls go over Dask's comm)."""
        if not self.lanes:
            return None
        with self._lock:
            lane = self._lane_by_address.get(address)
            if lane is not None and lane.closed is None:
                return lane
            if address in self._lane_opening:
                return None
            asked = address in self._lane_info
            info = self._lane_info.get(address)
            if info is None and asked:
                return None
            self._lane_opening.add(address)
        if not asked:
            self._ask_lane(address)
            return None
        assert info is not None
        try:
            port, secret = info
            lane = Lane(_tcp_host(address), port, secret, known_errors=_LANE_ERRORS, name=address)
        except OSError as exc:
            log.info("no lane to the Dask worker %s (%r): over Dask's comm", address, exc)
            lane = None
        with self._lock:
            self._lane_opening.discard(address)
            if lane is None:
                self._lane_info[address] = None
            else:
                self._lane_by_address[address] = lane
        return lane

    async def _lane_of(self, address: str) -> Any:
        """Worker ``address``'s answer over Dask's comm to ``lane``: its lane's port and
        secret, None where it has none (the start-up check of direct calls asks this too)."""
        return await self._rpc(address).meshbench_call(kind="lane")

    def _ask_lane(self, address: str) -> None:
        """Ask ``address`` (over Dask's comm) for its lane; its calls use it once it is known."""

        def done(fut: cf.Future[Any]) -> None:
            try:
                answer = _unwrapped(fut.result())
            except BaseException as exc:
                answer = exc
            with self._lock:
                self._lane_opening.discard(address)
                self._lane_info[address] = answer if _is_lane(answer) else None

        try:
            loop = self.client.loop.asyncio_loop
            asyncio.run_coroutine_threadsafe(self._lane_of(address), loop).add_done_callback(done)
        except Exception:  # the client's loop is gone (closing): no lane
            with self._lock:
                self._lane_opening.discard(address)
                self._lane_info[address] = None

    def _blob_future(self, cid: CID, data: bytes, address: str) -> Any:
        key = (cid, address)
        with self._lock:
            fut = self._scattered.get(key)
        if fut is None:
            fut = self.client.scatter(data, workers=[address], hash=False)
            with self._lock:
                self._scattered[key] = fut
        return fut

    def execute(
        self, did: str, task: TaskIntent, blobs: Blobs, role: str, deliver: Deliver
    ) -> None:
        item = (task, blobs, role)

        def send(address: str) -> None:
            # Measured (bench mesh): grouping helps executions of about 1 ms and hurts those
            # of about 10 ms (a batch runs its executions one after another); batch the short.
            if self.batching and task.scope.cpu_cycles <= self.batch_max_cycles:
                self._executions.add(address, item, deliver)
            else:
                self._pool.submit(self._send_executions, address, [(item, deliver)])

        self._to(did, send, deliver)

    def _to(self, did: str, send: Callable[[str], None], deliver: Deliver) -> None:
        """``send`` to worker ``did``'s address now if it is known, else once it is.

        A worker killed and started again by its nanny comes back with its key under a new
        address a few seconds later; a request for it (an authority restarting at that moment
        asks again for what its open tasks wait on) waits for it off the caller's thread, up
        to :data:`UNKNOWN_WORKER_WAIT_S`, then is answered ``UnknownPeer`` (before, it was
        refused at once, and the worker slashed as a no-show for a request it never got).
        """
        with self._lock:
            address = self._addr.get(did)
        if address is not None:
            send(address)
        else:
            self._waits.submit(self._await_worker, did, send, deliver)

    def _await_worker(self, did: str, send: Callable[[str], None], deliver: Deliver) -> None:
        try:
            address = self._address_when_back(did, UNKNOWN_WORKER_WAIT_S)
        except Exception as exc:  # the cluster cannot be asked (closing): say so
            deliver(exc)
            return
        if address is None:
            deliver(UnknownPeer(f"no Dask worker of this cluster holds the key {did}"))
        else:
            send(address)

    def _address_when_back(
        self, did: str, within_s: float, *, lost: str | None = None, patient: bool = False
    ) -> str | None:
        """Worker ``did``'s address once the scheduler serves its key (at another address
        than ``lost``), asking twice a second for up to ``within_s``; None if it did not
        come. A failure to ask ends the wait by raising, unless ``patient``."""
        end = time.monotonic() + within_s
        while True:
            try:
                self._refresh()
            except Exception as exc:
                if not patient:
                    raise
                log.info("could not list the Dask workers: %r", exc)
            with self._lock:
                address = self._addr.get(did)
            if address is not None and address != lost:
                return address
            if time.monotonic() >= end or self._closed.is_set():
                return None
            self._closed.wait(0.5)  # a worker starting takes seconds

    def _send_executions(self, address: str, items: list[tuple[Any, Deliver]]) -> None:
        if self.direct:
            self._send_executions_direct(address, items)
        else:
            self._submit_executions(address, items)

    def _send_executions_direct(
        self, address: str, items: list[tuple[Any, Deliver]], *, with_modules: bool = False
    ) -> None:
        """Executions as one direct call; a module goes along the first time this worker
        needs it (or every time, ``with_modules``: the worker said it let it go)."""
        payload = []
        for (task, blobs, role), _ in items:
            key = (task.wasm_cid, address)
            with self._lock:
                sent = key in self._modules_sent and not with_modules
                if sent:
                    self._modules_sent.move_to_end(key)
                else:
                    self._modules_sent[key] = None
                    if len(self._modules_sent) > MODULES_SENT_KEPT:
                        self._modules_sent.popitem(last=False)
            wasm = None if sent else blobs[0]
            payload.append((task.encode(), str(task.wasm_cid), wasm, blobs[1], role, blobs[2]))

        def then(answers: Any) -> None:
            if not isinstance(answers, list) or len(answers) != len(items):
                answers = [answers] * len(items)  # the call failed: each execution with it
            again = []
            for item, answer in zip(items, answers, strict=True):
                if isinstance(answer, ModuleNotHeld) and not with_modules:
                    again.append(item)
                else:
                    item[1](answer)
            if again:
                self.modules_resent += len(again)
                self._send_executions_direct(address, again, with_modules=True)

        self._call(address, "execute", payload, then)

    def _submit_executions(self, address: str, items: list[tuple[Any, Deliver]]) -> None:
        # the module is shared by many tasks: send it to each worker once; the input is
        # usually unique to the task: send it with the task (one message, not two)
        payload = [
            (
                task.encode(),
                self._blob_future(task.wasm_cid, blobs[0], address),
                blobs[1],
                role,
                blobs[2],
            )
            for (task, blobs, role), _ in items
        ]
        first_task, _, first_role = items[0][0]
        with dask.annotate(span=self._span):
            fut = self.client.submit(
                _execute_batch,
                payload,
                self._now(),
                workers=[address],
                allow_other_workers=False,
                pure=False,
                # the count first: Dask names a task's prefix by the key's leading words, and a
                # CID's letters there made one prefix per task, which its scheduler keeps forever
                key=f"mesh-{first_role}-{len(items)}-{str(first_task.cid)[-12:]}-{address[-5:]}",
            )
        self._futures.add(fut)
        delivers = [d for _, d in items]

        def done(f: Any) -> None:
            self._futures.discard(f)
            try:
                answers = f.result()
            except Exception as exc:
                answers = [exc] * len(delivers)
            for deliver, answer in zip(delivers, answers, strict=True):
                deliver(answer)

        fut.add_done_callback(done)
        self._submitted += 1
        if self._submitted % PRUNE_SPANS_EVERY == 0:
            self._pool.submit(self.prune_spans)

    def prune_spans(self) -> int:
        """Have the scheduler forget what Dask would keep of finished work forever (see
        :func:`_prune_span`); how many task groups went. A scheduler that cannot (it lacks this
        module, or its Dask differs) is asked no more, with one log line."""
        if not self._prune:
            return 0
        try:
            with self._lock:
                scattered = [fut.key for fut in self._scattered.values()]
            return int(self.client.run_on_scheduler(_prune_span, self._span["ids"][-1], scattered))
        except Exception as exc:
            self._prune = False
            log.info("the Dask scheduler cannot forget its finished spans: %r", exc)
            return 0

    def reveal(self, did: str, task_cid: CID, deliver: Deliver) -> None:
        self._to(
            did, lambda address: self._answer(address, ("reveal", str(task_cid)), deliver), deliver
        )

    def verdict(
        self,
        did: str,
        task_cid: CID,
        receipt: ExecutionReceipt,
        deliver: Deliver,
        *,
        output: bytes | None = None,
    ) -> None:
        item = ("verdict", (str(task_cid), receipt.encode(), output))
        self._to(did, lambda address: self._answer(address, item, deliver), deliver)

    def _answer(self, address: str, item: tuple[str, Any], deliver: Deliver) -> None:
        if self.batching:
            self._answers.add(address, item, deliver)
        else:
            self._pool.submit(self._send_answers, address, [(item, deliver)])

    def _send_answers(
        self, address: str, items: list[tuple[Any, Deliver]], *, held: bool = False
    ) -> None:
        """``held``: these waited for their worker to come back once already (not again)."""
        if self.direct:

            def then(answers: Any) -> None:
                if isinstance(answers, list) and len(answers) == len(items):
                    for (_, deliver), answer in zip(items, answers, strict=True):
                        deliver(answer)
                    return
                exc = (
                    answers
                    if isinstance(answers, Exception)
                    else ProtocolError(f"a worker answered {len(items)} requests with {answers!r}")
                )
                if held or not self._await_return(address, items, exc):
                    for _, deliver in items:
                        deliver(exc)

            self._call(address, "answer", [i for i, _ in items], then)
            return
        try:
            answers = self.client.run(
                _answer_batch, [i for i, _ in items], self._now(), workers=[address]
            )
        except Exception as exc:  # the worker was lost (or its call failed): it may come back
            if held or not self._await_return(address, items, exc):
                raise
            return
        for (_, deliver), answer in zip(items, answers[address], strict=True):
            deliver(answer)

    def _await_return(self, address: str, items: list[tuple[Any, Deliver]], exc: Exception) -> bool:
        """Hold ``items`` (reveal and verdict requests whose call to ``address`` failed with
        ``exc``) until their worker's key is served at a new address, then send them there;
        False (nothing held) when no known worker was at ``address``."""
        with self._lock:
            dids = [d for d, a in self._addr.items() if a == address]
            if not dids:
                return False
            did = dids[0]
            waiting = did in self._awaiting
            self._awaiting.setdefault(did, []).extend(items)
        log.info("answer call to %s at %s failed: %r; waiting for it to return", did, address, exc)
        if not waiting:
            threading.Thread(
                target=self._resend_when_back, args=(did, address, exc), daemon=True,
                name="mesh-dask-return",
            ).start()  # fmt: skip
        return True

    def _resend_when_back(self, did: str, lost: str, exc: Exception) -> None:
        """Look for ``did`` at a new address (every half second, up to
        :data:`RETURN_WITHIN_S`); send what waits for it there, or deliver ``exc``."""
        address = self._address_when_back(did, RETURN_WITHIN_S, lost=lost, patient=True)
        with self._lock:
            items = self._awaiting.pop(did, [])
        if address is None:
            for _, deliver in items:
                deliver(exc)
            return
        self.resent += len(items)
        try:
            self._send_answers(address, items, held=True)
        except Exception as err:
            for _, deliver in items:
                deliver(err)

    def batch_stats(self) -> dict[str, float]:
        """How much batching happened: requests per Dask call, executions and answers."""
        e, a = self._executions, self._answers
        return {
            "executions_per_call": round(e.items / e.batches, 2) if e.batches else 0.0,
            "answers_per_call": round(a.items / a.batches, 2) if a.batches else 0.0,
        }

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            lanes, self._lane_by_address = list(self._lane_by_address.values()), {}
        for lane in lanes:
            lane.close()
        self._waits.shutdown(wait=True, cancel_futures=True)
        self._pool.shutdown(wait=True, cancel_futures=True)
