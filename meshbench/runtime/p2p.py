"""The mesh over libp2p: the authority node's backend and the workers' service.

Over a peer-to-peer mesh nobody calls a worker directly: everything is a signed object on a
gossip topic, and blobs travel by CID through the content protocol.

* :class:`P2PBackend` is the :class:`~meshbench.runtime.backends.WorkerBackend` of a
  ledger-authority :class:`~meshbench.runtime.node.MeshNode`: it gossips the task (and
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
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from meshbench.core.encoding import CID
from meshbench.core.events import Mint, StakeBonded, StakeRequest, WorkRequest
from meshbench.core.identity import Identity
from meshbench.core.model import Model
from meshbench.core.types import (
    ComputeOffer,
    ExecutionReceipt,
    HardwareProfile,
    PeerInfo,
    ResultCommitment,
    TaskIntent,
    VerificationReceipt,
)
from meshbench.runtime.agent import WorkerAgent
from meshbench.runtime.backends import Blobs, Deliver
from meshbench.runtime.clock import wall_clock_ms as _now

__all__ = ["P2PBackend", "WorkerService"]

log = logging.getLogger("meshbench.p2p")
#: Ledger events the authority gossips so that peers learn their funding and assignments.
GOSSIPED = (Mint, StakeBonded)


class P2PBackend:
    """Reach workers through a :class:`~meshbench.runtime.transport.Transport`."""

    def __init__(self, transport: Any, authority: Identity) -> None:
        self.transport = transport
        self.authority = authority
        self._lock = threading.Lock()
        self._workers: dict[str, bytes] = {}
        self._offers: dict[CID, Deliver] = {}
        self._commits: dict[tuple[CID, str], Deliver] = {}
        self._reveals: dict[CID, Deliver] = {}
        self._verdicts: dict[tuple[CID, str], Deliver] = {}
        self._pool = cf.ThreadPoolExecutor(max_workers=4, thread_name_prefix="mesh-p2p")
        #: Called with the bytes of objects nobody asked for (PeerInfo, StakeRequest).
        self.unsolicited: Callable[[bytes], None] | None = None
        self._subs = [
            transport.subscribe("offers", self._on_offer),
            transport.subscribe("executions", self._on_execution),
            transport.subscribe("verifications", self._on_verification),
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
            self._offers[task.cid] = deliver

        def go() -> None:
            self.transport.provide(task.wasm_cid)
            self.transport.provide(task.input_cid)
            self.transport.publish("tasks", task)

        self._pool.submit(self._guard, go)

    def execute(
        self, did: str, task: TaskIntent, blobs: Blobs, role: str, deliver: Deliver
    ) -> None:
        if blobs[2] is not None:
            raise NotImplementedError(
                "private task inputs over libp2p: the sealed key envelope is not gossiped yet"
            )
        with self._lock:
            self._commits[(task.cid, did)] = deliver
        self._request(task.cid, did, "execute" if role == "worker" else "verify")

    def reveal(self, did: str, task_cid: CID, deliver: Deliver) -> None:
        with self._lock:
            self._reveals[task_cid] = deliver
        self._request(task_cid, did, "reveal")

    def verdict(
        self,
        did: str,
        task_cid: CID,
        receipt: ExecutionReceipt,
        deliver: Deliver,
        *,
        output: bytes | None = None,
    ) -> None:
        # ``output`` (for tasks judged by a content validator, e.g. GPU tolerance) does not
        # travel over libp2p yet: such a verifier gets no bytes and rejects, saying why.
        with self._lock:
            self._verdicts[(task_cid, did)] = deliver
        self._request(task_cid, did, "verdict", receipt.cid)

    def _request(self, task_cid: CID, did: str, action: str, receipt: CID | None = None) -> None:
        req = WorkRequest(
            authority=self.authority.did,
            task_cid=task_cid,
            target=did,
            action=action,  # type: ignore[arg-type]
            receipt_cid=receipt,
            timestamp=_now(),
        ).sign(self.authority)
        self._pool.submit(self._guard, lambda: self.transport.publish("tasks", req))

    def gossip(self, event: Model) -> None:
        """A node listener: share the ledger events peers act on."""
        if isinstance(event, GOSSIPED):
            self._pool.submit(self._guard, lambda: self.transport.publish("ledger", event))

    def close(self) -> None:
        for sub in self._subs:
            sub.cancel()
        self._pool.shutdown(wait=True, cancel_futures=True)

    # --- what the mesh says ---------------------------------------------------------------
    def _on_offer(self, obj: Model, _peer: str) -> None:
        if isinstance(obj, ComputeOffer):
            with self._lock:
                deliver = self._offers.get(obj.task_cid)
            if deliver is not None:
                deliver(obj.encode())

    def _on_execution(self, obj: Model, _peer: str) -> None:
        if isinstance(obj, ResultCommitment):
            with self._lock:
                deliver = self._commits.pop((obj.task_cid, obj.worker), None)
            if deliver is not None:
                deliver(obj.encode())
        elif isinstance(obj, ExecutionReceipt):
            with self._lock:
                deliver = self._reveals.pop(obj.task_cid, None)
            if deliver is not None:
                self._pool.submit(self._fetch_output, obj, deliver)

    def _fetch_output(self, receipt: ExecutionReceipt, deliver: Deliver) -> None:
        try:
            path = self.transport.fetch_blob(receipt.output_cid, timeout=120)
            deliver((receipt.encode(), Path(path).read_bytes()))
        except Exception as exc:  # delivered: the node records it, the protocol times out
            deliver(exc)

    def _on_verification(self, obj: Model, _peer: str) -> None:
        if isinstance(obj, VerificationReceipt):
            with self._lock:
                deliver = self._verdicts.pop((obj.task_cid, obj.verifier), None)
            if deliver is not None:
                deliver(obj.encode())

    def _on_peer(self, obj: Model, _peer: str) -> None:
        if isinstance(obj, PeerInfo) and "worker" in obj.roles:
            with self._lock:
                self._workers[obj.did] = obj.encode()
            if self.unsolicited is not None:
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
    """A worker peer: offers, executes, verifies, reveals, judges; bonds once funded."""

    def __init__(
        self, agent: WorkerAgent, transport: Any, *, authority: str, bond: int = 200
    ) -> None:
        self.agent = agent
        self.transport = transport
        self.authority = authority
        self.bond = bond
        self._tasks: dict[CID, TaskIntent] = {}
        self._receipts: dict[CID, ExecutionReceipt] = {}
        self._cond = threading.Condition()
        self._funded = threading.Event()
        self._stop = threading.Event()
        self._pool = cf.ThreadPoolExecutor(max_workers=2, thread_name_prefix="mesh-worker")
        self._subs = [
            transport.subscribe("tasks", self._on_task_topic),
            transport.subscribe("executions", self._on_execution),
            transport.subscribe("ledger", self._on_ledger),
        ]
        self._announcer = threading.Thread(target=self._announce, name="mesh-announce", daemon=True)
        self._announcer.start()

    def _announce(self) -> None:
        """Publish this peer's PeerInfo until the authority has funded it (bounded)."""
        for _ in range(120):
            self._publish("peers", self.agent.peer_info(_now()))
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
        mine = isinstance(obj, Mint) and obj.account == self.agent.did
        if mine and obj.authority == self.authority and not self._funded.is_set():
            self._funded.set()
            req = self.agent.stake_request(self.bond, _now(), nonce=_now())
            self._pool.submit(self._publish, "ledger", req)

    def _on_task_topic(self, obj: Model, _peer: str) -> None:
        if isinstance(obj, TaskIntent):
            with self._cond:
                self._tasks[obj.cid] = obj
                self._cond.notify_all()
            offer = self.agent.offer(obj, _now())
            if offer is not None:
                self._pool.submit(self._publish, "offers", offer)
        elif (
            isinstance(obj, WorkRequest)
            and obj.target == self.agent.did
            and obj.authority == self.authority
        ):
            self._pool.submit(self._act, obj)

    def _on_execution(self, obj: Model, _peer: str) -> None:
        if isinstance(obj, ExecutionReceipt):
            with self._cond:
                self._receipts[obj.cid] = obj
                self._cond.notify_all()

    def _wait_for(self, table: dict[CID, Any], cid: CID, timeout: float = 60) -> Any:
        with self._cond:
            self._cond.wait_for(lambda: cid in table or self._stop.is_set(), timeout)
            return table.get(cid)

    def _act(self, req: WorkRequest) -> None:
        try:
            if req.action in ("execute", "verify"):
                task = self._wait_for(self._tasks, req.task_cid)
                if task is None:
                    return
                wasm = Path(self.transport.fetch_blob(task.wasm_cid)).read_bytes()
                data = Path(self.transport.fetch_blob(task.input_cid)).read_bytes()
                role = "worker" if req.action == "execute" else "verifier"
                commitment = self.agent.execute(task, wasm, data, _now(), role=role)
                self._publish("executions", commitment)
            elif req.action == "reveal":
                receipt, output = self.agent.reveal(req.task_cid, _now())
                cid = self.transport.store.put(output)
                self.transport.provide(cid)
                self._publish("executions", receipt)
            elif req.action == "verdict" and req.receipt_cid is not None:
                receipt = self._wait_for(self._receipts, req.receipt_cid)
                if receipt is not None:
                    verdict = self.agent.verdict(req.task_cid, receipt, _now())
                    self._publish("verifications", verdict)
        except Exception:
            log.exception("work request %s for %s failed", req.action, req.task_cid)

    def close(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        for sub in self._subs:
            sub.cancel()
        self._pool.shutdown(wait=True, cancel_futures=True)


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
    store = BlobStore(args.data_dir / "blobs")
    node = Libp2pNode(identity, store, listen=[args.listen], bootstrap=args.bootstrap, mdns=False)
    node.start()
    agent = WorkerAgent(
        identity,
        args.federation,
        HardwareProfile(memory_mb=args.memory_mb),
        behaviour=args.behaviour,
        executors={name: _load_executor(name) for name in args.executor},
    )
    service = WorkerService(agent, node, authority=args.authority)
    print(f"worker {identity.did} listening on {' '.join(node.addrs)}", flush=True)
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

    logging.basicConfig(level=logging.WARNING)
    _worker_main(sys.argv[1:])
