"""Adversarial simulation: the real protocol engine, simulated executors, a manual clock.

Peers sign real objects with real keys; the ledger authority's :class:`AuthorityState` handles
them exactly as in a live mesh; the simulator only stands in for the network (a time-ordered
queue of deliveries) and for execution (each behaviour decides what output it commits to).

Behaviour classes:

* ``honest``: computes the true output, on time;
* ``colluding``: one group that shares a wrong output per task: as a worker it commits the
  group's output, as a verifier it commits the group's output too (so it approves a fellow
  colluder and rejects an honest worker);
* ``wrong``: computes a wrong output of its own (a broken or cheating executor);
* ``lazy``: a copier that does not execute: as a worker it returns another task's output, as
  a verifier it commits to a guess and then tries to reveal the worker's output, which does
  not open its commitment (its vote is refused);
* ``offline``: offers, then never answers;
* ``slow``: honest but takes longer than the ETA it offered (sometimes past the timeout).

Attackers of the protocol's own rules (issue 18; ``attackers`` spreads a fraction over them):

* ``unbonder``: cheats as a worker (a wrong output) and asks to unbond its whole stake the
  moment it is assigned, hoping the stake is gone before the slash;
* ``clock-liar``: honest output, but late (past its ETA), and it backdates its commitment by
  ten minutes to look on time: its commitments fall outside the authority's skew window;
* ``silent``: honest as a worker; as a verifier it never commits (saves an execution, hoping
  to force a dispute or be paid for nothing): penalised as a no-show at settlement.

Attackers of sampled verification (issue 19; ``malicious_class`` names the class the
``malicious`` fraction plays):

* ``trust-then-cheat``: honest for its first ``trust_tasks`` executions, then a wrong output
  every time it works (it hopes its record lowers its audit rate);
* ``lazy-auditor``: honest as a worker; as a verifier it approves without executing (under
  commit-reveal it must commit to a guess, whose verdict does not open: it counts as silent);
* ``sybil``: cheats every time; once slashed it walks away and rejoins under a fresh
  identity (a new key, a new bond and credential paid from its budget), at most
  ``sybil_identities`` times.

The report's ``slashed_by_class``, ``net_by_class`` (mean change of a peer's tokens: balance
and stake) and ``refused_by_class`` show what each class gained by its attack.

``--malicious F`` makes a fraction F of the peers ``colluding``; ``faulty`` spreads a further
fraction over ``wrong``, ``lazy``, ``offline`` and ``slow``.
"""

from __future__ import annotations

import hashlib
import heapq
import random
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Final, assert_never

import msgspec

from meshbench.core import reputation
from meshbench.core.encoding import CID, blob_cid
from meshbench.core.errors import MeshError
from meshbench.core.events import StakeRequest, StakeSlashed
from meshbench.core.identity import Identity
from meshbench.core.participant import Participant
from meshbench.core.policy import MeshPolicy
from meshbench.core.protocol import (
    AppendToLedger,
    AuthorityState,
    Broadcast,
    Command,
    Faucet,
    JudgeVerdict,
    RefereeResult,
    RefereeRun,
    RequestReveal,
    RequestVerdict,
    RunExecution,
    RunVerification,
    ScheduleTimeout,
    SealKey,
    TimeoutFired,
    VerdictJudgement,
)
from meshbench.core.quorum import binomial_wrong_accept_bound
from meshbench.core.types import (
    CapabilityScope,
    ComputeOffer,
    ExecutionSummary,
    HardwareProfile,
    PeerInfo,
    TaskIntent,
)
from meshbench.core.views import StaticPolicyView

__all__ = ["BEHAVIOURS", "SimConfig", "SimReport", "Simulation", "run_simulation"]

BEHAVIOURS: Final = ("honest", "colluding", "wrong", "lazy", "offline", "slow")
ATTACKERS: Final = ("unbonder", "clock-liar", "silent")
#: The attacker classes of the verification table (``meshbench sim --table``).
SAMPLING_ATTACKERS: Final = ("wrong", "trust-then-cheat", "colluding", "lazy-auditor", "sybil")
T0: Final = 1_700_000_000_000
WASM_CID: Final = blob_cid(b"\x00asm\x01\x00\x00\x00 meshbench sim module")
LATENCY_MS: Final = 20
_SUMMARY: Final = ExecutionSummary(fuel_used=1000, peak_memory_bytes=65536, wall_time_us=900)


@dataclass(frozen=True, kw_only=True)
class SimConfig:
    workers: int = 20
    malicious: float = 0.1
    faulty: float = 0.0
    #: a further fraction spread over the rule attackers (:data:`ATTACKERS`)
    attackers: float = 0.0
    tasks: int = 100
    verifiers: int = 3
    seed: int = 0
    publishers: int = 4
    offers_per_task: int = 3
    task_interval_ms: int = 200
    fee: int = 100
    #: the class the ``malicious`` fraction plays (``colluding`` by default)
    malicious_class: str = "colluding"
    #: ``trust-then-cheat``: honest executions before it cheats
    trust_tasks: int = 20
    #: ``sybil``: identities each sybil may use in all (its budget of bonds)
    sybil_identities: int = 5
    #: the bond each peer posts (default: twice the policy's minimum stake)
    bond: int = 0
    policy: MeshPolicy = field(default_factory=MeshPolicy)
    ledger: Any = None  # an open meshbench.store.ledger.Ledger, or None (books in memory)
    #: called with each batch of events the authority appends (frames, plots), or None
    observer: Any = None


@dataclass(kw_only=True)
class SimReport:
    tasks: int
    accepted: int
    wrong_accepted: int
    #: wrong results accepted and never clawed back (after every challenge window closed)
    finalized_wrong_accepted: int
    clawed_back: int
    audited: int
    referee_runs: int
    executions_per_accepted: float
    wrong_rejected: int
    refunded: int
    expired: int
    disputes: int
    executions_per_task: float
    tokens_before: int
    tokens_after: int
    reputation_by_class: dict[str, float]
    peers_by_class: dict[str, int]
    refused_messages: int
    refused_by_class: dict[str, int]
    slashed_by_class: dict[str, int]
    net_by_class: dict[str, float]
    wrong_accept_rate: float
    binomial_bound: float
    events: int
    seconds: float
    config: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Simulation:
    def __init__(self, cfg: SimConfig) -> None:
        self.cfg = cfg
        self.rng = random.Random(cfg.seed)
        self.now = T0
        self.queue: list[tuple[int, int, Any]] = []
        self._seq = 0
        self.authority = _ident(cfg.seed, "authority")
        self.federation = _ident(cfg.seed, "federation")
        self.ledger: Any = None
        self.state = AuthorityState(self.authority, policies=StaticPolicyView(cfg.policy))
        self.state.record_journal = False
        if cfg.ledger is not None:
            self.attach_ledger(cfg.ledger)
        n = max(1, cfg.workers)
        self.peers = [_ident(cfg.seed, f"peer{i}") for i in range(n)]
        self.publishers = [_ident(cfg.seed, f"pub{i}") for i in range(max(1, cfg.publishers))]
        self.by_did = {p.did: p for p in self.peers + self.publishers}
        self.nodes = {p.did: Participant(p) for p in self.peers}
        self.behaviour = self._assign_behaviours(n)
        self.colluders = {d for d, b in self.behaviour.items() if b == "colluding"}
        self.bond = self.cfg.bond or 2 * self.cfg.policy.bonding_requirements.min_stake
        self.truth: dict[CID, CID] = {}
        self.executions = 0
        self.referee_runs = 0
        self.worked: Counter[str] = Counter()
        self.generation: Counter[str] = Counter()
        self.retired: set[str] = set()
        self.refused = 0
        self.refused_by: Counter[str] = Counter()
        self.slashed_by: Counter[str] = Counter()
        self.events = 0
        self.disputed: set[CID] = set()
        self.start_holdings: dict[str, int] = {}
        self._root: dict[str, str] = {}
        self.joined_later = 0
        self.nonce = 0

    # --- setup ---
    def attach_ledger(self, ledger: Any) -> None:
        """Write every event (and the journal) to ``ledger``, an empty
        :class:`~meshbench.store.ledger.Ledger` of this simulation's authority. One Books:
        the state machine folds into the ledger's books and the ledger persists what changed."""
        if len(ledger) or self.state.books.minted():
            raise ValueError("attach an empty ledger before the simulation runs")
        self.ledger = ledger
        self.state = AuthorityState(
            self.authority, books=ledger.books, policies=StaticPolicyView(self.cfg.policy)
        )

    def _assign_behaviours(self, n: int) -> dict[str, str]:
        order = list(range(n))
        self.rng.shuffle(order)
        n_bad = round(self.cfg.malicious * n)
        n_faulty = round(self.cfg.faulty * n)
        n_attack = round(self.cfg.attackers * n)
        out = {}
        for rank, i in enumerate(order):
            if rank < n_bad:
                kind = self.cfg.malicious_class
            elif rank < n_bad + n_faulty:
                kind = ("wrong", "lazy", "offline", "slow")[(rank - n_bad) % 4]
            elif rank < n_bad + n_faulty + n_attack:
                kind = ATTACKERS[(rank - n_bad - n_faulty) % len(ATTACKERS)]
            else:
                kind = "honest"
            out[self.peers[i].did] = kind
        return out

    def genesis(self) -> None:
        for p in self.peers:
            self._join(p)
        for pub in self.publishers:
            self._feed(
                Faucet(account=pub.did, amount=self.cfg.fee * self.cfg.tasks + 1, memo="genesis")
            )

    def _join(self, p: Identity) -> None:
        """A peer enters the mesh: funded, bonded, announced."""
        self._feed(Faucet(account=p.did, amount=self.bond + 1000, memo="genesis"))
        req = StakeRequest(
            account=p.did,
            federation=self.federation.did,
            action="bond",
            amount=self.bond,
            timestamp=self.now,
        ).sign(p)
        self._feed(req)
        info = PeerInfo(
            did=p.did,
            federation=self.federation.did,
            hardware=HardwareProfile(memory_mb=4096),
            updated_at=self.now,
        ).sign(p)
        self._feed(info)

    def _rejoin(self, did: str) -> None:
        """A caught sybil walks away and comes back under a fresh identity (budget allowing)."""
        if did in self.retired:
            return
        root = self._root.get(did, did)
        if self.generation[root] + 1 >= self.cfg.sybil_identities:
            return
        self.generation[root] += 1
        self.retired.add(did)
        fresh = _ident(self.cfg.seed, f"{root}/sybil{self.generation[root]}")
        self._root[fresh.did] = root
        self.peers = [p for p in self.peers if p.did != did] + [fresh]
        self.by_did[fresh.did] = fresh
        self.nodes[fresh.did] = Participant(fresh)
        self.behaviour[fresh.did] = "sybil"
        self._join(fresh)
        self.joined_later += self.bond + 1000  # the sybil's budget: new tokens, counted
        self.start_holdings[fresh.did] = self._holdings(fresh.did)

    # --- the loop ---
    def push(self, at: int, item: Any) -> None:
        self._seq += 1
        heapq.heappush(self.queue, (at, self._seq, item))

    def run(self) -> SimReport:
        started = time.perf_counter()
        self.genesis()
        tokens_before = self.state.books.token_total()
        self.start_holdings = {d: self._holdings(d) for d in self.behaviour}
        for i in range(self.cfg.tasks):
            self.push(self.now + i * self.cfg.task_interval_ms, ("publish", i))
        while self.queue:
            at, _, item = heapq.heappop(self.queue)
            self.now = max(self.now, at)
            if isinstance(item, tuple) and item[0] == "publish":
                self._publish(item[1])
            elif callable(item):
                obj = item()
                if obj is not None:
                    self._feed(obj)
            else:
                self._feed(item)
        self.state.books.check_conservation()
        return self._report(tokens_before, time.perf_counter() - started)

    def _feed(self, stimulus: Any) -> None:
        try:
            commands = self.state.handle(stimulus, self.now)
        except MeshError:
            self.refused += 1
            signer = getattr(stimulus, "signer", None)
            self.refused_by[self.behaviour.get(signer or "", "authority")] += 1
            return
        if self.ledger is not None:
            self.ledger.journal(self.state.take_journal())
        for cmd in commands:
            self._carry_out(cmd)

    def _carry_out(self, cmd: Command) -> None:
        match cmd:
            case AppendToLedger():
                self.events += len(cmd.events)
                for ev in cmd.events:
                    if isinstance(ev, StakeSlashed):
                        kind = self.behaviour.get(ev.account, "other")
                        self.slashed_by[kind] += ev.amount
                        if kind == "sybil" and ev.offence == "wrong_result":
                            self.push(self.now + 1, lambda d=ev.account: self._rejoin(d))
                if self.cfg.observer is not None:
                    self.cfg.observer(*cmd.events)
                if self.ledger is not None:
                    self.ledger.persist(
                        *cmd.events, changes=cmd.changes
                    )  # folded once, by the state machine
            case ScheduleTimeout():
                fired = TimeoutFired(task_cid=cmd.task_cid, stage=cmd.stage, token=cmd.token)
                self.push(cmd.at, fired)
            case Broadcast():
                if isinstance(cmd.obj, TaskIntent):
                    self._offers(cmd.obj)
            case RunExecution():
                self._execute(cmd.task, cmd.worker, cmd.worker, is_worker=True)
            case RunVerification():
                self._execute(cmd.task, cmd.verifier, cmd.assignment.worker, is_worker=False)
            case RequestReveal():
                self._reveal(cmd.task_cid, cmd.worker)
            case RequestVerdict():
                self._verdict(cmd)
            case JudgeVerdict():
                # the simulator's outputs are CIDs without bytes: a differing output is judged
                # as the validator would judge unrelated bytes (disagreeing)
                judged = VerdictJudgement(
                    task_cid=cmd.task_cid, verifier=cmd.verifier, approved=False, reason="differ"
                )
                self.push(self.now, judged)
            case RefereeRun():  # the authority re-executes: the true output
                self.executions += 1
                self.referee_runs += 1
                truth = self.truth[cmd.task.cid]
                ruling = RefereeResult(
                    task_cid=cmd.task.cid,
                    confirmed=cmd.receipt.output_cid == truth,
                    output=str(truth),
                )
                self.push(self.now + 1_000, ruling)
            case SealKey():
                pass  # keys are sealed by the runtime's blob store; nothing to simulate
            case _:
                assert_never(cmd)

    # --- publishers and workers ---
    def _holdings(self, did: str) -> int:
        """Tokens ``did`` holds: its balance and its stake (bonded and unbonding)."""
        return self.state.books.balance(did) + self.state.books.slashable(did)

    def _publish(self, i: int) -> None:
        pub = self.publishers[i % len(self.publishers)]
        data = f"sim-input-{self.cfg.seed}-{i}".encode()
        task = TaskIntent(
            publisher=pub.did,
            federation=self.federation.did,
            wasm_cid=WASM_CID,
            input_cid=blob_cid(data),
            fee=self.cfg.fee,
            verifier_count=self.cfg.verifiers,
            scope=CapabilityScope(),
            created_at=self.now,
            deadline=self.now + 2 * 3600 * 1000,
            nonce=i,
        ).sign(pub)
        self.truth[task.cid] = blob_cid(hashlib.sha256(b"true" + bytes(task.cid)).digest())
        self._feed(task)

    def _offers(self, task: TaskIntent) -> None:
        policy = self.cfg.policy
        lo, hi = policy.min_fee_for(task.scope), task.fee
        k = min(self.cfg.offers_per_task, len(self.peers))
        for p in self.rng.sample(self.peers, k):
            offer = ComputeOffer(
                task_cid=task.cid,
                worker=p.did,
                federation=self.federation.did,
                cost=self.rng.randint(lo, hi),
                eta_ms=2_000,
                hardware=HardwareProfile(memory_mb=4096),
                created_at=self.now,
            ).sign(p)
            self.push(self.now + LATENCY_MS, offer)

    def _output_for(self, task: TaskIntent, did: str, worker: str, is_worker: bool) -> CID:
        kind = self.behaviour[did]
        truth = self.truth[task.cid]
        if kind in ("honest", "slow", "offline", "clock-liar", "silent", "lazy-auditor"):
            return truth
        if kind == "trust-then-cheat":
            if not is_worker or self.worked[did] <= self.cfg.trust_tasks:
                return truth
            return blob_cid(hashlib.sha256(b"wrong" + did.encode() + bytes(task.cid)).digest())
        if kind == "sybil":
            if not is_worker:
                return truth
            return blob_cid(hashlib.sha256(b"sybil" + bytes(task.cid)).digest())
        if kind == "colluding":
            return blob_cid(hashlib.sha256(b"colluders" + bytes(task.cid)).digest())
        if kind in ("wrong", "unbonder"):
            return blob_cid(hashlib.sha256(b"wrong" + did.encode() + bytes(task.cid)).digest())
        # lazy: copies something it did not compute (another task's output)
        return blob_cid(hashlib.sha256(b"lazy-guess" + bytes(task.cid)).digest())

    def _execute(self, task: TaskIntent, did: str, worker: str, *, is_worker: bool) -> None:
        kind = self.behaviour[did]
        if kind == "offline" or (kind == "silent" and not is_worker) or did in self.retired:
            return
        if is_worker:
            self.worked[did] += 1
        if kind == "lazy-auditor" and not is_worker:  # approves without executing
            node = self.nodes[did]
            node.forget(task.cid)
            guess = blob_cid(hashlib.sha256(b"lazy-guess" + bytes(task.cid)).digest())
            self.push(self.now + 100, node.commit(task.cid, guess, self.now, summary=_SUMMARY))
            return
        if kind != "lazy":
            self.executions += 1
        if kind == "unbonder" and is_worker:  # take the stake out before the verdicts
            self.nonce += 1
            unbond = StakeRequest(
                account=did,
                federation=self.federation.did,
                action="unbond",
                amount=self.state.books.bonded(did),
                nonce=self.nonce,
                timestamp=self.now,
            ).sign(self.by_did[did])
            self.push(self.now + LATENCY_MS, unbond)
        output = self._output_for(task, did, worker, is_worker)
        delay = 1_000
        if kind == "slow":
            delay = self.rng.choice((3_000, 3_000, 40 * 60 * 1000))  # late, or past the timeout
        stamp = self.now + delay
        if kind == "clock-liar":  # late, and backdated to look on time
            delay, stamp = 3_000, self.now - 600_000
        node = self.nodes[did]
        node.forget(task.cid)  # a reassigned task may come back to a node
        commit = node.commit(task.cid, output, stamp, summary=_SUMMARY)
        self.push(self.now + delay, commit)

    def _reveal(self, task_cid: CID, worker: str) -> None:
        try:
            receipt = self.nodes[worker].reveal(task_cid, self.now)
        except MeshError:
            return
        self.push(self.now + LATENCY_MS, receipt)

    def _verdict(self, cmd: RequestVerdict) -> None:
        did = cmd.verifier
        try:
            vr = self.nodes[did].verdict(cmd.task_cid, cmd.receipt, self.now)
        except MeshError:
            return
        if self.behaviour[did] in ("lazy", "lazy-auditor"):  # copies the output: will not open
            vr = msgspec.structs.replace(
                vr, output_cid=cmd.receipt.output_cid, approved=True, signature=b""
            ).sign(self.by_did[did])
        self.push(self.now + LATENCY_MS, vr)

    # --- results ---
    def _report(self, tokens_before: int, seconds: float) -> SimReport:
        books = self.state.books
        outcomes: Counter[str] = Counter()
        wrong_accepted = wrong_rejected = disputes = 0
        finalized = clawed = 0
        for cid, rec in self.state.tasks.items():
            row = books.task(cid) or {}
            outcome = row.get("outcome") or ("Expired" if row.get("state") == "Settled" else "Open")
            outcomes[outcome] += 1
            disputes += rec.disputed
            clawed += bool(row.get("clawed_back"))
            if outcome in ("Accepted", "Rejected") and rec.receipt is not None:
                right = rec.receipt.output_cid == self.truth[cid]
                wrong_accepted += outcome == "Accepted" and not right
                finalized += outcome == "Accepted" and not right and not row.get("clawed_back")
                wrong_rejected += outcome == "Rejected" and right
        by_class: dict[str, list[float]] = defaultdict(list)
        net: dict[str, list[int]] = defaultdict(list)
        for did, kind in self.behaviour.items():
            rec = books.reputation_record(did)
            by_class[kind].append(reputation.decayed(rec, self.now, self.cfg.policy))
            net[kind].append(self._holdings(did) - self.start_holdings.get(did, 0))
        n_tasks = max(1, len(self.state.tasks))
        accepted = outcomes["Accepted"]
        first = min(
            max(self.cfg.verifiers, self.cfg.policy.verification_quorum.minimum_verifiers),
            self.cfg.policy.verification_quorum.maximum_verifiers,
        )
        skip = ("policy", "ledger", "observer")
        cfg = {k: v for k, v in self.cfg.__dict__.items() if k not in skip}
        return SimReport(
            tasks=len(self.state.tasks),
            accepted=accepted,
            wrong_accepted=wrong_accepted,
            finalized_wrong_accepted=finalized,
            clawed_back=clawed,
            audited=sum(1 for r in self.state.tasks.values() if r.adaptive and r.verifiers),
            referee_runs=self.referee_runs,
            executions_per_accepted=round(self.executions / max(1, accepted), 4),
            wrong_rejected=wrong_rejected,
            refunded=len(self.state.tasks) - accepted,
            expired=outcomes["Expired"],
            disputes=disputes,
            executions_per_task=round(self.executions / n_tasks, 3),
            tokens_before=tokens_before + self.joined_later,
            tokens_after=books.token_total(),
            reputation_by_class={k: round(sum(v) / len(v), 4) for k, v in sorted(by_class.items())},
            peers_by_class=dict(sorted(Counter(self.behaviour.values()).items())),
            refused_messages=self.refused,
            refused_by_class=dict(sorted(self.refused_by.items())),
            slashed_by_class=dict(sorted(self.slashed_by.items())),
            net_by_class={k: round(sum(v) / len(v), 2) for k, v in sorted(net.items())},
            wrong_accept_rate=round(wrong_accepted / n_tasks, 6),
            binomial_bound=round(
                binomial_wrong_accept_bound(self.cfg.malicious, self.cfg.policy, first), 6
            ),
            events=self.events,
            seconds=round(seconds, 3),
            config=cfg,
        )


def _ident(seed: int, name: str) -> Identity:
    return Identity.from_seed(hashlib.sha256(f"meshbench-sim/{seed}/{name}".encode()).digest())


def run_simulation(cfg: SimConfig) -> SimReport:
    return Simulation(cfg).run()
