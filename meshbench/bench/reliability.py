"""``meshbench bench reliability``: SIGKILLs at random moments of a running mesh.

The mesh is the most faithful multi-process one we run: a Dask ``LocalCluster`` of worker
processes (each with a nanny, which restarts a killed worker under the same name, hence the
same key), and the ledger authority with its publisher in a **separate process** (``python
-m meshbench.bench.reliability authority``: ``Mesh.connect`` to the cluster, then a steady
stream of publications). The suite SIGKILLs that process at random moments (and, between,
Dask worker processes: workers and verifiers mid-task), restarts it on the same data dir,
and checks, after every kill with the ledger at rest and again at the end:

* ``ledger verify`` passes and a rebuild equals the live tables (after each kill
  incrementally, :class:`RestWatcher`, each event checked once; at the end from nothing);
* tokens held equal tokens minted (none created or lost);
* every blob in the store hashes to its CID (none half-written);
* every task settles within its protocol timeouts, not at its deadline: in the end no task
  is open or expired, and a task in flight at a kill settles soon after the restart.

The figures: kills, tasks, tasks that waited for their deadline (expired or still open when
the drain ends), seconds to recover (restart to ready; restart to the last in-flight task
settled), settle latencies.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from meshbench.core.encoding import blob_cid

log = logging.getLogger("meshbench.bench")
WASM = Path(__file__).resolve().parents[2] / "datasets" / "wasm" / "sha256.wasm"

#: Short protocol timeouts, so that a task which resumes is told apart from one that waits
#: for its (much later) deadline.
CRASH_POLICY: dict[str, Any] = {
    "scheduling": {"task_timeout": 8},
    "verification_quorum": {"minimum_verifiers": 2, "verification_timeout": 4},
    "selection": {"offer_window_ms": 400},
}
DEADLINE_S = 240
VERIFIERS = 2


# --- the authority process -------------------------------------------------------------
def authority_main(scheduler: str, data_dir: str, interval_s: float, tag: str) -> None:
    """The ledger authority and its publisher: publish one task every ``interval_s`` until
    a line ``drain`` arrives on stdin, then wait for the open tasks and print a summary."""
    from meshbench.runtime.mesh import Mesh

    # the runtime's notes (workers that cannot describe themselves, empty offer rounds)
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING)
    for name in ("meshbench.dask", "meshbench.node"):
        logging.getLogger(name).setLevel(logging.INFO)
    t0 = time.monotonic()
    try:
        mesh = Mesh.connect(scheduler, data_dir=data_dir, policy=CRASH_POLICY)
    except Exception as exc:  # the suite reports it (a restart that cannot start is a defect)
        _say(error=f"{type(exc).__name__}: {exc}")
        os._exit(2)  # at once: the Dask client's threads would hold a normal exit
    # what the restart saw: the workers its backend found, and anything it refused while
    # setting up (a worker's PeerInfo or StakeRequest refused leaves it unbonded)
    refused = [f"{r.what}: {type(r.error).__name__}: {r.error}"[:200] for r in mesh.node.rejections]
    _say(
        ready=round(time.monotonic() - t0, 3),
        workers=mesh.node.backend.worker_count(),
        bonded=mesh.bonded_workers(),
        refused=refused[:5],
    )
    drain = threading.Event()

    def read_stdin() -> None:
        for line in sys.stdin:
            if line.strip() == "drain":
                drain.set()

    threading.Thread(target=read_stdin, daemon=True).start()
    wasm = WASM.read_bytes()
    i = 0
    while not drain.is_set():
        handle = mesh.publish(
            wasm, f"{tag}-{i}".encode(), fee=200, verifiers=VERIFIERS, deadline_s=DEADLINE_S
        )
        _say(published=str(handle.cid))
        i += 1
        drain.wait(interval_s)
    _say(drained=_wait_open(mesh, limit_s=60))
    mesh.close()


def _wait_open(mesh: Any, limit_s: float) -> int:
    """How many tasks are still open after waiting up to ``limit_s`` for them to settle."""
    end = time.monotonic() + limit_s
    while True:
        tasks = mesh.node.books_tables().get("tasks", {})
        open_ = sum(1 for t in tasks.values() if t["state"] != "Settled")
        if open_ == 0 or time.monotonic() > end:
            return open_
        threading.Event().wait(0.1)  # a look at the books ten times a second


def _say(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


# --- checks with the ledger at rest ------------------------------------------------------
@dataclass
class RestCheck:
    """What one look at the data dir found while no authority ran."""

    verify_ok: bool
    rebuild_equal: bool
    tokens_minted: int
    tokens_held: int
    blobs: int
    bad_blobs: int
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (
            self.verify_ok
            and self.rebuild_equal
            and self.tokens_minted == self.tokens_held
            and self.bad_blobs == 0
        )


def check_at_rest(data_dir: Path) -> RestCheck:
    """``ledger verify``, ``ledger rebuild``, conservation and every blob's hash."""
    from meshbench.store.ledger import Ledger

    with Ledger(data_dir / "ledger.sqlite") as led:
        report = led.verify()
        rebuilt = led.rebuild()
    blobs = bad = 0
    for path in sorted((data_dir / "blobs" / "blobs").glob("*/*")):
        blobs += 1
        if str(blob_cid(path.read_bytes())) != path.name:
            bad += 1
    return RestCheck(
        verify_ok=report.ok,
        rebuild_equal=rebuilt.ok and rebuilt.tables_equal,
        tokens_minted=report.tokens_minted,
        tokens_held=report.tokens_held,
        blobs=blobs,
        bad_blobs=bad,
        problems=(report.problems + rebuilt.problems)[:5],
    )


class RestWatcher:
    """:func:`check_at_rest` for a data dir looked at again and again (after every kill):
    the ledger is verified incrementally (:class:`~meshbench.store.ledger.LedgerFollower`:
    each event checked and folded once, the events verified before re-hashed to prove they
    did not change), and only blobs not seen before, or whose size changed, are hashed. The
    same checks as a fresh look; the suite still ends with one fresh :func:`check_at_rest`."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._follower: Any = None
        self._blobs: dict[str, int] = {}
        self.times: dict[str, TaskTimes] = {}
        self._settled: dict[str, int] = {}

    def _on_event(self, _seq: int, ev: Any) -> None:
        from meshbench.core.events import RewardDistributed
        from meshbench.core.types import TaskIntent

        if isinstance(ev, TaskIntent):
            self.times[str(ev.cid)] = TaskTimes(ev.created_at, ev.deadline, None, None)
        elif isinstance(ev, RewardDistributed):
            self._settled[str(ev.task_cid)] = ev.timestamp

    def check(self) -> RestCheck:
        from meshbench.store.ledger import Ledger, LedgerFollower

        with Ledger(self.data_dir / "ledger.sqlite") as led:
            if self._follower is None:
                self._follower = LedgerFollower(led.authority)
                self._follower.on_event = self._on_event
            report = self._follower.verify(led)
        bad = 0
        for path in sorted((self.data_dir / "blobs" / "blobs").glob("*/*")):
            size = path.stat().st_size
            if self._blobs.get(path.name) == size:
                continue
            if str(blob_cid(path.read_bytes())) != path.name:
                bad += 1
            else:
                self._blobs[path.name] = size
        return RestCheck(
            verify_ok=report.ok,
            rebuild_equal=report.tables_equal,
            tokens_minted=report.tokens_minted,
            tokens_held=report.tokens_held,
            blobs=len(self._blobs) + bad,
            bad_blobs=bad,
            problems=report.problems[:5],
        )

    def open_tasks(self) -> list[str]:
        """Tasks not settled in the books last checked."""
        rows = self._follower.books.table("tasks") if self._follower is not None else {}
        return [c for c in self.times if (rows.get(c) or {}).get("state") != "Settled"]


@dataclass(frozen=True)
class TaskTimes:
    created: int
    deadline: int
    settled: int | None
    outcome: str | None


def task_times(data_dir: Path) -> dict[str, TaskTimes]:
    """Each task's publication, deadline, settlement time and outcome, from the ledger."""
    from meshbench.core.events import RewardDistributed
    from meshbench.core.types import TaskIntent
    from meshbench.store.ledger import Ledger

    out: dict[str, TaskTimes] = {}
    with Ledger(data_dir / "ledger.sqlite") as led:
        settled: dict[str, int] = {}
        for _, _, ev in led.iter_events(check=False):
            if isinstance(ev, TaskIntent):
                out[str(ev.cid)] = TaskTimes(ev.created_at, ev.deadline, None, None)
            elif isinstance(ev, RewardDistributed):
                settled[str(ev.task_cid)] = ev.timestamp
        rows = led.books.table("tasks")
    for cid, t in list(out.items()):
        row = rows.get(cid) or {}
        done = row.get("state") == "Settled"
        out[cid] = TaskTimes(
            t.created, t.deadline, settled.get(cid) if done else None, row.get("outcome")
        )
    return out


# --- the suite -------------------------------------------------------------------------
class _Authority:
    """The authority process, and a thread that reads what it says."""

    def __init__(self, scheduler: str, data_dir: Path, interval_s: float, tag: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "meshbench.bench.reliability", "authority",
             scheduler, str(data_dir), str(interval_s), tag],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.published = 0
        self._said: queue.Queue[dict[str, Any] | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        out: IO[str] | None = self.proc.stdout
        assert out is not None
        for line in out:
            if line.startswith("{"):
                msg = json.loads(line)
                self.published += "published" in msg
                self._said.put(msg)
        self._said.put(None)  # the process has exited

    def wait_for(self, key: str, timeout_s: float) -> dict[str, Any]:
        """The next message with ``key``; TimeoutError after ``timeout_s`` (then it is killed)."""
        end = time.monotonic() + timeout_s
        while (left := end - time.monotonic()) > 0:
            try:
                msg = self._said.get(timeout=left)
            except queue.Empty:
                break
            if msg is None:
                raise RuntimeError(f"the authority process exited before saying {key!r}")
            if key in msg:
                return msg
            if "error" in msg:
                raise RuntimeError(f"the authority process failed: {msg['error']}")
        self.kill()
        raise TimeoutError(f"the authority process said no {key!r} within {timeout_s} s")

    def drain(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("drain\n")
        self.proc.stdin.flush()

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


def run_crash_suite(
    *,
    kills: int = 3,
    workers: int = 4,
    seed: int = 0,
    worker_kills: bool = True,
    interval_s: float = 0.25,
    max_up_s: float = 8.0,
    data_dir: Path | None = None,
    time_limit_s: float = 600,
) -> dict[str, Any]:
    """SIGKILL the authority ``kills`` times, each at a random moment up to ``max_up_s``
    after it is ready (and, in half the rounds, a Dask worker at a random moment before),
    checking the data dir after each; then drain and check everything once more."""
    import dask
    from distributed import Client, LocalCluster

    # the scheduler (here) gives up on a killed worker's address after 5 s, not Dask's 30
    dask.config.set({"distributed.comm.timeouts.connect": "5s"})
    rng = random.Random(seed)
    root = Path(data_dir or tempfile.mkdtemp(prefix="meshbench-crash-"))
    started = time.monotonic()
    cluster = LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=True, memory_limit="1GiB",
        dashboard_address=None,
    )  # fmt: skip
    client = Client(cluster)
    figures: dict[str, Any] = {"seed": seed, "kills": 0, "worker_kills": 0, "recover_s": []}
    figures["workers_seen"], figures["bonded_at_start"] = [], []
    #: the workers the scheduler had at each restart (a worker the backend did not see,
    #: though the scheduler had it, is the backend's defect; one the scheduler lacks, Dask's)
    figures["scheduler_workers"] = []
    figures["nannies_brought_back"] = 0  # closed for good by Dask, started again here
    refused_at_start: dict[str, int] = {}
    figures["refused_at_start"] = refused_at_start
    figures["checks_failed"] = 0
    failures: list[dict[str, Any]] = []
    open_at_kill: list[str] = []
    #: (when the authority was ready again, the tasks open when it was killed)
    resumed: list[tuple[int, list[str]]] = []
    watcher = RestWatcher(root)
    try:
        for n in range(kills + 1):
            auth = _Authority(cluster.scheduler_address, root, interval_s, f"s{seed}-r{n}")
            ready = auth.wait_for("ready", timeout_s=120)
            figures["recover_s"].append(ready["ready"])
            figures["workers_seen"].append(ready.get("workers"))
            figures["bonded_at_start"].append(ready.get("bonded"))
            figures["scheduler_workers"].append(have := len(client.scheduler_info()["workers"]))
            if have < workers:  # which nannies, in what state (a worker Dask lost is read here)
                short = figures.setdefault("short_of_workers", [])
                short.append({str(k): str(v.status) for k, v in cluster.workers.items()})
            figures["nannies_brought_back"] += _bring_back_closed_nannies(cluster)
            for line in ready.get("refused") or ():
                refused_at_start[line] = refused_at_start.get(line, 0) + 1
            if open_at_kill:
                resumed.append((int(time.time() * 1000), open_at_kill))
            if n == kills:
                auth.drain()
                figures["open_after_drain"] = auth.wait_for("drained", timeout_s=90)["drained"]
                auth.proc.wait(timeout=30)
                break
            # the faults, at random moments of the authority's run (no condition to wait
            # for: the moment itself is what is drawn)
            up_s = rng.uniform(0.2, max_up_s)
            if worker_kills and rng.random() < 0.5:
                worker_at = rng.uniform(0, up_s)
                threading.Event().wait(worker_at)
                _kill_a_worker(client, rng)
                figures["worker_kills"] += 1
                threading.Event().wait(up_s - worker_at)
            else:
                threading.Event().wait(up_s)
            auth.kill()
            figures["kills"] += 1
            check = watcher.check()  # incremental: each event checked once in all
            open_at_kill = watcher.open_tasks()
            if not check.ok:
                figures["checks_failed"] += 1
                failures.append({"kill": n, **check.__dict__})
            if time.monotonic() - started > time_limit_s:
                raise TimeoutError(f"the crash suite ran past {time_limit_s} s")
        final = check_at_rest(root)  # and once from nothing, at the end
    finally:
        client.close()
        cluster.close()
    return _figures(root, figures, final, failures, resumed, time.monotonic() - started)


def _bring_back_closed_nannies(cluster: Any) -> int:
    """Start again the nannies that closed themselves; return how many there were.

    A nanny restarts a worker process that dies, except one that dies while it is still
    starting: Dask then closes the nanny for good (dask/distributed#6427), and the cluster
    runs one worker short. A SIGKILL at a random moment hits that window now and then; a
    deployment's supervisor starts such a machine again, and here the cluster does
    (``LocalCluster`` re-creates a worker of its spec that it no longer holds). Counted in
    the figures (``nannies_brought_back``): it is the operator's doing, not the mesh's."""
    closed = [
        name
        for name, nanny in list(cluster.workers.items())
        if str(getattr(nanny, "status", "")) in ("Status.closed", "Status.failed")
    ]
    if not closed:
        return 0
    log.warning("nannies closed for good, started again: %s", closed)
    for name in closed:
        cluster.workers.pop(name, None)
    cluster.sync(cluster._correct_state)
    return len(closed)


def _kill_a_worker(client: Any, rng: random.Random) -> None:
    """SIGKILL one Dask worker process (its nanny starts it again, with the same name)."""
    pids = client.run(os.getpid)
    address = rng.choice(sorted(pids))
    os.kill(pids[address], signal.SIGKILL)


def _figures(
    root: Path,
    figures: dict[str, Any],
    final: RestCheck,
    failures: list[Any],
    resumed: list[tuple[int, list[str]]],
    wall_s: float,
) -> dict[str, Any]:
    times = task_times(root)
    # after each restart: how long until the last task in flight at the kill settled
    resume_s = [
        max(((times[c].settled or ready) - ready) / 1000 for c in cids) for ready, cids in resumed
    ]
    recover = figures.pop("recover_s")
    # per restart: the fewest, and the last
    for key in ("workers_seen", "bonded_at_start", "scheduler_workers"):
        seen = [n for n in figures.pop(key, []) if n is not None]
        if seen:
            figures[key] = {"min": min(seen), "last": seen[-1]}
    return {
        **figures,
        **settlement_figures(root, times, final, failures),
        "restart_to_ready_s": {"max": max(recover), "mean": round(sum(recover) / len(recover), 2)},
        "in_flight_at_kills": sum(len(c) for _, c in resumed),
        "ready_to_in_flight_settled_s": _percentiles(sorted(resume_s)),
        "wall_s": round(wall_s, 1),
        "data_dir": str(root),
    }


def settlement_figures(
    root: Path, times: dict[str, TaskTimes], final: RestCheck, failures: list[Any]
) -> dict[str, Any]:
    """What every crash suite reports of its tasks and its final check: tasks, outcomes,
    tasks that waited for their deadline, slashes, reassignments, settle latencies, tokens
    and blobs."""
    latencies = sorted(
        (t.settled - t.created) / 1000 for t in times.values() if t.settled is not None
    )
    waited = [
        c
        for c, t in times.items()
        if t.settled is None or t.outcome == "Expired" or t.settled >= t.deadline
    ]
    outcomes: dict[str, int] = {}
    for t in times.values():
        outcomes[str(t.outcome)] = outcomes.get(str(t.outcome), 0) + 1
    slashes, reassigned = _slashes_and_reassignments(root)
    return {
        "tasks": len(times),
        "outcomes": outcomes,
        "tasks_waited_for_deadline": len(waited),
        "slashes": slashes,
        "reassignments": reassigned,
        "settle_latency_s": _percentiles(latencies),
        "final_check_ok": final.ok,
        "tokens_minted": final.tokens_minted,
        "tokens_held": final.tokens_held,
        "blobs_checked": final.blobs,
        "failures": failures[:5] + ([] if final.ok else [final.__dict__]),
    }


def _slashes_and_reassignments(root: Path) -> tuple[dict[str, int], int]:
    """Slashes by offence (a killed worker or verifier is a no-show, as the policy says)
    and how many attempts ended in a reassignment (``TaskExpired`` of one stage)."""
    from meshbench.core.events import StakeSlashed, TaskExpired
    from meshbench.store.ledger import Ledger

    slashes: dict[str, int] = {}
    reassigned = 0
    with Ledger(root / "ledger.sqlite") as led:
        for _, _, ev in led.iter_events(check=False):
            if isinstance(ev, StakeSlashed):
                slashes[ev.offence] = slashes.get(ev.offence, 0) + 1
            elif isinstance(ev, TaskExpired) and ev.stage != "deadline":
                reassigned += 1
    return slashes, reassigned


def _percentiles(xs: list[float]) -> dict[str, float]:
    if not xs:
        return {}
    pick = lambda q: round(xs[min(len(xs) - 1, int(q * len(xs)))], 2)  # noqa: E731
    return {"p50": pick(0.5), "p90": pick(0.9), "p99": pick(0.99), "max": round(xs[-1], 2)}


def run(quick: bool = False) -> dict[str, Any]:
    """The benchmark entry: 100 kills (about 15 minutes), or 5 with ``--quick``."""
    if quick:
        return run_crash_suite(kills=5, seed=int(time.time()) % 1000, time_limit_s=300)
    return run_crash_suite(kills=100, seed=int(time.time()) % 1000, time_limit_s=3600)


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "authority":
        authority_main(sys.argv[2], sys.argv[3], float(sys.argv[4]), sys.argv[5])
    else:
        sys.exit("usage: python -m meshbench.bench.reliability authority SCHEDULER DIR SECS TAG")
