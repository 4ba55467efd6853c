"""``meshbench bench reliability --transport p2p``: SIGKILLs of libp2p worker peers.

The live mesh over libp2p: the ledger authority and its publisher in this process
(:meth:`Mesh.join` on 127.0.0.1) and worker peers as separate processes (``python -m
meshbench.runtime.p2p worker``). Under a steady stream of publications the suite SIGKILLs a
worker peer at a random moment (a worker or a verifier, mid-task or idle) and starts it
again on the same data dir: the same key, the bond it remembers (it does not bond twice),
and it rejoins the mesh. After each kill, once the peer has rejoined, it checks the live
ledger (``verify`` passes, tokens held equal tokens minted); at the end, with the authority
stopped, ``ledger verify``, a rebuild equal to the live tables, conservation and every blob's
hash (:func:`~meshbench.bench.reliability.check_at_rest`), and that every task settled within
its protocol timeouts, not at its deadline.

The figures: kills, tasks, outcomes, tasks that waited for their deadline, seconds from a
kill to the peer's rejoining, seconds from a kill to the last task then in flight settled,
settle latencies, slashes (a killed party is a no-show, as the policy says).
"""

from __future__ import annotations

import contextlib
import logging
import random
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from meshbench.bench.reliability import (
    WASM,
    _percentiles,
    check_at_rest,
    settlement_figures,
    task_times,
)
from meshbench.core.events import StakeBonded, StakeSlashed
from meshbench.core.model import Model

__all__ = ["P2P_CRASH_POLICY", "P2P_RESTART_POLICY", "run", "run_p2p_crash_suite"]

#: Short protocol timeouts (a task that resumes is told apart from one that waits for its
#: deadline); one verifier per task, so that four peers keep tasks going while one restarts.
P2P_CRASH_POLICY: dict[str, Any] = {
    "scheduling": {"task_timeout": 5},
    "verification_quorum": {"minimum_verifiers": 1, "verification_timeout": 4},
    "selection": {"offer_window_ms": 1000},
}
#: Stage timeouts longer than a peer's restart (kill to rejoined: p50 13 s, max 27 s on a
#: loaded machine): a party killed after it committed is back in time to answer from its
#: commitment store, one killed before is asked again; still far inside the deadline.
P2P_RESTART_POLICY: dict[str, Any] = {
    "scheduling": {"task_timeout": 40},
    "verification_quorum": {"minimum_verifiers": 1, "verification_timeout": 40},
    "selection": {"offer_window_ms": 1000},
}
DEADLINE_S = 240
VERIFIERS = 1


class _Publisher:
    """Publishes one task every ``interval_s`` on its own thread until :meth:`stop`."""

    def __init__(self, mesh: Any, interval_s: float, tag: str) -> None:
        self.mesh = mesh
        self.interval_s = interval_s
        self.tag = tag
        self.published = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="crash-publisher", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        wasm = WASM.read_bytes()
        while not self._stop.is_set():
            try:
                self.mesh.publish(
                    wasm, f"{self.tag}-{self.published}".encode(), fee=200,
                    verifiers=VERIFIERS, deadline_s=DEADLINE_S,
                )  # fmt: skip
                self.published += 1
            except Exception as exc:  # reported: a publication the mesh refused
                self.errors.append(f"{type(exc).__name__}: {exc}")
            self._stop.wait(self.interval_s)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(60)


def _joined(mesh: Any, did: str) -> bool:
    """The peer is connected again and subscribed to the tasks topic."""
    return any(p.did == did and "tasks" in p.topics for p in mesh.net.peers())


def _open_tasks(mesh: Any) -> list[str]:
    tasks = mesh.node.books_tables().get("tasks", {})
    return [cid for cid, t in tasks.items() if t["state"] != "Settled"]


def _wait_open(mesh: Any, limit_s: float) -> int:
    end = time.monotonic() + limit_s
    while (n := len(_open_tasks(mesh))) and time.monotonic() < end:
        threading.Event().wait(0.2)  # a look at the books five times a second
    return n


@contextlib.contextmanager
def _p2p_log(authority_dir: Path) -> Iterator[None]:
    """What the authority's backend sends and receives, kept in its data dir
    (``authority.log``; each peer's side is in its ``worker.log``): how a task that waited
    is read afterwards."""
    authority_dir.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(authority_dir / "authority.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s"))
    logger = logging.getLogger("meshbench.p2p")
    level, propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False  # to the file only, not the console
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate
        handler.close()


def _check_live(mesh: Any) -> dict[str, Any]:
    report = mesh.node.verify_ledger()
    return {
        "ok": bool(report.ok and report.tokens_minted == report.tokens_held),
        "tokens_minted": report.tokens_minted,
        "tokens_held": report.tokens_held,
        "problems": report.problems[:5],
    }


def run_p2p_crash_suite(
    *,
    kills: int = 3,
    workers: int = 4,
    seed: int = 0,
    interval_s: float = 1.0,
    max_up_s: float = 6.0,
    data_dir: Path | None = None,
    time_limit_s: float = 600,
    policy: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """SIGKILL a random worker peer ``kills`` times, each at a random moment up to
    ``max_up_s`` after the previous one rejoined, and restart it; check after each; then
    stop publishing, let the open tasks settle and check everything once more. Past
    ``time_limit_s`` no more kills are made (``stopped_at_time_limit``), the rest runs.
    ``policy``: instead of :data:`P2P_CRASH_POLICY` (e.g. :data:`P2P_RESTART_POLICY`)."""
    from meshbench.runtime.mesh import Mesh
    from meshbench.testing.netmesh import spawn_worker, wait_until

    rng = random.Random(seed)
    root = Path(data_dir or tempfile.mkdtemp(prefix="meshbench-crash-p2p-"))
    authority_dir = root / "authority"
    started = time.monotonic()
    figures: dict[str, Any] = {"transport": "p2p", "seed": seed, "kills": 0, "checks_failed": 0}
    figures["stopped_at_time_limit"] = False
    rejoin_s: list[float] = []
    restart_s: list[float] = []  # kill to the new process up (its key loaded, listening)
    failures: list[dict[str, Any]] = []
    #: (when a peer was killed, the tasks open at that moment)
    at_kills: list[tuple[int, list[str]]] = []
    policy = policy or P2P_CRASH_POLICY
    figures["policy"] = policy
    with _p2p_log(authority_dir), Mesh.join(data_dir=authority_dir, policy=policy) as mesh:
        addr, auth, fed = mesh.net.addrs[0], mesh.node.authority.did, mesh.node.federation

        def spawn(i: int) -> Any:
            return spawn_worker(
                root / f"w{i}", bootstrap=addr, authority=auth, federation=fed, log_level="INFO"
            )

        with ThreadPoolExecutor(workers) as pool:
            peers = list(pool.map(spawn, range(workers)))
        publisher = None
        try:
            mesh.wait_for_workers(workers, timeout=120)
            figures["ready_s"] = round(time.monotonic() - started, 1)
            publisher = _Publisher(mesh, interval_s, f"p2p-s{seed}")
            for n in range(kills):
                # the moment itself is what is drawn: no condition to wait for
                threading.Event().wait(rng.uniform(0.5, max_up_s))
                i = rng.randrange(workers)
                at_kills.append((int(time.time() * 1000), _open_tasks(mesh)))
                killed = time.monotonic()
                peers[i] = peers[i].restart()  # SIGKILL, then the same peer again
                restart_s.append(time.monotonic() - killed)
                did = peers[i].did
                wait_until(lambda did=did: _joined(mesh, did), 60, f"{did} to rejoin")
                rejoin_s.append(time.monotonic() - killed)
                figures["kills"] += 1
                check = _check_live(mesh)
                if not check["ok"]:
                    figures["checks_failed"] += 1
                    failures.append({"kill": n, **check})
                if time.monotonic() - started > time_limit_s:
                    figures["stopped_at_time_limit"] = True  # fewer kills: reported
                    break
            publisher.stop()
            figures["published"] = publisher.published
            figures["publish_errors"] = publisher.errors[:5]
            figures["open_after_drain"] = _wait_open(mesh, limit_s=60)
            figures["bonded_at_end"] = mesh.bonded_workers()
            fresh, made_good = _bonds(mesh.node.ledger_events())
            # a restarted peer rejoins with the bond it has: none bonds from nothing again
            figures["bonds_per_peer_max"] = max(fresh.values(), default=0)
            # slashes a peer made good by bonding as much again (else bonds drain)
            figures["slashes_made_good"] = made_good
            # requests sent again to a peer that came back (it missed them while down)
            figures["requests_resent"] = dict(getattr(mesh.node.backend, "resent", {}))
        finally:
            if publisher is not None:
                publisher.stop()
            for p in peers:
                p.kill()
    final = check_at_rest(authority_dir)
    figures["kill_to_restarted_s"] = _percentiles(sorted(restart_s))
    return _figures(authority_dir, figures, final, failures, at_kills, rejoin_s, started)


def _bonds(events: Iterable[Model]) -> tuple[Counter[str], int]:
    """Per peer, its bonds that made no slash good (a restarted peer that bonded again
    would show 2); and how many bonds made a slash good (a peer slashed bonds as much again)."""
    short: Counter[str] = Counter()  # slashed and not yet made good, per peer
    fresh: Counter[str] = Counter()
    made_good = 0
    for e in events:
        if isinstance(e, StakeSlashed):
            short[e.account] += e.amount
        elif isinstance(e, StakeBonded):
            if short[e.account]:
                made_good += 1
                short[e.account] = max(0, short[e.account] - e.amount)
            else:
                fresh[e.account] += 1
    return fresh, made_good


def _figures(
    root: Path,
    figures: dict[str, Any],
    final: Any,
    failures: list[dict[str, Any]],
    at_kills: list[tuple[int, list[str]]],
    rejoin_s: list[float],
    started: float,
) -> dict[str, Any]:
    times = task_times(root)
    # after each kill: how long until the last task then in flight settled
    settle_after_kill = [
        max(((times[c].settled or at) - at) / 1000 for c in cids)
        for at, cids in at_kills
        if cids and all(c in times for c in cids)
    ]
    return {
        **figures,
        **settlement_figures(root, times, final, failures),
        "kill_to_rejoined_s": _percentiles(sorted(rejoin_s)),
        "in_flight_at_kills": sum(len(c) for _, c in at_kills),
        "kill_to_in_flight_settled_s": _percentiles(sorted(settle_after_kill)),
        "wall_s": round(time.monotonic() - started, 1),
        "data_dir": str(root.parent),
    }


def run(quick: bool = False) -> dict[str, Any]:
    """The benchmark entry: 100 kills of worker peers, or 5 with ``--quick``, with stage
    timeouts longer than a peer's restart (:data:`P2P_RESTART_POLICY`: a party killed
    after it committed answers when it is back, as the README's figures were measured)."""
    seed = int(time.time()) % 1000
    policy = P2P_RESTART_POLICY
    if quick:
        return run_p2p_crash_suite(kills=5, seed=seed, time_limit_s=300, policy=policy)
    return run_p2p_crash_suite(kills=100, seed=seed, time_limit_s=3600, policy=policy)
