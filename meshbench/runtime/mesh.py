"""The notebook API: ``Mesh.local(workers=4)``, ``Mesh.connect(address)``, ``mesh.publish``.

A :class:`Mesh` is a ledger-authority node (:class:`~meshbench.runtime.node.AuthorityNode`) with
its workers on a Dask cluster (a ``LocalCluster`` it starts, or one it connects to), a
publisher identity funded by the faucet, and Polars views of its ledger. Example::

    import meshbench
    mesh = meshbench.Mesh.local(workers=4)
    task = mesh.publish(wasm="datasets/wasm/sha256.wasm", input=b"hello", fee=100, verifiers=3)
    task.result().output       # verified by three independent re-executions
    mesh.payouts()             # a Polars DataFrame
"""

from __future__ import annotations

import html
import os
import tempfile
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from meshbench.core.encoding import CID, parse_cid
from meshbench.core.errors import MeshWarning, ProtocolError
from meshbench.core.events import MeshPolicyActivated, RewardDistributed, StakeRequest
from meshbench.core.identity import Identity
from meshbench.core.model import decode_object
from meshbench.core.outcome import task_outcome
from meshbench.core.policy import MeshPolicy, MeshPolicyFragment
from meshbench.core.protocol import Faucet
from meshbench.core.types import (
    CapabilityScope,
    ExecutionReceipt,
    HardwareProfile,
    TaskIntent,
    VerificationReceipt,
)
from meshbench.runtime.agent import Behaviour, CostModel, WorkerAgent
from meshbench.runtime.backends import InProcessBackend, WorkerBackend
from meshbench.runtime.clock import wall_clock_ms
from meshbench.runtime.node import AuthorityNode, TaskRecord
from meshbench.store.frames import LedgerFrames
from meshbench.store.keystore import Keystore
from meshbench.store.ledger import Ledger
from meshbench.store.sealing import seal_to
from meshbench.store.story import TaskStory, task_story

__all__ = ["Mesh", "TaskHandle", "TaskResult"]

#: Dask settings of the cluster :meth:`Mesh.local` starts (its ``dask_config`` goes over
#: them). Dask's statistical profiler (a thread in every worker sampling its stacks every
#: 10 ms, for the dashboard's profile page) is off, and the event loops' tick (which notices
#: a blocked loop, warning after 3 s) runs every 200 ms instead of 20: on this repo's 2-core
#: machine four idle workers used 18.0 % of a core and the node's process 9.5 %, with these
#: 4.0 % and 4.0 %; under load that is CPU the executions and the protocol did not have.
#: How many bytes objects a mesh remembers it published (their CIDs), and the least size
#: remembered: a module published with every task is hashed, written and fsynced once.
STORED_KEPT = 16
STORED_KEPT_MIN_BYTES = 4096
#: How long the policy and bonded workers publish's check read hold for the next tasks
#: (``publish`` warns when a task cannot be met, asking again before it does).
ENOUGH_FOR_S = 1.0

LOCAL_DASK_CONFIG: dict[str, Any] = {
    "distributed.worker.profile.enabled": False,
    "distributed.admin.tick.interval": "200ms",
}
WORKER_FUNDS = 1_000
WORKER_BOND = 200
PUBLISHER_FUNDS = 1_000_000


@dataclass(frozen=True)
class TaskResult:
    """The verified outcome of a task."""

    task_cid: CID
    #: ``Accepted``, ``Failed`` (a verified guest failure: see :attr:`error`), ``Rejected``,
    #: ``NoConsensus`` or ``Expired``
    outcome: str
    output: bytes | None
    receipt: ExecutionReceipt | None
    verifications: tuple[VerificationReceipt, ...]
    settlement: RewardDistributed | None
    #: what failed in the guest (error type and exit code) when the outcome is ``Failed``
    error: str | None = None

    @property
    def accepted(self) -> bool:
        return self.outcome == "Accepted"

    @property
    def output_cid(self) -> CID | None:
        return None if self.receipt is None else self.receipt.output_cid

    def value(self) -> Any:
        """A Python task's verified return value (PythonTaskFailed when the function raised)."""
        from meshbench.exec.python_task import result_value

        if self.output is None:
            raise ProtocolError(f"task {self.task_cid} has no accepted output ({self.outcome})")
        return result_value(self.output)

    def _repr_html_(self) -> str:
        pays = ""
        if self.settlement is not None:
            pays = ", ".join(f"{p.role} {p.amount}" for p in self.settlement.payouts)
        approvals = sum(v.approved for v in self.verifications)
        return (
            f"<div><b>TaskResult</b> <code>{self.task_cid}</code>: <b>{self.outcome}</b>, "
            f"{approvals}/{len(self.verifications)} verifiers approved; paid: "
            f"{html.escape(pays) or 'nothing'}<br>output: "
            f"<code>{html.escape(repr((self.output or b'')[:80]))}</code></div>"
        )


class TaskHandle:
    """A published task: live ``state``, and ``result()`` once it has settled."""

    def __init__(self, mesh: Mesh, record: TaskRecord) -> None:
        self._mesh = mesh
        self._record = record
        self.task = record.task
        self.cid = record.task.cid

    @property
    def state(self) -> str:
        return self._mesh.node.state_of(self.cid)

    @property
    def why(self) -> str | None:
        """Why the task cannot proceed now ("needs 3 verifiers, 2 eligible: waiting for
        workers"), or None when nothing holds it up."""
        return self._mesh.node.why(self.cid)

    def done(self) -> bool:
        return self._record.done.is_set()

    def watch(
        self, timeout: float | None = 120, *, poll_s: float = 0.05
    ) -> Iterator[tuple[str, str | None]]:
        """Yield ``(state, why)`` at each change until the task settles (then its result is
        ready); ``TimeoutError`` after ``timeout`` s, saying why it did not proceed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        last: tuple[str, str | None] | None = None
        while True:
            now = (self.state, self.why)
            if now != last:
                last = now
                yield now
            if self.done():
                return
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise TimeoutError(self._stuck(timeout))
            # the record's event is set on settlement; otherwise look again shortly
            self._record.done.wait(poll_s if left is None else min(poll_s, left))

    def _stuck(self, timeout: float | None) -> str:
        why = self.why
        return f"task {self.cid} is still {self.state} after {timeout} s" + (
            f": {why}" if why else ""
        )

    def result(self, timeout: float | None = 120) -> TaskResult:
        if not self._record.done.wait(timeout):
            raise TimeoutError(self._stuck(timeout))
        r = self._record
        exit_code = r.receipt.exit_code if r.receipt is not None else None
        outcome, error = task_outcome(r.outcome, exit_code, r.output)
        return TaskResult(
            task_cid=self.cid,
            outcome=outcome or "Expired",
            output=r.output if r.outcome == "Accepted" else None,
            receipt=r.receipt,
            verifications=tuple(r.verdicts),
            settlement=r.settlement,
            error=error,
        )

    def story(self, *, scores: bool = True) -> TaskStory:
        """What happened to this task and why, read from the ledger (see :meth:`Mesh.story`)."""
        return self._mesh.story(self.cid, scores=scores)

    def __repr__(self) -> str:
        return f"TaskHandle({self.cid}, {self.state})"

    def _repr_html_(self) -> str:
        return f"<div><b>Task</b> <code>{self.cid}</code>: {html.escape(self.state)}</div>"


class Mesh:
    """A mesh you can publish tasks to, with its ledger as Polars frames."""

    def __init__(
        self,
        node: AuthorityNode,
        *,
        publisher: Identity,
        data_dir: Path,
        client: Any = None,
        cluster: Any = None,
    ) -> None:
        self.node = node
        self.publisher = publisher
        self.data_dir = data_dir
        self.client = client
        self.cluster = cluster
        self.frames = LedgerFrames(node.ledger_path)
        self._nonce = 0
        #: the bytes objects published lately and their CIDs (see _blob), newest last
        self._stored: OrderedDict[int, tuple[bytes, CID]] = OrderedDict()
        #: (when, policy, bonded workers) as last asked (see _policy_and_bonded)
        self._policy_seen: tuple[float, MeshPolicy, int] | None = None
        #: the seed this mesh's keys were derived from (``seed=...``): its nonces count
        #: from 1 instead of carrying the wall clock, so the same seed makes the same tasks
        self.seed: bytes | None = None
        self.net: Any = None
        self._funded: set[str] = set()
        #: the host Mesh.local bound the Dask dashboard to (None: Dask's own link)
        self._dashboard_host: str | None = None

    # --- construction --------------------------------------------------------------------
    @classmethod
    def local(
        cls,
        workers: int = 4,
        *,
        data_dir: str | os.PathLike[str] | None = None,
        behaviours: Mapping[int, Behaviour] | None = None,
        threads_per_worker: int = 1,
        processes: bool = True,
        memory_limit: str = "2GiB",
        policy: MeshPolicyFragment | Mapping[str, Any] | None = None,
        batching: bool = True,
        direct: bool = True,
        executors: Iterable[str] = (),
        dashboard_address: str = "127.0.0.1:0",
        seed: bytes | None = None,
        clock: Callable[[], int] = wall_clock_ms,
        costs: Mapping[int, CostModel] | None = None,
        dask_config: Mapping[str, Any] | None = None,
    ) -> Mesh:
        """Start a Dask ``LocalCluster`` of ``workers`` mesh workers on this machine.

        The scheduler, its dashboard and the workers listen on 127.0.0.1 only (the dashboard
        on a free port; ``mesh.dashboard_link``): pass ``dashboard_address="0.0.0.0:8787"``
        to show the dashboard on the network. (Dask has no "off": without a dashboard its
        scheduler still serves HTTP, on every interface.)

        ``seed``: every key (authority, federation, publisher, workers) is derived from it
        (see :func:`seed_keys`), so the same seed names the same parties; with a
        :class:`~meshbench.runtime.clock.ManualClock` as ``clock`` the whole run is
        reproducible (the workers sign with the node's time). ``costs``: the cost model of
        some workers, by index (a cheap bidder); the others use the default.

        ``batching`` groups the executions, reveals and verdicts that pile up for one worker
        into one Dask call (see :class:`~meshbench.runtime.dask_backend.DaskBackend`);
        ``direct`` calls the workers straight, on a lane to each (``False``: executions as
        Dask tasks, answers through ``Client.run``).
        ``executors``: extra executor plug-ins every worker loads (e.g. ``("cuda",)``).
        ``dask_config``: Dask settings for the cluster, over :data:`LOCAL_DASK_CONFIG`
        (``{"distributed.worker.profile.enabled": True}`` brings back the dashboard's
        profile page).
        """
        import dask
        from distributed import Client, LocalCluster

        if workers < 2:
            raise ProtocolError("a mesh needs at least 2 workers (a worker and a verifier)")
        # the scheduler reads them when it starts, the nannies pass them to their workers
        with dask.config.set({**LOCAL_DASK_CONFIG, **dict(dask_config or {})}):
            cluster = LocalCluster(
                n_workers=workers,
                threads_per_worker=threads_per_worker,
                processes=processes,
                memory_limit=memory_limit,
                dashboard_address=dashboard_address,
                # in-process workers have no host to bind to: their HTTP servers (health and
                # metrics) would listen on every interface; worker processes bind 127.0.0.1
                worker_dashboard_address=None if processes else "127.0.0.1:0",
            )
        client = Client(cluster)
        try:
            root = _data_dir(data_dir)
            if seed is not None:
                from meshbench.runtime.dask_backend import worker_key_name

                names = [worker_key_name(w["name"]) for w in _dask_workers(client)]
                seed_keys(Keystore(root / "worker-keys"), seed, names)
                seed_keys(Keystore(root / "keys"), seed, MESH_KEYS)
            mesh = cls._over_dask(
                client,
                root,
                behaviours,
                policy,
                cluster=cluster,
                workers=workers,
                batching=batching,
                direct=direct,
                executors=tuple(executors),
                clock=clock,
                costs=costs,
            )
            mesh.seed = seed
            host = dashboard_address.rpartition(":")[0]
            mesh._dashboard_host = host if host not in ("", "0.0.0.0", "[::]") else None
            return mesh
        except BaseException:
            client.close()
            cluster.close()
            raise

    @classmethod
    def connect(
        cls,
        address: str,
        *,
        data_dir: str | os.PathLike[str] | None = None,
        policy: MeshPolicyFragment | Mapping[str, Any] | None = None,
        timeout: float = 30,
        executors: Iterable[str] = (),
    ) -> Mesh:
        """Use the workers of a running Dask scheduler (``tcp://host:8786``)."""
        from distributed import Client

        try:
            client = Client(address, timeout=timeout)
        except OSError as exc:
            from meshbench.core.errors import NetworkError

            raise NetworkError(f"cannot reach the Dask scheduler at {address}: {exc}") from exc
        try:
            n = len(client.scheduler_info()["workers"])
            return cls._over_dask(
                client, data_dir, None, policy, workers=n, executors=tuple(executors)
            )
        except BaseException:
            client.close()
            raise

    @classmethod
    def join(
        cls,
        listen: str = "/ip4/127.0.0.1/tcp/0",
        bootstrap: Iterable[str] = (),
        *,
        data_dir: str | os.PathLike[str] | None = None,
        mdns: bool = False,
        policy: MeshPolicyFragment | Mapping[str, Any] | None = None,
        fund_workers: bool = True,
    ) -> Mesh:
        """Join a libp2p mesh as the federation's ledger authority and publisher.

        Workers are peers running :class:`~meshbench.runtime.p2p.WorkerService` (``python -m
        meshbench.runtime.p2p worker --authority DID ...``). With ``fund_workers`` the node
        funds each new worker from the faucet so it can bond (a demo federation's genesis).
        """
        from meshbench.net.node import Libp2pNode
        from meshbench.store.blobs import BlobStore

        root = _data_dir(data_dir)
        authority = Keystore(root / "keys").load_or_create("node")
        net = Libp2pNode(
            authority, BlobStore(root / "blobs"), listen=[listen], bootstrap=list(bootstrap),
            mdns=mdns,
        ).start()  # fmt: skip
        try:
            mesh = cls.over_transport(net, data_dir=root, policy=policy, fund_workers=fund_workers)
        except BaseException:
            net.close()
            raise
        mesh.net = net  # this mesh owns its transport and closes it
        return mesh

    @classmethod
    def over_transport(
        cls,
        transport: Any,
        *,
        data_dir: str | os.PathLike[str],
        policy: MeshPolicyFragment | Mapping[str, Any] | None = None,
        fund_workers: bool = True,
    ) -> Mesh:
        """A Mesh whose node is the ledger authority over a running libp2p ``transport``
        (a :class:`~meshbench.net.node.Libp2pNode`; the caller keeps owning it).

        The transport's identity must be the data dir's ``node`` key (the authority).
        """
        from meshbench.runtime.p2p import P2PBackend

        root = _data_dir(data_dir)
        authority = Keystore(root / "keys").load_or_create("node")
        if transport.identity.did != authority.did:
            raise ProtocolError("the transport's key is not this data dir's authority key ('node')")
        backend = P2PBackend(transport, authority)
        mesh = cls._start(root, backend, policy, workers=0, resume=False)
        node = mesh.node
        backend.unsolicited = lambda data: node.submit(data, wait=False)
        node.subscribe(backend.gossip)
        backend.resume(node.ledger_path)  # late joiners, known workers, from the ledger
        if fund_workers:
            node.subscribe(mesh._fund_new_workers)
        node.resume()  # what a restart re-sends goes out once the workers are known
        return mesh

    def bonded_workers(self) -> int:
        """How many workers have bonded at least the policy's ``min_stake``."""
        return self.node.bonded_workers(self.policy.bonding_requirements.min_stake)

    def wait_for_workers(self, count: int, timeout: float = 120) -> int:
        """Wait until ``count`` workers have joined and bonded (worker peers join a libp2p
        mesh after it starts); return how many have. ``NetworkError`` after ``timeout`` s."""
        from meshbench.core.errors import NetworkError

        deadline = time.monotonic() + timeout
        while (n := self.bonded_workers()) < count:
            if time.monotonic() > deadline:
                raise NetworkError(f"{n} of {count} workers joined and bonded in {timeout:g} s")
            time.sleep(0.2)  # a look at the books five times a second (a cheap driver call)
        return n

    def _fund_new_workers(self, event: Any) -> None:
        """Node listener (driver thread): genesis funds for a worker that just announced."""
        from meshbench.core.types import PeerInfo

        node = self.node
        if isinstance(event, PeerInfo) and event.did not in self._funded:
            self._funded.add(event.did)
            if node.state is not None and node.state.books.balance(event.did) < WORKER_BOND:
                # queued, not fed: a listener runs inside the driver's burst
                node.submit(Faucet(account=event.did, amount=WORKER_FUNDS), wait=False)

    @classmethod
    def in_process(
        cls,
        workers: int = 4,
        *,
        data_dir: str | os.PathLike[str] | None = None,
        behaviours: Mapping[int, Behaviour] | None = None,
        policy: MeshPolicyFragment | Mapping[str, Any] | None = None,
        agent_factory: Callable[[Identity, str, int], WorkerAgent] | None = None,
        clock: Callable[[], int] = wall_clock_ms,
        executors: Iterable[str] = (),
        seed: bytes | None = None,
    ) -> Mesh:
        """Workers as threads of this process (no Dask): for tests and quick experiments.

        ``seed``: every key derived from it (see :meth:`local`).

        ``agent_factory(identity, federation, index)`` builds worker ``index``'s agent (its
        hardware, extra executors); by default a 4 GiB CPU worker with the wasm executor and
        the ``executors`` plug-ins named (one instance shared by every worker, e.g.
        ``("python",)``). ``clock``: milliseconds since the epoch for the node and its
        workers; a :class:`~meshbench.runtime.clock.ManualClock` runs the mesh on virtual
        time (its timers fire when the test advances the clock, never on their own).
        """
        root = _data_dir(data_dir)
        keys = Keystore(root / "keys")
        if seed is not None:
            seed_keys(keys, seed, (*MESH_KEYS, *(f"worker-{i}" for i in range(workers))))
        federation = keys.load_or_create("federation").did
        if executors:
            from meshbench.exec.plugins import load_executor

            shared = {name: load_executor(name) for name in executors}
        else:
            shared = {}

        def default(identity: Identity, federation: str, i: int) -> WorkerAgent:
            return WorkerAgent(
                identity,
                federation,
                HardwareProfile(memory_mb=4096),
                behaviour=(behaviours or {}).get(i, "honest"),
                executors=shared,
            )

        make = agent_factory or default
        agents = [make(keys.load_or_create(f"worker-{i}"), federation, i) for i in range(workers)]
        backend = InProcessBackend(agents, clock=clock)
        mesh = cls._start(root, backend, policy, workers=workers, clock=clock)
        mesh.seed = seed
        return mesh

    @classmethod
    def _over_dask(
        cls,
        client: Any,
        data_dir: str | os.PathLike[str] | None,
        behaviours: Mapping[int, Behaviour] | None,
        policy: MeshPolicyFragment | Mapping[str, Any] | None,
        *,
        cluster: Any = None,
        workers: int,
        batching: bool = True,
        direct: bool = True,
        executors: tuple[str, ...] = (),
        clock: Callable[[], int] = wall_clock_ms,
        costs: Mapping[int, CostModel] | None = None,
    ) -> Mesh:
        from meshbench.runtime.dask_backend import DaskBackend

        root = _data_dir(data_dir)
        keys = Keystore(root / "keys")
        federation = keys.load_or_create("federation").did
        names = [str(w["name"]) for w in _dask_workers(client)]
        by_name = {names[i]: b for i, b in (behaviours or {}).items() if i < len(names)}
        cost_by_name = {names[i]: c for i, c in (costs or {}).items() if i < len(names)}
        backend = DaskBackend(
            client,
            root / "worker-keys",
            federation,
            behaviours=by_name,
            module_cache_dir=root / "module-cache",
            batching=batching,
            direct=direct,
            executors=executors,
            costs=cost_by_name,
            clock=clock,
        )
        mesh = cls._start(
            root, backend, policy, workers=workers, client=client, cluster=cluster, clock=clock
        )
        return mesh

    @classmethod
    def _start(
        cls,
        root: Path,
        backend: WorkerBackend,
        policy: MeshPolicyFragment | Mapping[str, Any] | None,
        *,
        workers: int,
        client: Any = None,
        cluster: Any = None,
        clock: Callable[[], int] = wall_clock_ms,
        resume: bool = True,
    ) -> Mesh:
        """Start the node and set the mesh up; the requests a restart re-sends to workers
        go out after the backend has described its workers (with ``resume``; else the
        caller calls ``node.resume()`` when its backend knows them)."""
        keys = Keystore(root / "keys")
        authority = keys.load_or_create("node")
        federation = keys.load_or_create("federation").did
        publisher = keys.load_or_create("publisher")
        node = AuthorityNode(root, backend, authority=authority, federation=federation, clock=clock)
        node.sealer = lambda envelope, recipients: seal_to(envelope, publisher, recipients)
        node.start(resume=False)
        mesh = cls(node, publisher=publisher, data_dir=root, client=client, cluster=cluster)
        try:
            mesh._set_up(workers, policy)
            if resume:
                node.resume()
        except BaseException:
            mesh.close()
            raise
        return mesh

    def _set_up(self, workers: int, policy: MeshPolicyFragment | Mapping[str, Any] | None) -> None:
        updates: dict[str, Any] = {}
        if workers > 0 and workers - 1 < MeshPolicy().verification_quorum.minimum_verifiers:
            updates["verification_quorum"] = {"minimum_verifiers": workers - 1}
        if policy is not None:
            extra = policy.updates if isinstance(policy, MeshPolicyFragment) else dict(policy)
            updates = {**updates, **extra}
        if updates:
            self.set_policy(MeshPolicyFragment(updates=updates))
        node = self.node
        infos = node.backend.describe(node.clock())
        for info in infos:
            node.submit(info)
        snap = node.snapshot()
        # only the workers below the bond (new ones, or slashed ones after a restart) are
        # funded and bond again: asking every worker would spend the others' balances
        need = {d for d in snap.peers if snap.bonded(d) < WORKER_BOND}
        for did in sorted(need):
            node.submit(Faucet(account=did, amount=WORKER_FUNDS, memo="worker genesis"))
        if need:
            for req in node.backend.stake_requests(WORKER_BOND, node.clock()):
                stake = decode_object(req)
                if isinstance(stake, StakeRequest) and stake.account in need:
                    node.submit(stake)
        if node.balance(self.publisher.did) < PUBLISHER_FUNDS // 2:
            faucet = Faucet(
                account=self.publisher.did, amount=PUBLISHER_FUNDS, memo="publisher faucet"
            )
            node.submit(faucet)

    def set_policy(self, fragment: MeshPolicyFragment) -> MeshPolicy:
        """Activate ``fragment`` on this (ungoverned) mesh's policy, without a restart."""
        node = self.node
        current = self.policy
        if current.federation is None:
            current = MeshPolicy(federation=node.federation)
        new = current.apply(fragment)
        ev = MeshPolicyActivated(
            authority=node.authority.did,
            policy_cid=new.cid,
            federation_did=node.federation,
            policy_version=new.policy_version,
            previous_policy_cid=new.previous_policy_cid,
            policy=new,
            timestamp=node.clock(),
        ).sign(node.authority)
        node.append(ev)
        return new

    @property
    def policy(self) -> MeshPolicy:
        return self.node.policy()

    # --- publishing ----------------------------------------------------------------------
    def publish(
        self,
        wasm: bytes | str | os.PathLike[str] | CID | None = None,
        input: bytes | str | os.PathLike[str] | CID = b"",
        *,
        kernel: Any = None,
        python: Any = None,
        fee: int | None = None,
        verifiers: int = 3,
        scope: CapabilityScope | None = None,
        args: Iterable[Any] = (),
        output: str = "stdout",
        deadline_s: float = 120,
        private: bool = False,
        full_verification: bool = False,
    ) -> TaskHandle:
        """Publish a task: ``wasm`` is bytes, a file path or a CID already stored; ``input``
        is bytes, a file path (``Path``), text (``str``) or a CID already stored.

        ``kernel`` instead of ``wasm``: an object with ``task_payload() -> TaskPayload`` (a
        kernel call of an executor extension, e.g. ``meshbench_cuda.KernelCall``); its module
        and input blobs, executor, validator, args and scope make the task (``scope`` given
        here overrides the payload's).

        ``python`` instead of ``wasm``: a function (or a ``PythonCall``) run in the sandboxed
        CPython with ``args`` as its positional arguments; ``result().value()`` is its return
        value. The fee defaults to what a default worker asks for the scope.

        ``private=True`` stores the input encrypted (sealed to the publisher only); its key
        is sealed to the chosen worker and verifiers at the moment they are chosen.

        ``full_verification=True`` asks for the full quorum (``verifiers``) even where the
        federation's policy samples its audits (its ``audit`` section).
        """
        executor, validator = "wasm", "exact"
        if python is not None:
            from meshbench.runtime.python_tasks import prepare_python, python_fee

            if wasm is not None or kernel is not None or input != b"":
                raise ProtocolError("give either python=... or wasm/kernel/input, not all")
            prepared = prepare_python(self.node.blobs, python, args, scope=scope)
            executor, wasm, input = "python", prepared.module_cid, prepared.input
            args, scope = prepared.args, prepared.scope
            fee = python_fee(scope) if fee is None else fee
        fee = 100 if fee is None else fee
        if kernel is not None:
            if wasm is not None or input != b"" or tuple(args):
                raise ProtocolError("give either kernel=... or wasm/input/args, not both")
            payload = kernel.task_payload()
            executor, validator = payload.executor, payload.validator
            wasm, input, args = payload.module, payload.input, payload.args
            scope = scope or payload.scope
        if wasm is None:
            raise ProtocolError("publish needs a wasm module (or kernel=...)")
        wasm_cid = self._blob(wasm, text_is_path=True)
        envelope = None
        if private:
            # only the ciphertext is stored: the plaintext never enters the blob store
            envelope = self.node.blobs.put_encrypted(self._plain_bytes(input), [self.publisher.did])
            input_cid = envelope.ciphertext_cid
        else:
            input_cid = self._blob(input, text_is_path=False)
        now = self.node.clock()
        self._nonce += 1
        task = TaskIntent(
            publisher=self.publisher.did,
            federation=self.node.federation,
            wasm_cid=wasm_cid,
            input_cid=input_cid,
            fee=fee,
            verifier_count=verifiers,
            scope=scope or CapabilityScope(),
            args=tuple(args),
            executor=executor,
            validator=validator,
            assurance="full" if full_verification else "policy",
            output=output,
            created_at=now,
            deadline=now + int(deadline_s * 1000),
            nonce=self._nonce if self.seed is not None else time.time_ns() + self._nonce,
        ).sign(self.publisher)
        handle = TaskHandle(self, self.node.publish(task, envelope=envelope))
        self._warn_if_unmeetable(task, private=envelope is not None)
        return handle

    def _warn_if_unmeetable(self, task: TaskIntent, *, private: bool = False) -> None:
        """Say at once when this mesh cannot run the task (and why)."""
        from meshbench.core.sampling import adaptive

        for fresh in (False, True):  # what was asked a moment ago, then (if short) now
            policy, bonded = self._policy_and_bonded(fresh=fresh)
            q = policy.verification_quorum
            k = q.verifiers_for(task.verifier_count)
            need = max(1, q.minimum_verifiers)
            if adaptive(policy, task, private=private):  # sampled audits
                k = need = policy.audit.auditors
            if bonded >= need + 1:
                return
        raised = (
            f"; k raised from {task.verifier_count} to {k} by policy"
            if k > task.verifier_count
            else ""
        )
        warnings.warn(
            f"task {task.cid}: needs a worker and {need} verifiers, {bonded} bonded workers: "
            f"waiting for workers{raised}",
            MeshWarning,
            stacklevel=3,
        )

    def _policy_and_bonded(self, *, fresh: bool) -> tuple[MeshPolicy, int]:
        """The policy and how many workers bonded its ``min_stake``: two round trips to the
        node's driver, so a burst of publications asks once every :data:`ENOUGH_FOR_S`
        (``fresh``: ask now)."""
        seen = self._policy_seen
        if not fresh and seen is not None and time.monotonic() - seen[0] < ENOUGH_FOR_S:
            return seen[1], seen[2]
        policy = self.policy
        bonded = self.node.bonded_workers(policy.bonding_requirements.min_stake)
        self._policy_seen = (time.monotonic(), policy, bonded)
        return policy, bonded

    def _blob(self, value: Any, *, text_is_path: bool) -> CID:
        store = self.node.blobs
        if isinstance(value, CID):
            if not store.has(value):
                raise ProtocolError(f"the blob {value} is not in this mesh's store")
            return value
        if isinstance(value, bytes):
            # the same bytes object again (a module published with every task): bytes are
            # immutable and the entry holds the object, so its id names these very bytes
            seen = self._stored.get(id(value))
            if seen is not None and seen[0] is value and store.has(seen[1]):
                self._stored.move_to_end(id(value))
                return seen[1]
            cid = store.put(value)
            if len(value) >= STORED_KEPT_MIN_BYTES:
                self._stored[id(value)] = (value, cid)
                if len(self._stored) > STORED_KEPT:
                    self._stored.popitem(last=False)
            return cid
        if isinstance(value, bytearray | memoryview):
            return store.put(bytes(value))
        if isinstance(value, str) and value.startswith("bafk") and not Path(value).exists():
            return self._blob(parse_cid(value, codec="raw"), text_is_path=text_is_path)
        if isinstance(value, os.PathLike) or (isinstance(value, str) and text_is_path):
            path = Path(value)
            if not path.is_file():
                raise ProtocolError(f"no such file: {path}")
            return store.put_file(path)
        if isinstance(value, str):
            return store.put(value.encode())
        raise TypeError(f"cannot publish a {type(value).__name__} as a blob")

    def _plain_bytes(self, value: Any) -> bytes:
        """The bytes of a private input (bytes, a ``Path``, text, or a stored CID)."""
        if isinstance(value, CID):
            return self.node.blobs.get(value)
        if isinstance(value, bytes | bytearray | memoryview):
            return bytes(value)
        if isinstance(value, os.PathLike):
            path = Path(value)
            if not path.is_file():
                raise ProtocolError(f"no such file: {path}")
            return path.read_bytes()
        if isinstance(value, str):
            return value.encode()
        raise TypeError(f"cannot publish a {type(value).__name__} as an input")

    def map(
        self,
        wasm: bytes | str | os.PathLike[str] | CID | Callable[..., Any],
        inputs: Iterable[Any],
        *,
        progress: bool = True,
        timeout: float | None = 600,
        **kwargs: Any,
    ) -> list[TaskHandle]:
        """Publish one task per input and wait for all of them (with a progress bar).

        ``wasm`` may be a Python function: each input is then its argument (a tuple: its
        arguments), e.g. ``mesh.map(score, [1, 2, 3])``.
        """
        if callable(wasm):
            fn = wasm
            handles = [
                self.publish(python=fn, args=x if isinstance(x, tuple) else (x,), **kwargs)
                for x in inputs
            ]
        else:
            handles = [self.publish(wasm, x, **kwargs) for x in inputs]
        from tqdm.auto import tqdm

        deadline = None if timeout is None else time.monotonic() + timeout
        with tqdm(total=len(handles), disable=not progress, desc="tasks") as bar:
            for h in handles:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                h.result(timeout=left)
                bar.update(1)
        return handles

    def story(self, task: TaskHandle | CID | str, *, scores: bool = True) -> TaskStory:
        """The task's story from the ledger: every stimulus the authority accepted about it
        (with its id and time), the events each produced, the offers' selection scores, the
        decision, payouts and slashes; while it cannot proceed, a last line ``waiting: ...``
        says why. ``print(mesh.story(handle))``."""
        cid = task.cid if isinstance(task, TaskHandle) else task
        cid = parse_cid(cid) if isinstance(cid, str) else cid
        self.node.call(lambda: None)  # everything handled so far is committed
        try:
            waiting = self.node.why(cid)
        except ProtocolError:
            waiting = None  # not a task of this node: the ledger says so below
        with Ledger(self.node.ledger_path) as led:
            return task_story(led, cid, scores=scores, waiting=waiting)

    def task(self, fn: Callable[..., Any] | None = None, **publish: Any) -> Any:
        """Decorator: ``@mesh.task`` (or ``@mesh.task(scope=..., verifiers=1)``) makes a
        function run on this mesh when called (a
        :class:`~meshbench.runtime.python_tasks.MeshFunction`)."""
        from meshbench.runtime.python_tasks import MeshFunction

        if fn is None:
            return lambda f: MeshFunction(self, f, **publish)
        return MeshFunction(self, fn, **publish)

    # --- frames ----------------------------------------------------------------------------
    def events(self) -> pl.DataFrame:
        return self.frames.events()

    def tasks(self) -> pl.DataFrame:
        return self.frames.tasks()

    def offers(self) -> pl.DataFrame:
        return self.frames.offers()

    def receipts(self) -> pl.DataFrame:
        return self.frames.receipts()

    def escrow(self) -> pl.DataFrame:
        return self.frames.escrow()

    def payouts(self) -> pl.DataFrame:
        return self.frames.payouts()

    def reputation(self) -> pl.DataFrame:
        return self.frames.reputation()

    def slashes(self) -> pl.DataFrame:
        return self.frames.slashes()

    def audits(self) -> pl.DataFrame:
        """Adaptive verification: per result, audited or not and why, the referee, the held
        payment and what became of it (:meth:`LedgerFrames.audits`)."""
        return self.frames.audits()

    def balances(self) -> pl.DataFrame:
        return self.frames.balances()

    @property
    def dashboard_link(self) -> str | None:
        """The Dask dashboard's address: on the host it listens on (``Mesh.local``'s
        ``dashboard_address``; Dask's own link names the scheduler's host instead, which in
        a threads-only cluster is the machine's network address), else Dask's link."""
        if self.cluster is not None:  # ours (Mesh.local): is there a dashboard at all?
            port = self.cluster.scheduler_info.get("services", {}).get("dashboard")
            if not port:
                return None
            if self._dashboard_host:
                from distributed.utils import format_dashboard_link

                return format_dashboard_link(self._dashboard_host, port)
        return getattr(self.client, "dashboard_link", None) or None

    def rejections(self) -> pl.DataFrame:
        rows = [
            {"at_ms": r.at_ms, "what": r.what, "error": type(r.error).__name__,
             "message": str(r.error)}
            for r in self.node.rejections
        ]  # fmt: skip
        schema = {"at_ms": pl.Int64, "what": pl.Utf8, "error": pl.Utf8, "message": pl.Utf8}
        return pl.DataFrame(rows, schema=schema, orient="row")

    # --- life cycle ----------------------------------------------------------------------
    def close(self) -> None:
        self.node.close()
        backend_close = getattr(self.node.backend, "close", None)
        if backend_close is not None:
            backend_close()
        if self.net is not None:
            self.net.close()
        if self.client is not None:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()

    def __enter__(self) -> Mesh:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Mesh({self.node.backend.worker_count()} workers, data_dir={self.data_dir})"

    def _repr_html_(self) -> str:
        link = self.dashboard_link
        dash = (
            f' · <a href="{html.escape(link)}" target="_blank">Dask dashboard</a>' if link else ""
        )
        return (
            f"<div><b>Mesh</b>: {self.node.backend.worker_count()} workers, federation "
            f"<code>{self.node.federation}</code>{dash}</div>"
        )


#: The keys of a mesh's data dir (``keys/``), besides its workers'.
MESH_KEYS = ("node", "federation", "publisher")


def seed_keys(keys: Keystore, seed: bytes, names: Iterable[str]) -> None:
    """Store under each of ``names`` the key derived from ``seed`` and the name (SHA-256 of
    both: an Ed25519 seed), unless it is there; a key already there that another seed made
    raises ``IdentityError`` (the data dir belongs to another mesh)."""
    import hashlib

    from meshbench.core.errors import IdentityError, KeyNotFound

    for name in names:
        derived = Identity.from_seed(
            hashlib.sha256(b"meshbench/mesh-seed/v1\0" + seed + b"\0" + name.encode()).digest()
        )
        try:
            held = keys.load(name)
        except KeyNotFound:
            keys.create(name, identity=derived)
            continue
        if held.did != derived.did:
            raise IdentityError(
                f"the key {name!r} in {keys.root} was not made from this seed: "
                "use a fresh data dir for a seeded mesh"
            )


def _dask_workers(client: Any) -> list[dict[str, Any]]:
    """The cluster's workers, by name (``Mesh.local`` names them 0, 1, ...)."""
    workers = client.scheduler_info()["workers"].values()
    return sorted(workers, key=lambda w: w["name"])


def _data_dir(data_dir: str | os.PathLike[str] | None) -> Path:
    if data_dir is not None:
        root = Path(data_dir)
        root.mkdir(parents=True, exist_ok=True)
        return root
    return Path(tempfile.mkdtemp(prefix="meshbench-mesh-"))
