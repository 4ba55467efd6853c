"""Where the workers live: in this process (threads) or on a Dask cluster.

A backend carries the node's requests to the :class:`~meshbench.runtime.agent.WorkerAgent`\\ s
and delivers their signed answers back as **bytes**, which the node decodes and checks
(CID, schema, signature) like anything else that comes from outside. Answers arrive
asynchronously through ``deliver(result_or_exception)``, which must be thread-safe.
"""

from __future__ import annotations

import concurrent.futures as cf
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from meshbench.core.encoding import CID
from meshbench.core.types import ExecutionReceipt, TaskIntent
from meshbench.runtime.agent import WorkerAgent
from meshbench.runtime.clock import wall_clock_ms as _now

__all__ = ["Blobs", "Deliver", "InProcessBackend", "WorkerBackend", "run_and_deliver"]

Deliver = Callable[[Any], None]
#: A task's module, input and (for a private task) its sealed key envelope, as bytes.
Blobs = tuple[bytes, bytes, bytes | None]


class WorkerBackend(Protocol):
    """How a node reaches its workers."""

    def describe(self, now_ms: int) -> list[bytes]:
        """Every worker's signed PeerInfo."""
        ...

    def stake_requests(self, amount: int, now_ms: int) -> list[bytes]:
        """Every worker's signed request to bond ``amount``."""
        ...

    def worker_count(self) -> int: ...

    def request_offers(self, task: TaskIntent, blobs: Blobs, deliver: Deliver) -> None:
        """Ask every worker for an offer; each answer (bytes or None) is delivered."""
        ...

    def execute(
        self, did: str, task: TaskIntent, blobs: Blobs, role: str, deliver: Deliver
    ) -> None:
        """Have ``did`` run ``task`` as worker or verifier; deliver its commitment bytes."""
        ...

    def reveal(self, did: str, task_cid: CID, deliver: Deliver) -> None:
        """Deliver ``(receipt bytes, output bytes)`` from the worker ``did``."""
        ...

    def verdict(
        self,
        did: str,
        task_cid: CID,
        receipt: ExecutionReceipt,
        deliver: Deliver,
        *,
        output: bytes | None = None,
    ) -> None:
        """Deliver the verification receipt bytes of verifier ``did``; ``output`` (the worker's
        revealed bytes) is passed only for tasks judged by a content validator, and then the
        answer is ``(receipt bytes, the verifier's own output)`` (:func:`verdict_answer`)."""
        ...

    def close(self) -> None: ...


def verdict_answer(
    agent: WorkerAgent,
    task_cid: CID,
    receipt: ExecutionReceipt,
    now_ms: int,
    output: bytes | None,
) -> bytes | tuple[bytes, bytes]:
    """What a verifier answers to a verdict request: the receipt's bytes, and under a
    content validator (the worker's ``output`` came along) also its own output, which the
    authority judges against the worker's (a verdict is evidence there, not a vote)."""
    if output is None:
        return agent.verdict(task_cid, receipt, now_ms).encode()
    verdict, mine = agent.verdict_with_output(task_cid, receipt, now_ms, output=output)
    return verdict.encode(), mine


def run_and_deliver(pool: cf.Executor, deliver: Deliver, fn: Callable[[], Any]) -> None:
    """Run ``fn`` on ``pool`` and deliver its result, or the exception it raised."""

    def run() -> None:
        try:
            deliver(fn())
        except Exception as exc:  # delivered to the node, which decides
            deliver(exc)

    pool.submit(run)


class InProcessBackend:
    """Workers as agents in this process; executions run on a thread pool."""

    def __init__(
        self,
        agents: Sequence[WorkerAgent],
        *,
        threads: int = 2,
        clock: Callable[[], int] = _now,
    ) -> None:
        self.agents = {a.did: a for a in agents}
        self.clock = clock  # the node's clock: the agents sign with the node's time
        self._pool = cf.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="mesh-worker")

    def describe(self, now_ms: int) -> list[bytes]:
        return [a.peer_info(now_ms).encode() for a in self.agents.values()]

    def stake_requests(self, amount: int, now_ms: int) -> list[bytes]:
        return [a.stake_request(amount, now_ms).encode() for a in self.agents.values()]

    def worker_count(self) -> int:
        return len(self.agents)

    def _spawn(self, deliver: Deliver, fn: Callable[[], Any]) -> None:
        def run() -> None:
            try:
                deliver(fn())
            except Exception as exc:
                deliver(exc)

        self._pool.submit(run)

    def request_offers(self, task: TaskIntent, blobs: Blobs, deliver: Deliver) -> None:
        for agent in self.agents.values():
            offer = agent.offer(task, self.clock())
            deliver(None if offer is None else offer.encode())

    def execute(
        self, did: str, task: TaskIntent, blobs: Blobs, role: str, deliver: Deliver
    ) -> None:
        agent = self.agents[did]
        wasm, data, envelope = blobs
        now = self.clock
        self._spawn(
            deliver,
            lambda: agent.execute(task, wasm, data, now(), role=role, envelope=envelope).encode(),
        )

    def reveal(self, did: str, task_cid: CID, deliver: Deliver) -> None:
        agent = self.agents[did]

        def run() -> tuple[bytes, bytes]:
            receipt, output = agent.reveal(task_cid, self.clock())
            return receipt.encode(), output

        self._spawn(deliver, run)

    def verdict(
        self,
        did: str,
        task_cid: CID,
        receipt: ExecutionReceipt,
        deliver: Deliver,
        *,
        output: bytes | None = None,
    ) -> None:
        agent = self.agents[did]
        self._spawn(deliver, lambda: verdict_answer(agent, task_cid, receipt, self.clock(), output))

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
