"""What a ``mesh-cli start`` node does in the protocol: its role.

* ``authority``: the federation's ledger authority and a publisher. It runs a
  :class:`~meshbench.runtime.node.MeshNode` over the node's libp2p transport
  (:class:`~meshbench.runtime.p2p.P2PBackend`), funds new workers from the faucet, and
  answers ``publish-task`` and ``task-status``.
* ``worker``: a :class:`~meshbench.runtime.p2p.WorkerService` around a
  :class:`~meshbench.runtime.agent.WorkerAgent` with this node's key; it offers and works
  automatically, and ``offer-execution`` makes a manual offer at a chosen cost.
* ``peer`` (no role): gossip and content only.

Each role adds control-socket handlers to the node (see :mod:`meshbench.cli.mesh_node`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from meshbench.core.encoding import parse_cid
from meshbench.core.errors import ProtocolError
from meshbench.core.types import CapabilityScope, ComputeOffer, HardwareProfile, TaskIntent
from meshbench.runtime.clock import wall_clock_ms as _now

__all__ = ["AuthorityRole", "WorkerRole"]

Handler = Callable[[dict[str, Any]], Any]


class AuthorityRole:
    """Ledger authority + publisher on a running libp2p node."""

    def __init__(self, service: Any, *, policy: Any = None, fund_workers: bool = True) -> None:
        from meshbench.runtime.mesh import Mesh, _start_over_transport

        self.service = service
        self.mesh: Mesh = _start_over_transport(
            service.data_dir, service.node, policy=policy, fund_workers=fund_workers
        )

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
        handle = self.mesh.publish(
            wasm,
            data,
            fee=int(args["fee"]),
            verifiers=int(args.get("verifiers") or 3),
            scope=scope,
        )
        return {"task_cid": str(handle.cid), "state": handle.state}

    def _task_status(self, args: dict[str, Any]) -> dict[str, Any]:
        cid = parse_cid(str(args["task_cid"]), codec="dag-cbor")
        rec = self.mesh.node.records.get(cid)
        state = self.mesh.node.state_of(cid)
        out: dict[str, Any] = {"task_cid": str(cid), "state": state}
        if rec is not None:
            out["outcome"] = rec.outcome
            out["output_cid"] = None if rec.receipt is None else str(rec.receipt.output_cid)
            out["approvals"] = sum(v.approved for v in rec.verdicts)
            out["verdicts"] = len(rec.verdicts)
        return out

    def status(self) -> dict[str, Any]:
        node = self.mesh.node
        stakes = node.books_tables().get("stakes", {})
        min_stake = self.mesh.policy.bonding_requirements.min_stake
        return {
            "role": "authority",
            "federation": node.federation,
            "workers": node.backend.worker_count(),
            "bonded_workers": sum(1 for s in stakes.values() if s["bonded"] >= min_stake),
            "tasks": len(node.records),
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
