"""What a ``mesh-cli start`` node does in the protocol: its role.

* ``authority``: the federation's ledger authority and a publisher. It runs a
  :class:`~meshbench.runtime.node.AuthorityNode` over the node's libp2p transport
  (:class:`~meshbench.runtime.p2p.P2PBackend`), funds new workers from the faucet, and
  answers ``publish-task`` and ``task-status``.
* ``worker``: a :class:`~meshbench.runtime.p2p.WorkerService` around a
  :class:`~meshbench.runtime.agent.WorkerAgent` with this node's key; it offers and works
  automatically, and ``offer-execution`` makes a manual offer at a chosen cost.
* ``peer`` (no role): gossip and content only.

Each role adds control-socket handlers to the node (see :mod:`meshbench.cli.peer_service`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Final

from meshbench.core import sampling
from meshbench.core.encoding import parse_cid
from meshbench.core.errors import ProtocolError
from meshbench.core.outcome import task_outcome
from meshbench.core.types import CapabilityScope, ComputeOffer, HardwareProfile, TaskIntent
from meshbench.runtime.clock import wall_clock_ms as _now

__all__ = ["TERMINAL_STATES", "AuthorityRole", "WorkerRole"]

Handler = Callable[[dict[str, Any]], Any]

#: States a task never leaves.
TERMINAL_STATES: Final = frozenset({"Settled"})

#: The longest one ``task-status`` request waits for a change (the client asks again).
MAX_WAIT_S: Final = 30.0


class AuthorityRole:
    """Ledger authority + publisher on a running libp2p node."""

    def __init__(self, service: Any, *, policy: Any = None, fund_workers: bool = True) -> None:
        from meshbench.runtime.mesh import Mesh

        self.service = service
        self.mesh: Mesh = Mesh.over_transport(
            service.node, data_dir=service.data_dir, policy=policy, fund_workers=fund_workers
        )
        # Every event the node accepts may move a task: waiting status requests wake on it.
        self._changed = threading.Condition()
        self._generation = 0
        self.mesh.node.subscribe(self._on_event)

    def _on_event(self, event: Any) -> None:
        # driver thread: only wake the waiters, never call back into the node from here
        with self._changed:
            self._generation += 1
            self._changed.notify_all()

    def handlers(self) -> dict[str, Handler]:
        return {
            "publish-task": self._publish,
            "task-status": self._task_status,
            "rejections": lambda args: self.mesh.rejections().to_dicts(),
        }

    def _publish(self, args: dict[str, Any]) -> dict[str, Any]:
        store = self.mesh.node.blobs
        wasm = parse_cid(str(args["wasm_cid"]), codec="raw")
        data = parse_cid(str(args["input_cid"]), codec="raw")
        for cid in (wasm, data):
            if not store.has(cid):
                raise ProtocolError(
                    f"{cid} is not in this node's store: 'mesh-cli provide FILE' it first"
                )
        scope = CapabilityScope(cpu_cycles=int(args.get("cpu_cycles") or 1_000_000))
        asked = int(args.get("verifiers") or 3)
        full = bool(args.get("full_verification"))
        handle = self.mesh.publish(
            wasm, data, fee=int(args["fee"]), verifiers=asked, scope=scope, full_verification=full
        )
        policy = self.mesh.policy
        given = policy.verification_quorum.verifiers_for(asked)
        warnings = []
        if sampling.adaptive(policy, handle.task, private=False):
            given = policy.audit.auditors
            warnings.append(
                f"verified by sampled audits (the policy's audit section): {given} auditor(s) "
                "when drawn; --full-verification asks for the full quorum"
            )
        elif given != asked:
            bound = "minimum" if given > asked else "maximum"
            warnings.append(f"{asked} verifiers asked, {given} drawn: policy {bound}_verifiers")
        workers = self.mesh.node.backend.worker_count()
        if given + 1 > workers:
            warnings.append(
                f"it needs {given + 1} workers (1 executes, {given} verify) and "
                f"{workers} have joined: it waits for more"
            )
        return {
            "task_cid": str(handle.cid),
            "state": handle.state,
            "verifiers": given,
            "warnings": warnings,
        }

    def _task_status(self, args: dict[str, Any]) -> dict[str, Any]:
        """The task's state; with ``since`` (a state), wait up to ``wait_s`` s (at most
        :data:`MAX_WAIT_S`) until it is another state or the task is done."""
        cid = parse_cid(str(args["task_cid"]), codec="dag-cbor")
        since = args.get("since")
        if since is None:
            return self._snapshot(cid)
        deadline = time.monotonic() + min(float(args.get("wait_s", MAX_WAIT_S)), MAX_WAIT_S)
        while True:
            with self._changed:
                generation = self._generation
            out = self._snapshot(cid)  # an unknown task raises ProtocolError
            left = deadline - time.monotonic()
            if out["state"] != since or out["done"] or left <= 0:
                return out
            with self._changed:
                # a change between the snapshot and here bumped the generation: no wait
                self._changed.wait_for(lambda g=generation: self._generation != g, timeout=left)

    def _snapshot(self, cid: Any) -> dict[str, Any]:
        rec = self.mesh.node.records.get(cid)
        state = self.mesh.node.state_of(cid)
        done = state in TERMINAL_STATES or (rec is not None and rec.done.is_set())
        out: dict[str, Any] = {"task_cid": str(cid), "state": state, "done": done}
        why = None if done else self.mesh.node.why(cid)
        if why is not None:
            out["waiting"] = why  # why it cannot proceed now
        if rec is not None:
            exit_code = None if rec.receipt is None else rec.receipt.exit_code
            out["outcome"], error = task_outcome(rec.outcome, exit_code, rec.output)
            if error is not None:
                out["error"] = error
            out["output_cid"] = None if rec.receipt is None else str(rec.receipt.output_cid)
            out["approvals"] = sum(v.approved for v in rec.verdicts)
            out["verdicts"] = len(rec.verdicts)
        return out

    def status(self) -> dict[str, Any]:
        node = self.mesh.node
        return {
            "role": "authority",
            "federation": node.federation,
            "workers": node.backend.worker_count(),
            "bonded_workers": self.mesh.bonded_workers(),
            "tasks": node.tasks_published,
        }

    def close(self) -> None:
        self.mesh.close()


class WorkerRole:
    """A worker peer: automatic offers and work, plus manual offers."""

    def __init__(
        self, service: Any, *, authority: str, federation: str, memory_mb: int = 4096
    ) -> None:
        from meshbench.runtime.agent import WorkerAgent
        from meshbench.runtime.p2p import WorkerService

        self.service = service
        self.agent = WorkerAgent(
            service.node.identity, federation, HardwareProfile(memory_mb=memory_mb)
        )
        self.worker = WorkerService(
            self.agent, service.node, authority=authority, state_dir=service.data_dir
        )

    def handlers(self) -> dict[str, Handler]:
        return {"offer-execution": self._offer}

    def _offer(self, args: dict[str, Any]) -> dict[str, Any]:
        cid = parse_cid(str(args["task_cid"]), codec="dag-cbor")
        task: TaskIntent | None = self.worker.task(cid)
        if task is None:
            raise ProtocolError(f"this node has not seen task {cid} on the mesh")
        cost = int(args["cost"])
        if not 0 <= cost <= task.fee:
            raise ProtocolError(f"cost {cost} must be between 0 and the task's fee {task.fee}")
        offer = ComputeOffer(
            task_cid=task.cid,
            worker=self.agent.did,
            federation=self.agent.federation,
            cost=cost,
            capacity=self.agent.capacity,
            eta_ms=self.agent.cost.eta_ms(task),
            hardware=self.agent.hardware,
            created_at=_now(),
            parents=(task.cid,),
        ).sign(self.agent.identity)
        self.service.node.publish("offers", offer)
        return {"offer_cid": str(offer.cid), "cost": cost}

    def status(self) -> dict[str, Any]:
        return {"role": "worker", "did": self.agent.did, "federation": self.agent.federation}

    def close(self) -> None:
        self.worker.close()
