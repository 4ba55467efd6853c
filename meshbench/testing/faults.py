"""Faulty participants for fault tests, notebooks and extensions.

Each is a :class:`~meshbench.runtime.agent.WorkerAgent` with its own key that misbehaves in
one way the protocol must absorb: it is slow, silent, talks garbage or runs on a skewed
clock. :func:`die_once_at` arms the agents of a Dask cluster's workers so that the first one
to reach a chosen point of the protocol SIGKILLs its own process there (a worker lost
mid-execution or mid-verification, at a moment the test chooses, not a random one). They are
honest about being test participants: nothing here is used by the runtime.
"""

from __future__ import annotations

import hashlib
import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from meshbench.core.encoding import CID
from meshbench.core.errors import NetworkError
from meshbench.core.identity import Identity
from meshbench.core.types import ComputeOffer, HardwareProfile, TaskIntent
from meshbench.runtime.agent import WorkerAgent

__all__ = [
    "GarbageAgent",
    "SilentVerifier",
    "SkewedAgent",
    "SlowOnce",
    "agent_factory",
    "die_once_at",
    "died",
]

HARDWARE = HardwareProfile(memory_mb=4096)


class SlowOnce:
    """A gate shared by agents: the first execution as worker blocks until :meth:`release`
    (bounded by ``limit_s``), later ones run at once; ``entered`` is set when it blocks."""

    def __init__(self, limit_s: float = 60) -> None:
        self.entered = threading.Event()
        #: set once the held execution has returned (its answer is then on its way)
        self.finished = threading.Event()
        self._released = threading.Event()
        self._lock = threading.Lock()
        self._used = False
        self.limit_s = limit_s
        self.did: str | None = None

    def hold(self, did: str) -> bool:
        """Block the first caller until released (True); later callers pass (False)."""
        with self._lock:
            if self._used:
                return False
            self._used = True
            self.did = did
        self.entered.set()
        self._released.wait(self.limit_s)
        return True

    def release(self) -> None:
        self._released.set()


class _Slow(WorkerAgent):
    def __init__(self, *args: Any, gate: SlowOnce, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.gate = gate

    def execute(self, task: TaskIntent, wasm: bytes, data: bytes, now_ms: int, **kw: Any) -> Any:
        if kw.get("role") != "worker" or not self.gate.hold(self.did):
            return super().execute(task, wasm, data, now_ms, **kw)
        try:  # held past its ETA and the execution timeout; it signs with its old time
            return super().execute(task, wasm, data, now_ms, **kw)
        finally:
            self.gate.finished.set()


class SilentVerifier(WorkerAgent):
    """Bonded and drawn as a verifier, it never offers to work and never commits."""

    def offer(self, task: TaskIntent, now_ms: int) -> ComputeOffer | None:
        return None

    def execute(self, task: TaskIntent, wasm: bytes, data: bytes, now_ms: int, **kw: Any) -> Any:
        raise NetworkError(f"{self.did} does not answer (a silent verifier)")


class _Garbage:
    """What a peer that talks garbage sends instead of a signed object."""

    def __init__(self, seed: bytes) -> None:
        self._bytes = b"\xa2\x61x" + hashlib.sha256(seed).digest()

    def encode(self) -> bytes:
        return self._bytes


class GarbageAgent(WorkerAgent):
    """Answers every request (offers, commitments, reveals, verdicts) with garbage bytes."""

    def offer(self, task: TaskIntent, now_ms: int) -> Any:
        return _Garbage(b"offer" + bytes(task.cid))

    def execute(self, task: TaskIntent, wasm: bytes, data: bytes, now_ms: int, **kw: Any) -> Any:
        return _Garbage(b"commit" + bytes(task.cid))

    def reveal(self, task_cid: CID, now_ms: int) -> Any:
        return _Garbage(b"reveal" + bytes(task_cid)), b"junk"

    def verdict(self, task_cid: CID, receipt: Any, now_ms: int, **kw: Any) -> Any:
        return _Garbage(b"verdict" + bytes(task_cid))


class SkewedAgent(WorkerAgent):
    """Signs with its own clock, ``skew_ms`` ahead of the authority's (negative: behind)."""

    def __init__(self, *args: Any, skew_ms: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.skew_ms = skew_ms

    def offer(self, task: TaskIntent, now_ms: int) -> ComputeOffer | None:
        return super().offer(task, now_ms + self.skew_ms)

    def execute(self, task: TaskIntent, wasm: bytes, data: bytes, now_ms: int, **kw: Any) -> Any:
        return super().execute(task, wasm, data, now_ms + self.skew_ms, **kw)

    def reveal(self, task_cid: CID, now_ms: int) -> Any:
        return super().reveal(task_cid, now_ms + self.skew_ms)

    def verdict(self, task_cid: CID, receipt: Any, now_ms: int, **kw: Any) -> Any:
        return super().verdict(task_cid, receipt, now_ms + self.skew_ms, **kw)


def agent_factory(
    faults: dict[int, Callable[..., WorkerAgent] | str], *, gate: SlowOnce | None = None
) -> Callable[[Identity, str, int], WorkerAgent]:
    """An ``agent_factory`` for :meth:`Mesh.in_process`: worker ``i`` is ``faults[i]`` (a
    class taking ``(identity, federation, hardware)``, or ``"slow"`` for one held by
    ``gate``); the others are honest."""

    def make(identity: Identity, federation: str, i: int) -> WorkerAgent:
        fault = faults.get(i)
        if fault is None:
            return WorkerAgent(identity, federation, HARDWARE)
        if fault == "slow":
            assert gate is not None, "a slow agent needs the gate that holds it"
            return _Slow(identity, federation, HARDWARE, gate=gate)
        assert callable(fault)
        return fault(identity, federation, HARDWARE)

    return make


def all_slow(gate: SlowOnce) -> Callable[[Identity, str, int], WorkerAgent]:
    """Every worker shares ``gate``: whichever is assigned first is the slow one."""

    def make(identity: Identity, federation: str, i: int) -> WorkerAgent:
        return _Slow(identity, federation, HARDWARE, gate=gate)

    return make


#: Where :func:`die_once_at` kills a worker: ``execute`` (assigned as the task's worker, before
#: it commits), ``reveal`` (the worker that committed, asked to reveal, before it answers) or
#: ``verdict`` (a verifier that committed, asked for its verdict, before it answers).
DeathPoint = Literal["execute", "reveal", "verdict"]


def die_once_at(point: DeathPoint, marker: str, dask_worker: Any = None) -> str:
    """Arm this Dask worker's agent (run it with ``client.run``): the first agent of the
    cluster to reach ``point`` writes its did to ``marker`` and SIGKILLs its own process.

    ``marker`` is created exclusively, so exactly one worker dies however many are armed;
    the nanny restarts it with the same key, unarmed and without its commit-reveal state
    (a lost process). Returns this worker's did.
    """
    agent = dask_worker.plugins["meshbench"].agent
    execute, reveal = agent.execute, agent.reveal
    verdict, verdict_with_output = agent.verdict, agent.verdict_with_output

    def die_here(at: DeathPoint) -> None:
        if at != point:
            return
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return  # another worker died already: this one stays honest
        os.write(fd, agent.did.encode())
        os.close(fd)
        os.kill(os.getpid(), signal.SIGKILL)

    def armed_execute(task: TaskIntent, wasm: bytes, data: bytes, now_ms: int, **kw: Any) -> Any:
        if kw.get("role") == "worker":
            die_here("execute")
        return execute(task, wasm, data, now_ms, **kw)

    def armed_reveal(task_cid: CID, now_ms: int) -> Any:
        die_here("reveal")
        return reveal(task_cid, now_ms)

    def armed_verdict(task_cid: CID, receipt: Any, now_ms: int, **kw: Any) -> Any:
        die_here("verdict")
        return verdict(task_cid, receipt, now_ms, **kw)

    def armed_verdict_with_output(task_cid: CID, receipt: Any, now_ms: int, **kw: Any) -> Any:
        die_here("verdict")
        return verdict_with_output(task_cid, receipt, now_ms, **kw)

    agent.execute, agent.reveal = armed_execute, armed_reveal
    agent.verdict, agent.verdict_with_output = armed_verdict, armed_verdict_with_output
    return agent.did


def died(marker: str | Path) -> str | None:
    """The did of the worker :func:`die_once_at` killed, or None while none has died."""
    path = Path(marker)
    return path.read_text() or None if path.exists() else None
