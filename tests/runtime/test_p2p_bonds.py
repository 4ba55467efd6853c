"""Over libp2p a worker peer makes good a slash of its bond, once per slash.

The libp2p crash suite found that bonds drain: a peer slashed below the policy's minimum
stake was never chosen again (it learnt neither its slashes nor its balance: only mints and
bonds were gossiped), 2 of 4 peers were bonded after 100 kills. The authority now gossips
its slashes, and a peer bonds as much again from its balance, once per slash however often
it hears of it (gossip, a sync after a restart: the slashes it made good are kept on disk).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from meshbench.core.events import StakeRequest, StakeSlashed
from meshbench.core.types import HardwareProfile
from meshbench.runtime.agent import WorkerAgent
from meshbench.runtime.clock import wall_clock_ms
from meshbench.runtime.p2p import WorkerService
from meshbench.testing.factories import make_identity

AUTHORITY, FEDERATION, WORKER = make_identity(1), make_identity(0), make_identity(3)


class _Cancel:
    def cancel(self) -> None:
        pass


class _Mesh:
    """What a WorkerService is handed by the network, and what it publishes."""

    def __init__(self) -> None:
        self.addrs: list[str] = []
        self.handlers: dict[str, Any] = {}
        self.sent: list[Any] = []
        self.cond = threading.Condition()

    def subscribe(self, topic: str, handler: Any) -> _Cancel:
        self.handlers[topic] = handler
        return _Cancel()

    def publish(self, topic: str, obj: Any) -> bool:
        with self.cond:
            self.sent.append(obj)
            self.cond.notify_all()
        return True

    def stake_requests(self, count: int) -> list[StakeRequest]:
        with self.cond:
            self.cond.wait_for(lambda: len(self._requests()) >= count, 10)
            return self._requests()

    def _requests(self) -> list[StakeRequest]:
        return [o for o in self.sent if isinstance(o, StakeRequest)]


def _slash(amount: int, *, account: str = WORKER.did, by: Any = AUTHORITY) -> StakeSlashed:
    return StakeSlashed(
        authority=by.did, account=account, recipient=FEDERATION.did, amount=amount,
        offence="no_show", timestamp=wall_clock_ms(),
    ).sign(by)  # fmt: skip


def _service(mesh: _Mesh, state_dir: Path) -> WorkerService:
    agent = WorkerAgent(WORKER, FEDERATION.did, HardwareProfile(memory_mb=4096))
    return WorkerService(agent, mesh, authority=AUTHORITY.did, state_dir=state_dir)


def test_a_slashed_peer_bonds_as_much_again_once_per_slash_even_after_a_restart(
    tmp_path: Path,
) -> None:
    mesh = _Mesh()
    service = _service(mesh, tmp_path)
    first, second = _slash(20), _slash(35)
    try:
        outsider = make_identity(5)
        for obj in (
            first,
            first,  # heard twice: gossip and a sync
            _slash(50, account=make_identity(4).did),  # another peer's slash
            _slash(50, by=outsider),  # a "slash" by somebody who is not the authority
        ):
            mesh.handlers["ledger"](obj, "peer")
        (req,) = mesh.stake_requests(1)
        assert (req.account, req.action, req.amount) == (WORKER.did, "bond", 20)
        req.verify()
    finally:
        service.close()
    assert len(mesh._requests()) == 1

    again = _Mesh()  # the peer restarted (same key and state dir) and syncs its history
    service = _service(again, tmp_path)
    try:
        again.handlers["ledger"](first, "authority")  # made good before the restart
        again.handlers["ledger"](second, "authority")  # new
        (req,) = again.stake_requests(1)
        assert req.amount == 35
    finally:
        service.close()
    assert len(again._requests()) == 1
