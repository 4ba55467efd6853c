"""The mesh over libp2p: the authority node's backend and the workers' service.

Over a peer-to-peer mesh nobody calls a worker directly: everything is a signed object on a
gossip topic, and blobs travel by CID through the content protocol. What must stay private
until a task settles (the worker's receipt and output, verdicts with their salts, a private
input's key envelope, the output a content validator judges) travels sealed to its one
recipient (:class:`~meshbench.store.sealing.SealedMessage`, blobs encrypted to it); only
tasks, offers, requests and commitments are readable by every peer.

* :class:`P2PBackend` is the :class:`~meshbench.runtime.backends.WorkerBackend` of a
  ledger-authority :class:`~meshbench.runtime.node.AuthorityNode`: it gossips the task (and
  provides its module and input), gossips a signed :class:`~meshbench.core.events.WorkRequest`
  for each execution, verification, reveal and verdict the protocol asks for, and hands the
  participants' answers (offers, commitments, receipts with their output fetched by CID,
  verdicts) back to the node, which checks and folds them like any other input.
* :class:`WorkerService` runs on a worker peer around a
  :class:`~meshbench.runtime.agent.WorkerAgent`: it offers for tasks it can run, acts on
  work requests signed by its federation's authority (fetching module and input from
  whoever provides them), and publishes what it computed.

Run a worker from the shell with ``python -m meshbench.runtime.p2p worker --bootstrap ADDR
--authority DID [--data-dir D]``.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

from meshbench.core.encoding import CID
from meshbench.core.errors import BlobNotFound, MeshError, NetworkError, ProtocolError
from meshbench.core.events import (
    Mint,
    RewardDistributed,
    StakeBonded,
    StakeRequest,
    StakeSlashed,
    TaskAssigned,
    WorkRequest,
)
from meshbench.core.identity import Identity
from meshbench.core.model import Model, decode_object
from meshbench.core.types import (
    ComputeOffer,
    ExecutionReceipt,
    HardwareProfile,
    PeerInfo,
    ResultCommitment,
    TaskIntent,
    VerificationReceipt,
)
from meshbench.net.keys import peer_id_from_did
from meshbench.net.topics import TOPIC_TYPES, Topic
from meshbench.runtime.agent import WorkerAgent
from meshbench.runtime.backends import Blobs, Deliver
from meshbench.runtime.clock import wall_clock_ms as _now
from meshbench.runtime.commitments import CommitmentStore
from meshbench.store.blobs import EncryptedBlob, decrypt
from meshbench.store.ledger import stored_events
from meshbench.store.sealing import SealedMessage, open_sealed, seal_objects

__all__ = ["P2PBackend", "WorkerService"]

log = logging.getLogger("meshbench.p2p")
#: Ledger events the authority gossips so that peers learn their funding, bonds and slashes.
GOSSIPED = (Mint, StakeBonded, StakeSlashed)


#: A worker that came back is sent what it missed at once, and what it has still not
#: answered this much later once more.
ASK_AGAIN_AFTER_S = 3.0
#: A reveal or verdict not answered this long after it was sent is sent again (to any
#: party, present or not: a message lost around a restart, its answer or the answer's
#: output, is not waited for until the timeout; answering again is cheap and alike).
REASK_ANSWER_EVERY_S = 8.0
#: A peer that joins late is sent at most this many of the newest events about peers, and
#: of the ledger topic (all policy events come first): see P2PBackend._late_joiner_events.
LATE_PEERS = 4_000
LATE_LEDGER = 12_000
_LATE: tuple[tuple[Topic, int | None], ...] = (
    (Topic.POLICY, None),
    (Topic.PEERS, LATE_PEERS),
    (Topic.LEDGER, LATE_LEDGER),
)
#: A worker peer keeps a request whose task it has not seen this long, for this many tasks.
PARKED_FOR_S = 60.0
PARKED_MAX = 1024
#: What a pending request of the authority waits for, from exactly one party.
Step = Literal["commit", "reveal", "verdict"]


class P2PBackend:
    """Reach workers through a :class:`~meshbench.runtime.transport.Transport`.

    Every pending step is keyed by (task, party, step): only the party the request was
    addressed to, signing as itself in the role it was asked for, can answer it. Anything
    else (an outsider's receipt, a second offer, a verdict nobody asked for) changes nothing:
    it is logged and counted in :attr:`ignored`. Reveals and verdicts arrive sealed to the
    authority (:class:`~meshbench.store.sealing.SealedMessage`); the same objects in the
    clear are ignored, so a worker that leaks its receipt gains nothing by it.
    """

    def __init__(self, transport: Any, authority: Identity) -> None:
        self.transport = transport
        self.authority = authority
        self._lock = threading.Lock()
        self._workers: dict[str, bytes] = {}
        self._addresses: dict[str, tuple[str, ...]] = {}
        self._offer_rounds: dict[CID, Deliver] = {}
        self._offered: dict[CID, set[str]] = {}
        self._pending: dict[tuple[CID, str, Step], Deliver] = {}
        #: How to send each pending request again to a party that comes back (its process
        #: restarted, its commitments kept on disk), which missed it
        self._resend: dict[tuple[CID, str, Step], Callable[[], None]] = {}
        #: The workers present (connected, subscribed to requests) at the last look
        self._present: set[str] = set()
        #: Workers back lately, and when what they still have not answered goes once more
        self._ask_again_at: dict[str, float] = {}
        #: When each pending reveal and verdict request was last sent
        self._sent_at: dict[tuple[CID, str, Step], float] = {}
        #: Requests sent again to a party that came back, counted by step
        self.resent: Counter[str] = Counter()
        #: Objects that changed nothing, counted by reason.
        self.ignored: Counter[str] = Counter()
        self._closed = threading.Event()
        self._dialler: threading.Thread | None = None
        self._ledger_path: Path | None = None  # the authority's ledger (see resume)
        self._pool = cf.ThreadPoolExecutor(max_workers=4, thread_name_prefix="mesh-p2p")
        #: Outputs are fetched here: a fetch from a party that went away waits up to its
        #: timeout and must hold up no request going out
        self._fetches = cf.ThreadPoolExecutor(max_workers=4, thread_name_prefix="mesh-p2p-fetch")
        #: Provider records go out here, after what they serve: a DHT announcement waits on
        #: every close peer (seconds for one that is cut off) and must delay no request.
        self._dht = cf.ThreadPoolExecutor(max_workers=1, thread_name_prefix="mesh-p2p-dht")
        #: Called with the bytes of objects nobody asked for (PeerInfo, StakeRequest).
        self.unsolicited: Callable[[bytes], None] | None = None
        self._subs = [
            transport.subscribe("offers", self._on_offer),
            transport.subscribe("executions", self._on_execution),
            transport.subscribe("verifications", self._on_verification),
            transport.subscribe("sealed", self._on_sealed),
            transport.subscribe("peers", self._on_peer),
            transport.subscribe("ledger", self._on_ledger),
        ]

    # --- what the node asks --------------------------------------------------------------
    def describe(self, now_ms: int) -> list[bytes]:
        with self._lock:
            return list(self._workers.values())

    def stake_requests(self, amount: int, now_ms: int) -> list[bytes]:
        return []  # workers bond by themselves once the faucet has funded them

    def worker_count(self) -> int:
        with self._lock:
            return len(self._workers)

    def request_offers(self, task: TaskIntent, blobs: Blobs, deliver: Deliver) -> None:
        with self._lock:
            again = task.cid in self._offer_rounds  # asked again (no offer came): no new records
            self._offer_rounds[task.cid] = deliver
            self._offered[task.cid] = set()

        def go() -> None:
            # workers fetch the blobs from this node (the task's origin) without a lookup
            self.transport.publish("tasks", task)
            if not again:
                self._provide(task.wasm_cid, task.input_cid)

        self._pool.submit(self._guard, go)

    def _provide(self, *cids: CID) -> None:
        for cid in cids:
            self._dht.submit(self._guard, lambda c=cid: self.transport.provide(c))

    def execute(
        self, did: str, task: TaskIntent, blobs: Blobs, role: str, deliver: Deliver
    ) -> None:
        attachments: list[Model] = []
        if blobs[2] is not None:
            # a private input: its key envelope (sealed to the chosen parties) goes to this
            # party only, inside the request
            envelope = decode_object(blobs[2])
            if not isinstance(envelope, EncryptedBlob):
                raise ProtocolError("a private task's envelope must be an EncryptedBlob")
            attachments.append(envelope)
        action = "execute" if role == "worker" else "verify"

        def again() -> None:
            # a peer that restarted has forgotten the tasks it saw: the task goes along
            self._request(task.cid, did, action, [task, *attachments])

        with self._lock:
            self._pending[(task.cid, did, "commit")] = deliver
            self._resend[(task.cid, did, "commit")] = again
        self._pool.submit(self._guard, lambda: self._request(task.cid, did, action, attachments))

    def reveal(self, did: str, task_cid: CID, deliver: Deliver) -> None:
        def go() -> None:
            self._request(task_cid, did, "reveal")

        with self._lock:
            self._pending[(task_cid, did, "reveal")] = deliver
            self._resend[(task_cid, did, "reveal")] = go
            self._sent_at[(task_cid, did, "reveal")] = time.monotonic()
        self._pool.submit(self._guard, go)

    def verdict(
        self,
        did: str,
        task_cid: CID,
        receipt: ExecutionReceipt,
        deliver: Deliver,
        *,
        output: bytes | None = None,
    ) -> None:
        """The receipt (and, for a content validator, the worker's output, encrypted to this
        verifier alone) travel sealed to ``did`` with the request."""

        def go() -> None:
            attachments: list[Model] = [receipt]
            envelope = None
            if output is not None:
                envelope = self.transport.store.put_encrypted(output, [did])
                attachments.append(envelope)
            self._request(task_cid, did, "verdict", attachments, receipt.cid)
            if envelope is not None:
                self._provide(envelope.ciphertext_cid)

        with self._lock:
            self._pending[(task_cid, did, "verdict")] = deliver
            self._resend[(task_cid, did, "verdict")] = go
            self._sent_at[(task_cid, did, "verdict")] = time.monotonic()
        self._pool.submit(self._guard, go)

    def _request(
        self,
        task_cid: CID,
        did: str,
        action: str,
        attachments: list[Model] | tuple[()] = (),
        receipt: CID | None = None,
    ) -> None:
        req = WorkRequest(
            authority=self.authority.did,
            task_cid=task_cid,
            target=did,
            action=action,  # type: ignore[arg-type]
            receipt_cid=receipt,
            timestamp=_now(),
        ).sign(self.authority)
        if attachments:
            sealed = seal_objects(self.authority, did, task_cid, [req, *attachments], _now())
            self.transport.publish("sealed", sealed)
        else:
            self.transport.publish("tasks", req)
        log.info("sent %s of %s to %s (request %s)", action, task_cid, did, req.cid)

    def gossip(self, event: Model) -> None:
        """A node listener: share the ledger events peers act on, keep what late joiners are
        served, and forget a settled task's pending steps."""
        if isinstance(event, GOSSIPED):
            self._pool.submit(self._guard, lambda: self.transport.publish("ledger", event))
        self._learn_worker(event)
        if isinstance(event, TaskAssigned):
            # a new attempt (the previous worker failed): what the earlier parties were asked
            # is closed, and is not sent again to one that comes back (its requests follow)
            with self._lock:
                for key in [k for k in self._resend if k[0] == event.task_cid]:
                    del self._resend[key]
        if isinstance(event, RewardDistributed):
            with self._lock:
                for key in [k for k in self._pending if k[0] == event.task_cid]:
                    del self._pending[key]
                    self._resend.pop(key, None)
                self._offer_rounds.pop(event.task_cid, None)
                self._offered.pop(event.task_cid, None)

    def resume(self, ledger: Path) -> None:
        """Take up the mesh where the authority's ledger (the file ``ledger``) left it.

        Peers that join late are served from the ledger file, read when they ask (what
        :meth:`_late_joiner_events` says: the policy events, the newest about peers and of
        the ledger topic), not from the gossip log, which forgets, nor from a copy in
        memory, which would grow with the history; the workers
        whose PeerInfo the ledger accepted are known again (an authority that restarted
        still waits for their offers) and are dialled at the addresses they announced.
        """
        self._ledger_path = Path(ledger)
        for _kind, data in stored_events(self._ledger_path, ("PeerInfo",)):
            self._learn_worker(decode_object(data))
        self.transport.set_event_source(self._late_joiner_events)
        self._dialler = threading.Thread(target=self._keep_workers_connected, daemon=True)
        self._dialler.start()

    def _keep_workers_connected(self, every_s: float = 2.0, look_s: float = 0.5) -> None:
        """Dial the known workers that are not connected (after a restart of this node, a
        worker's, or a network that split), every ``every_s``, until the backend closes;
        every ``look_s``, send a worker that came back the requests it missed while it was
        away (:meth:`_resend_to_returned`)."""
        ticks = 0
        while not self._closed.is_set():
            if ticks % max(1, round(every_s / look_s)) == 0:
                try:
                    self._dial_workers()
                except Exception:
                    log.exception("dialling the workers failed")
            try:
                self._resend_to_returned()
            except Exception:
                log.exception("sending requests again failed")
            ticks += 1
            self._closed.wait(look_s)

    def _resend_to_returned(self) -> None:
        """A worker present now (connected and subscribed to the request topics) that was
        not at the last look came back: a request sent while it was away was lost on the
        way (or the execution it was running died with it), and the party, its commitments
        kept on disk, can still answer it within the protocol's timeout. What it has not
        answered :data:`ASK_AGAIN_AFTER_S` later is sent once more (a peer just back may
        miss a message while its subscriptions settle; the peer ignores a request it is
        already working on). A reveal or verdict still unanswered
        :data:`REASK_ANSWER_EVERY_S` after it was sent goes again to anyone (its answer, or
        the request, may have been lost around a restart); an execution goes again only to
        a party that came back (running it twice is not cheap)."""
        present = {
            p.did
            for p in self.transport.peers()
            if Topic.TASKS in p.topics and Topic.SEALED in p.topics
        }
        now = time.monotonic()
        with self._lock:
            back = present - self._present
            self._present = present
            for did in back:
                self._ask_again_at[did] = now + ASK_AGAIN_AFTER_S
            later = {d for d, at in self._ask_again_at.items() if at <= now and d in present}
            for did in later:
                del self._ask_again_at[did]
            again = {k: go for k, go in self._resend.items() if k[1] in back | later}
            for key in list(self._sent_at):
                if key not in self._resend:
                    del self._sent_at[key]  # answered, or closed by a new assignment
                elif now - self._sent_at[key] >= REASK_ANSWER_EVERY_S:
                    again[key] = self._resend[key]
            for key in again:
                if key in self._sent_at:
                    self._sent_at[key] = now
                self.resent[key[2]] += 1
        for (task_cid, did, step), go in again.items():
            log.info("the %s request for %s sent again to %s", step, task_cid, did)
            self._pool.submit(self._guard, go)

    def _learn_worker(self, event: Model) -> None:
        """Workers are those whose PeerInfo the authority accepted (it is in the ledger)."""
        if isinstance(event, PeerInfo) and "worker" in event.roles:
            with self._lock:
                self._workers[event.did] = event.encode()
                self._addresses[event.did] = event.addresses

    def _dial_workers(self) -> None:
        connected = {p.did for p in self.transport.peers()}
        with self._lock:
            todo = [(d, a) for d, a in self._addresses.items() if d not in connected]
        for did, addrs in todo:
            for addr in addrs:
                try:
                    self.transport.connect(addr)
                    break
                except MeshError as exc:
                    log.info("could not dial worker %s at %s: %s", did, addr, exc)

    def _late_joiner_events(self) -> Iterator[tuple[Topic, bytes]]:
        """What a peer that joins late is sent, from the ledger file: every policy event (the
        rules in force), then the newest :data:`LATE_PEERS` events about peers and the newest
        :data:`LATE_LEDGER` of the ledger topic (funding, bonds, slashes, settlements), each
        in ledger order. A receiver keeps at most its event log (20,000 by default) from one
        sync, so a long history is cut from its old end, not its new one."""
        assert self._ledger_path is not None, "resume() names the ledger first"
        wanted = self.transport.config.sync_topics
        for topic, newest in _LATE:
            if topic in wanted:
                tags = TOPIC_TYPES[topic]
                for _kind, data in stored_events(self._ledger_path, tags, newest=newest):
                    yield topic, data

    def close(self) -> None:
        self._closed.set()
        for sub in self._subs:
            sub.cancel()
        if self._dialler is not None:
            self._dialler.join(30)
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._fetches.shutdown(wait=True, cancel_futures=True)
        self._dht.shutdown(wait=True, cancel_futures=True)

    # --- what the mesh says ---------------------------------------------------------------
    def _ignore(self, reason: str, obj: Model, peer: str) -> None:
        with self._lock:
            self.ignored[reason] += 1
        log.info("ignored %s %s from %s: %s", type(obj).__name__, obj.cid, peer, reason)

    def _on_offer(self, obj: Model, peer: str) -> None:
        if not isinstance(obj, ComputeOffer):
            return
        with self._lock:
            deliver = self._offer_rounds.get(obj.task_cid)
            known = obj.worker in self._workers
            first = known and deliver is not None and obj.worker not in self._offered[obj.task_cid]
            if first:
                self._offered[obj.task_cid].add(obj.worker)
        if deliver is None:
            self._ignore("offer for a task with no open offer round", obj, peer)
        elif not known:
            self._ignore("offer from a peer that has not announced itself as a worker", obj, peer)
        elif not first:
            self._ignore("second offer of a worker for the same task", obj, peer)
        else:
            deliver(obj.encode())

    def _on_execution(self, obj: Model, peer: str) -> None:
        if isinstance(obj, ResultCommitment):
            with self._lock:
                deliver = self._pending.pop((obj.task_cid, obj.worker, "commit"), None)
                self._resend.pop((obj.task_cid, obj.worker, "commit"), None)
            log.info("a commitment for %s from %s", obj.task_cid, obj.worker)
            if deliver is None:
                self._ignore("commitment nobody asked this party for", obj, peer)
            else:
                deliver(obj.encode())
        elif isinstance(obj, ExecutionReceipt):
            self._ignore("receipt in the clear (reveals travel sealed)", obj, peer)

    def _on_verification(self, obj: Model, peer: str) -> None:
        if isinstance(obj, VerificationReceipt):
            self._ignore("verdict in the clear (verdicts travel sealed)", obj, peer)

    def _on_sealed(self, msg: Model, peer: str) -> None:
        """A sealed reveal or verdict: it consumes the pending step only if the party the
        request went to signed both the envelope and the object, in the role asked for."""
        if not isinstance(msg, SealedMessage) or msg.recipient != self.authority.did:
            return  # another recipient's mail
        try:
            objects = open_sealed(msg, self.authority)
        except MeshError as exc:
            self._ignore(f"sealed message that does not open ({type(exc).__name__})", msg, peer)
            return
        reveal = any(isinstance(o, ExecutionReceipt) for o in objects)
        step: Step = "reveal" if reveal else "verdict"
        want = ExecutionReceipt if reveal else VerificationReceipt
        found = [o for o in objects if isinstance(o, want)]
        envelopes = [o for o in objects if isinstance(o, EncryptedBlob)]
        if len(found) != 1 or len(envelopes) > 1 or (step == "reveal" and not envelopes):
            self._ignore(f"sealed {step} without exactly one {want.__name__}", msg, peer)
            return
        obj = found[0]
        party = obj.worker if isinstance(obj, ExecutionReceipt) else obj.verifier
        if party != msg.sender:
            self._ignore(f"sealed {step} of {party} sent by {msg.sender}", msg, peer)
            return
        key = (obj.task_cid, party, step)
        log.info("a sealed %s for %s from %s", step, obj.task_cid, party)
        with self._lock:
            deliver = self._pending.pop(key, None)
            if deliver is not None and not envelopes:
                self._resend.pop(key, None)
        if deliver is None:
            self._ignore(f"{step} nobody asked this party for", obj, peer)
        elif envelopes:  # a reveal, or a content validator's verdict: with its output
            self._fetches.submit(self._fetch_output, obj, envelopes[0], deliver, msg.sender, key)
        else:
            deliver(obj.encode())

    def _fetch_output(
        self,
        obj: ExecutionReceipt | VerificationReceipt,
        envelope: EncryptedBlob,
        deliver: Deliver,
        sender: str,
        key: tuple[CID, str, Step],
    ) -> None:
        try:
            # the party that sealed it holds the bytes: ask it first, no provider lookup
            holder = [str(peer_id_from_did(sender))]
            path = self.transport.fetch_blob(envelope.ciphertext_cid, peers=holder, timeout=120)
            output = decrypt(Path(path).read_bytes(), envelope, self.authority)
        except (NetworkError, BlobNotFound) as exc:
            # the party went away before its output came (killed just after answering): the
            # step waits again, and the party is asked again when it comes back
            log.info("could not fetch the output of %s from %s: %s", key[0], sender, exc)
            with self._lock:
                if key in self._resend:
                    self._pending.setdefault(key, deliver)
                    return
            deliver(exc)
            return
        except Exception as exc:  # delivered: the node records it, the protocol times out
            with self._lock:
                self._resend.pop(key, None)
            deliver(exc)
            return
        with self._lock:
            self._resend.pop(key, None)
        deliver((obj.encode(), output))

    def _on_peer(self, obj: Model, _peer: str) -> None:
        # the node checks it; once in the ledger, ``gossip`` learns the worker
        if isinstance(obj, PeerInfo) and self.unsolicited is not None:
            self.unsolicited(obj.encode())

    def _on_ledger(self, obj: Model, _peer: str) -> None:
        if isinstance(obj, StakeRequest) and self.unsolicited is not None:
            self.unsolicited(obj.encode())

    @staticmethod
    def _guard(fn: Callable[[], Any]) -> None:
        try:
            fn()
        except Exception:
            log.exception("p2p request failed")


class WorkerService:
    """A worker peer: offers, executes, verifies, reveals, judges; bonds once funded.

    Requests come from the federation's authority only: in the clear (execute, verify,
    reveal) or sealed to this peer with what it needs (a private input's key envelope; the
    receipt to judge and, for a content validator, the worker's output). Reveals and verdicts
    go back sealed to the authority. With ``state_dir`` the peer remembers that it bonded,
    so a restarted worker rejoins with its key and stake and does not bond again.
    """

    def __init__(
        self,
        agent: WorkerAgent,
        transport: Any,
        *,
        authority: str,
        bond: int = 200,
        state_dir: Path | None = None,
    ) -> None:
        self.agent = agent
        self.transport = transport
        self.authority = authority
        self.bond = bond
        self._tasks: dict[CID, TaskIntent] = {}
        #: requests being worked on now (a request asked again meanwhile is not done twice)
        self._doing: set[tuple[CID, str, CID | None]] = set()
        #: requests whose task has not come yet, by task: (request, attachments, drop at)
        self._parked: dict[CID, list[tuple[WorkRequest, list[Model], float]]] = {}
        self._cond = threading.Condition()
        self._funded = threading.Event()
        self._bonded = threading.Event()
        self._bond_requested = False
        self._marker = None if state_dir is None else state_dir / f"bonded-{authority[-16:]}"
        if self._marker is not None and self._marker.exists():
            self._bonded.set()
        #: the slashes of this peer's bond it has made good (so that one is topped up once,
        #: however often it is heard: gossip, a sync after a restart)
        self._slashes = None if state_dir is None else state_dir / f"slashes-{authority[-16:]}"
        self._made_good: set[str] = set()
        if self._slashes is not None and self._slashes.exists():
            self._made_good = set(self._slashes.read_text().split())
        self._stop = threading.Event()
        self._pool = cf.ThreadPoolExecutor(max_workers=2, thread_name_prefix="mesh-worker")
        #: Provider records go out after the answers they serve (see P2PBackend).
        self._dht = cf.ThreadPoolExecutor(max_workers=1, thread_name_prefix="mesh-dht")
        #: The authority's PeerID: it provides the tasks' blobs and the verdict envelopes.
        self._holder = [str(peer_id_from_did(authority))]
        self._subs = [
            transport.subscribe("tasks", self._on_task_topic),
            transport.subscribe("sealed", self._on_sealed),
            transport.subscribe("ledger", self._on_ledger),
        ]
        self._announcer = threading.Thread(target=self._announce, name="mesh-announce", daemon=True)
        self._announcer.start()

    @property
    def bonded(self) -> bool:
        return self._bonded.is_set()

    def _announce(self) -> None:
        """Publish this peer's PeerInfo until the authority has funded it (bounded)."""
        for _ in range(120):
            addrs = tuple(self.transport.addrs)[:32]
            self._publish("peers", self.agent.peer_info(_now(), addresses=addrs))
            if self._funded.wait(1.0) or self._stop.is_set():
                return

    def _publish(self, topic: str, obj: Model) -> None:
        try:
            self.transport.publish(topic, obj)
        except Exception:
            log.exception("could not publish %s", type(obj).__name__)

    def task(self, cid: CID) -> TaskIntent | None:
        """A task this peer has seen on the mesh."""
        with self._cond:
            return self._tasks.get(cid)

    def _on_ledger(self, obj: Model, _peer: str) -> None:
        if getattr(obj, "authority", None) != self.authority:
            return
        if isinstance(obj, StakeBonded) and obj.account == self.agent.did:
            self._bonded.set()
            if self._marker is not None:
                self._marker.write_text(str(obj.cid))
        elif isinstance(obj, StakeSlashed) and obj.account == self.agent.did:
            self._make_good(obj)
        elif isinstance(obj, Mint) and obj.account == self.agent.did:
            self._funded.set()
            with self._cond:
                bond = not self._bonded.is_set() and not self._bond_requested
                self._bond_requested = True
            if bond:
                req = self.agent.stake_request(self.bond, _now(), nonce=_now())
                self._pool.submit(self._publish, "ledger", req)

    def _make_good(self, slash: StakeSlashed) -> None:
        """A slash of this peer's bond is made good from its balance (once per slash): a
        peer slashed below the policy's minimum stake would otherwise never be chosen again,
        and under many failures every bond drains. A peer whose balance cannot pay is
        refused by the authority (typed, nothing moves) and stays as it is."""
        key = str(slash.cid)
        with self._cond:
            if key in self._made_good:
                return
            self._made_good.add(key)
            if self._slashes is not None:
                with self._slashes.open("a") as f:
                    f.write(key + "\n")
        log.info("slashed %d (%s): bonding as much again", slash.amount, slash.offence)
        nonce = int.from_bytes(slash.cid.digest[:6], "big")  # one request per slash
        req = self.agent.stake_request(slash.amount, _now(), nonce=nonce)
        self._pool.submit(self._publish, "ledger", req)

    def _on_task_topic(self, obj: Model, _peer: str) -> None:
        if isinstance(obj, TaskIntent):
            with self._cond:
                self._tasks[obj.cid] = obj
                if len(self._tasks) % 256 == 0:  # tasks past their deadline leave memory
                    now = _now()
                    for cid in [c for c, t in self._tasks.items() if t.deadline < now]:
                        del self._tasks[cid]
                parked = self._parked.pop(obj.cid, [])
                self._cond.notify_all()
            for req, attachments, _ in parked:  # requests that came before their task
                self._pool.submit(self._act, req, attachments)
            offer = self.agent.offer(obj, _now())
            if offer is not None:
                self._pool.submit(self._publish, "offers", offer)
        elif isinstance(obj, WorkRequest) and self._mine(obj):
            log.info("received %s request %s", obj.action, obj.cid)
            self._pool.submit(self._act, obj, [])

    def _on_sealed(self, obj: Model, _peer: str) -> None:
        """A request sealed to this peer by the authority, with what it needs attached."""
        if isinstance(obj, SealedMessage) and obj.recipient == self.agent.did:
            if obj.sender != self.authority:
                log.info("ignored a sealed request from %s (not the authority)", obj.sender)
                return
            try:
                objects = open_sealed(obj, self.agent.identity)
            except MeshError as exc:
                log.warning("a sealed request does not open: %s: %s", type(exc).__name__, exc)
                return
            reqs = [o for o in objects if isinstance(o, WorkRequest) and self._mine(o)]
            if len(reqs) == 1:
                log.info("received %s request %s", reqs[0].action, reqs[0].cid)
                self._pool.submit(self._act, reqs[0], objects)

    def _mine(self, req: WorkRequest) -> bool:
        return req.target == self.agent.did and req.authority == self.authority

    def _known_or_parked(self, req: WorkRequest, attachments: list[Model]) -> TaskIntent | None:
        """The task ``req`` is about, or None with the request parked until the task comes
        (then it is done): no thread waits for it. A request can come before its task (a
        peer that restarted between the two, or one handed old messages again when it
        rejoins, for a task long settled); a thread of the two held a minute for each such
        request left the peer deaf to everything else. Parked requests are dropped
        :data:`PARKED_FOR_S` later, the oldest first past :data:`PARKED_MAX`."""
        now = time.monotonic()
        with self._cond:
            task = self._tasks.get(req.task_cid)
            if task is not None:
                return task
            for cid in [c for c, reqs in self._parked.items() if reqs[0][2] < now]:
                del self._parked[cid]  # its task never came: nothing to do
            while len(self._parked) >= PARKED_MAX:
                self._parked.pop(next(iter(self._parked)))
            parked = self._parked.setdefault(req.task_cid, [])
            if len(parked) < 8:  # the same request again and again is parked once or so
                parked.append((req, attachments, now + PARKED_FOR_S))
        log.info("the task of %s request %s is not known yet: parked", req.action, req.cid)
        return None

    def _act(self, req: WorkRequest, attachments: list[Model]) -> None:
        """Do what ``req`` asks, unless this peer is already doing it (asked again)."""
        key = (req.task_cid, req.action, req.receipt_cid)
        with self._cond:
            if key in self._doing:
                return
            self._doing.add(key)
        try:
            self._do(req, attachments)
        finally:
            with self._cond:
                self._doing.discard(key)

    def _do(self, req: WorkRequest, attachments: list[Model]) -> None:
        envelopes = [o for o in attachments if isinstance(o, EncryptedBlob)]
        log.info("asked to %s %s (request %s)", req.action, req.task_cid, req.cid)
        try:
            if req.action in ("execute", "verify"):
                sent = [o for o in attachments if isinstance(o, TaskIntent)]
                if sent and sent[0].cid == req.task_cid:  # asked again after a restart
                    with self._cond:
                        self._tasks.setdefault(sent[0].cid, sent[0])
                task = self._known_or_parked(req, attachments)
                if task is None:
                    return
                fetch = self.transport.fetch_blob
                # bounded: a thread of the two waiting minutes on an unreachable holder
                # would leave the peer deaf (the request is sent again if it matters)
                wasm = Path(fetch(task.wasm_cid, peers=self._holder, timeout=60)).read_bytes()
                data = Path(fetch(task.input_cid, peers=self._holder, timeout=60)).read_bytes()
                role = "worker" if req.action == "execute" else "verifier"
                envelope = envelopes[0].encode() if envelopes else None
                commitment = self.agent.execute(
                    task, wasm, data, _now(), role=role, envelope=envelope
                )
                self._publish("executions", commitment)
                log.info("committed to %s: %s", req.task_cid, commitment.cid)
            elif req.action == "reveal":
                receipt, output = self.agent.reveal(req.task_cid, _now())
                # the output, encrypted to the authority alone; the receipt sealed to it
                sealed_output = self.transport.store.put_encrypted(output, [self.authority])
                msg = seal_objects(
                    self.agent.identity, self.authority, req.task_cid,
                    [receipt, sealed_output], _now(),
                )  # fmt: skip
                self._publish("sealed", msg)
                log.info("revealed %s: %s", req.task_cid, msg.cid)
                self._provide(sealed_output.ciphertext_cid)
            elif req.action == "verdict":
                self._judge(req, attachments, envelopes)
        except Exception:
            log.exception("work request %s for %s failed", req.action, req.task_cid)

    def _judge(
        self, req: WorkRequest, attachments: list[Model], envelopes: list[EncryptedBlob]
    ) -> None:
        receipts = [
            o for o in attachments if isinstance(o, ExecutionReceipt) and o.cid == req.receipt_cid
        ]
        if not receipts:
            log.warning("a verdict request for %s came without its receipt", req.task_cid)
            return
        receipt = receipts[0]
        sealed_mine = None
        if not envelopes:
            verdict = self.agent.verdict(req.task_cid, receipt, _now())
            attached: list[Model] = [verdict]
        else:  # a content validator: the worker's bytes, encrypted to this verifier
            path = self.transport.fetch_blob(envelopes[0].ciphertext_cid, peers=self._holder)
            output = decrypt(Path(path).read_bytes(), envelopes[0], self.agent.identity)
            verdict, mine = self.agent.verdict_with_output(
                req.task_cid, receipt, _now(), output=output
            )
            # the authority judges the two outputs itself: ours goes to it alone
            sealed_mine = self.transport.store.put_encrypted(mine, [self.authority])
            attached = [verdict, sealed_mine]
        msg = seal_objects(self.agent.identity, self.authority, req.task_cid, attached, _now())
        self._publish("sealed", msg)
        if sealed_mine is not None:
            self._provide(sealed_mine.ciphertext_cid)

    def _provide(self, cid: CID) -> None:
        def go() -> None:
            try:
                self.transport.provide(cid)
            except Exception:
                log.exception("could not provide %s", cid)

        self._dht.submit(go)

    def close(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        for sub in self._subs:
            sub.cancel()
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._dht.shutdown(wait=True, cancel_futures=True)


def _worker_main(argv: list[str] | None = None) -> None:
    from meshbench.net.node import Libp2pNode
    from meshbench.store.blobs import BlobStore
    from meshbench.store.keystore import Keystore

    p = argparse.ArgumentParser(prog="python -m meshbench.runtime.p2p worker")
    p.add_argument("role", choices=["worker"])
    p.add_argument("--data-dir", type=Path, required=True)
    p.add_argument("--listen", default="/ip4/127.0.0.1/tcp/0")
    p.add_argument("--bootstrap", action="append", default=[])
    p.add_argument("--authority", required=True, help="did:key of the federation's authority")
    p.add_argument("--federation", required=True, help="did:key of the federation")
    p.add_argument("--behaviour", default="honest", choices=["honest", "wrong", "lazy"])
    p.add_argument("--memory-mb", type=int, default=4096)
    p.add_argument(
        "--executor", action="append", default=[], help="extra executor plug-in, e.g. python"
    )
    args = p.parse_args(argv)
    identity: Identity = Keystore(args.data_dir / "keys").load_or_create("worker")
    # what opens its commitments survives a kill of this process (reveals, verdicts)
    commitments = CommitmentStore(args.data_dir / "commitments")
    store = BlobStore(args.data_dir / "blobs")
    node = Libp2pNode(identity, store, listen=[args.listen], bootstrap=args.bootstrap, mdns=False)
    node.start()
    agent = WorkerAgent(
        identity,
        args.federation,
        HardwareProfile(memory_mb=args.memory_mb),
        behaviour=args.behaviour,
        executors={name: _load_executor(name) for name in args.executor},
        commitments=commitments,
    )
    service = WorkerService(agent, node, authority=args.authority, state_dir=args.data_dir)
    taken = f"{len(commitments)} commitments taken up, {commitments.ignored} ignored"
    print(f"worker {identity.did} listening on {' '.join(node.addrs)} ({taken})", flush=True)
    stop = threading.Event()
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        service.close()
        node.close()


def _load_executor(name: str) -> Any:
    from meshbench.exec.plugins import load_executor

    return load_executor(name)


if __name__ == "__main__":
    import sys

    # MESHBENCH_LOG_LEVEL=INFO: what the peer is asked and answers (the crash suite reads it)
    level = os.environ.get("MESHBENCH_LOG_LEVEL", "WARNING").upper()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("meshbench").setLevel(level)
    _worker_main(sys.argv[1:])
