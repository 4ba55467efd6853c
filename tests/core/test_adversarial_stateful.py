"""Issue 18: a stateful adversarial test of the protocol core (hypothesis RuleBasedStateMachine).

Honest and adversarial actors interleave publishing, offers, commitments (right and wrong,
with lying clocks), reveals, verdicts, unbonding and withdrawals, governance votes with
arbitrary timestamps, policy changes mid-task, replays, out-of-role messages, restarts
(restore from the recorded journal) and timers. After every step the invariants hold:

* tokens are conserved, and a refused stimulus changes nothing;
* nobody is paid for work it did not do (a worker payout goes to the task's assigned worker
  after it revealed; a verifier payout to a verifier that voted with the quorum);
* stake that backs an open task never leaves (only slashes take from it);
* a task settles under the policy its assignment pinned;
* no proposal is activated without the approvals required of the electorate fixed when it
  was accepted, and only members of that electorate voted;
* no participant timestamp beyond the skew window was accepted;
* restore then continue equals never restarting (same books, same events).

Bounded in CI (``MESHBENCH_SOAK`` unset: 60 runs of up to 50 steps); ``make soak`` runs it
longer.
"""

from __future__ import annotations

import os

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from meshbench.core.books import Books
from meshbench.core.errors import MeshError
from meshbench.core.events import (
    MeshPolicyActivated,
    RewardDistributed,
    StakeSlashed,
    TaskAssigned,
)
from meshbench.core.governance import activation_for, clock_stamp, proposals
from meshbench.core.model import Model, Signed
from meshbench.core.policy import MAX_CLOCK_SKEW_MS, MeshPolicyFragment
from meshbench.core.protocol import AppendToLedger, AuthorityState, RefereeResult, TimeoutFired
from meshbench.core.types import ExecutionReceipt, VerificationReceipt
from meshbench.testing.governance import admit, create_federation, propose, vote
from meshbench.testing.protocol import ProtocolHarness, output_cid

SOAK = bool(os.environ.get("MESHBENCH_SOAK"))
GOOD, BAD = output_cid("good"), output_cid("bad")
SKEWS = st.sampled_from([0, 0, 0, 30_000, -30_000, 10 * 60_000, -3_600_000])
FRAGMENTS = [
    # sampled audits (issue 19): switched on and off mid-run, tasks pin whichever was active
    MeshPolicyFragment(
        updates={"audit": {"enabled": True, "rate_ppm": 500_000, "probation_tasks": 1}}
    ),
    MeshPolicyFragment(updates={"audit": {"enabled": False}}),
    MeshPolicyFragment(updates={"min_fee": 5}),
    MeshPolicyFragment(updates={"min_fee": 40}),
    MeshPolicyFragment(
        updates={
            "reward_settings": {
                "worker_percentage": 10,
                "verifier_percentage": 10,
                "platform_fee_percentage": 80,
            }
        }
    ),
]


class AdversarialMesh(RuleBasedStateMachine):
    @initialize(sampled=st.booleans())
    def start(self, sampled: bool) -> None:
        self.h = ProtocolHarness(peers=6)
        # the policy comes from the ledger (the node's default view), so a restart replays
        # the journal under exactly the policies that were active then
        self.h.state = self._restored()
        self.tasks: list = []
        self.accepted: list[Model] = []  # signed stimuli the authority accepted (to replay)
        self.events: list[Model] = []
        self.revealed: set[tuple[str, str]] = set()
        # a governed federation in the authority's books (members: the first four peers)
        books = self.h.state.books
        self.fed = self.h.federation
        self._apply(create_federation(self.fed, self.h.authority, now_ms=self.h.now))
        for p in self.h.peers[:4]:
            self._apply(admit(self.fed, p.did, now_ms=self.h.now))
        self.proposal = None
        assert books.get("federations", self.fed.did) is not None
        if sampled:  # sampled audits from the start (issue 19), by the members' own vote
            self._govern(FRAGMENTS[0], self.h.peers[:3])
            assert books.policy_for(self.fed.did).audit.enabled

    def _govern(self, frag: MeshPolicyFragment, voters: list) -> None:
        books, auth = self.h.state.books, self.h.authority
        ev = propose(books, self.fed.did, voters[0], frag, description="x", now_ms=self.h.now)
        self._apply(clock_stamp(books, auth, (ev,), self.h.now), ev)
        for member in voters:
            ballot = vote(ev, member, approve=True, now_ms=self.h.now)
            self._apply(clock_stamp(books, auth, (ballot,), self.h.now), ballot)
        for row in proposals(books, self.fed.did):
            if row["status"] == "Approved":
                self._apply(activation_for(books, row["cid"], auth, books.ledger_time()))

    # --- plumbing ------------------------------------------------------------------------
    def _apply(self, *events: Model) -> bool:
        """Governance events straight into the books (all or nothing)."""
        before = self.h.state.books.tables()
        try:
            self.h.state.books.apply(*events)
        except MeshError:
            assert self.h.state.books.tables() == before
            return False
        self.events += events
        self.h.history += list(events)
        return True

    def _feed(self, stimulus: object) -> bool:
        books = self.h.state.books
        before = books.tables()
        backing = {d: books.slashable(d) for d in books.table("backing")}
        try:
            cmds = self.h.feed(stimulus)
        except MeshError:
            assert books.tables() == before, "a refused stimulus changed the books"
            return False
        new = [e for c in cmds if isinstance(c, AppendToLedger) for e in c.events]
        self.events += new
        slashed: dict[str, int] = {}
        for e in new:
            if isinstance(e, StakeSlashed):
                slashed[e.account] = slashed.get(e.account, 0) + e.amount
        for did, had in backing.items():  # stake that backed an open task did not leave
            assert books.slashable(did) >= had - slashed.get(did, 0), did
        if isinstance(stimulus, Signed):
            self.accepted.append(stimulus)
            stamp = getattr(stimulus, "created_at", None)
            if stamp is not None:
                assert abs(stamp - self.h.now) <= MAX_CLOCK_SKEW_MS
        return True

    def _restored(self) -> AuthorityState:
        state = AuthorityState(self.h.authority)  # policies: BooksPolicyView of its own books
        state.restore(list(self.h.history), self.h.now)
        return state

    def _open(self) -> list:
        return [t for t in self.tasks if self.h.state.state_of(t.cid) != "Settled"]

    # --- publishers and workers ------------------------------------------------------------
    @rule(fee=st.integers(min_value=40, max_value=300), skew=SKEWS)
    def publish(self, fee: int, skew: int) -> None:
        self.h.now += skew
        task = self.h.task(fee=fee)
        self.h.now -= skew
        if self._feed(task):
            self.tasks.append(task)

    @precondition(lambda self: self.tasks)
    @rule(data=st.data(), share=st.sampled_from([0.3, 0.6, 1.0, 1.5]), skew=SKEWS)
    def offer(self, data: st.DataObject, share: float, skew: int) -> None:
        task = data.draw(st.sampled_from(self._open() or self.tasks))
        peer = data.draw(st.sampled_from(self.h.peers))
        cost = max(1, int(task.fee * share))  # above the fee at 1.5: refused
        self.h.now += skew
        obj = self.h.offer(task, peer, cost=cost)
        self.h.now -= skew
        self._feed(obj)

    @precondition(lambda self: self.tasks)
    @rule(data=st.data(), honest=st.booleans(), skew=SKEWS)
    def commit(self, data: st.DataObject, honest: bool, skew: int) -> None:
        """Anyone may try to commit for any task (out-of-role attempts are refused)."""
        task = data.draw(st.sampled_from(self._open() or self.tasks))
        rec = self.h.state.tasks.get(task.cid)
        parties = [rec.assignment.worker, *rec.verifiers] if rec and rec.assignment else []
        outsiders = [p.did for p in self.h.peers]
        did = data.draw(st.sampled_from(parties or outsiders) if data.draw(st.booleans())
                        else st.sampled_from(outsiders))  # fmt: skip
        self.h.now += skew
        obj = self.h.commit(task, did, GOOD if honest else BAD)
        self.h.now -= skew
        self._feed(obj)

    @precondition(lambda self: self.tasks)
    @rule(data=st.data(), honest=st.booleans())
    def reveal(self, data: st.DataObject, honest: bool) -> None:
        task = data.draw(st.sampled_from(self._open() or self.tasks))
        rec = self.h.state.tasks.get(task.cid)
        who = (
            rec.assignment.worker
            if rec is not None and rec.assignment and data.draw(st.booleans())
            else data.draw(st.sampled_from(self.h.peers)).did
        )
        receipt = self.h.receipt(task, who, GOOD if honest else BAD)
        if self._feed(receipt):
            self.revealed.add((str(task.cid), who))

    @precondition(lambda self: self.tasks)
    @rule(data=st.data(), honest=st.booleans())
    def verdict(self, data: st.DataObject, honest: bool) -> None:
        task = data.draw(st.sampled_from(self._open() or self.tasks))
        rec = self.h.state.tasks.get(task.cid)
        if rec is None or rec.receipt is None:
            return
        voters = [v for v in rec.verifiers if v in rec.commitments] or [self.h.peers[0].did]
        did = data.draw(st.sampled_from([*voters, self.h.peers[0].did]))
        self._feed(self.h.verdict(task, did, GOOD if honest else BAD, rec.receipt))

    @rule(
        data=st.data(),
        worker_cheats=st.booleans(),
        colluders=st.integers(0, 3),
        silent=st.integers(0, 2),
        unbond_after_assignment=st.booleans(),
    )
    def whole_task(
        self,
        data: st.DataObject,
        worker_cheats: bool,
        colluders: int,
        silent: int,
        unbond_after_assignment: bool,
    ) -> None:
        """A task's whole life with adversarial choices: a cheating worker, colluding or
        silent verifiers, a worker that unbonds right after it was assigned."""
        h = self.h
        task = h.task(fee=100)
        if not self._feed(task):
            return
        self.tasks.append(task)
        for peer in data.draw(st.permutations(h.peers))[:3]:
            self._feed(h.offer(task, peer, cost=60))
        h.advance(5_000)
        rec = h.state.tasks[task.cid]
        token = rec.timers.get("offers")
        if token is None or not self._feed(
            TimeoutFired(task_cid=task.cid, stage="offers", token=token)
        ):
            return
        if rec.assignment is None:
            return
        a = rec.assignment
        if unbond_after_assignment:
            self._feed(h.stake(h.by_did[a.worker], "unbond", 200))
        wrong = BAD if worker_cheats else GOOD
        self._feed(h.commit(task, a.worker, wrong))
        outputs = {}
        for i, v in enumerate(rec.verifiers):  # the quorum, or the auditors drawn at commit
            if i < silent:
                continue
            outputs[v] = wrong if i < colluders else GOOD
            self._feed(h.commit(task, v, outputs[v]))
        if not rec.commit_closed and "verification" in rec.timers:  # silent ones: the timer
            h.advance(15 * 60 * 1000)
            fired = TimeoutFired(
                task_cid=task.cid, stage="verification", token=rec.timers["verification"]
            )
            self._feed(fired)
        if rec.commit_closed and rec.receipt is None:
            receipt = h.receipt(task, a.worker, wrong)
            if self._feed(receipt):
                for v, out in outputs.items():
                    self._feed(h.verdict(task, v, out, receipt))
        if rec.refereeing:  # sampled audits: a mismatch went to the referee, who is right
            self._feed(RefereeResult(task_cid=task.cid, confirmed=not worker_cheats))
        for t in self.tasks:  # the caught worker's held results, re-checked
            other = h.state.tasks[t.cid]
            if other.rechecking and other.receipt is not None:
                self._feed(
                    RefereeResult(task_cid=t.cid, confirmed=other.receipt.output_cid == GOOD)
                )

    @rule(data=st.data(), truthful=st.booleans())
    def referee(self, data: st.DataObject, truthful: bool) -> None:
        """The authority's runtime answers a referee run (or a re-check of a held result);
        an answer nobody asked for is refused."""
        waiting = [
            t for t in self.tasks
            if (r := self.h.state.tasks.get(t.cid)) is not None and (r.refereeing or r.rechecking)
        ]  # fmt: skip
        task = data.draw(st.sampled_from(waiting or self.tasks)) if self.tasks else None
        if task is None:
            return
        rec = self.h.state.tasks[task.cid]
        right = rec.receipt is not None and rec.receipt.output_cid == GOOD
        ruling = RefereeResult(task_cid=task.cid, confirmed=right if truthful else not right)
        accepted = self._feed(ruling)
        assert accepted or task not in waiting or not (rec.refereeing or rec.rechecking)

    @rule(data=st.data(), action=st.sampled_from(["unbond", "withdraw", "bond"]))
    def stake(self, data: st.DataObject, action: str) -> None:
        peer = data.draw(st.sampled_from(self.h.peers))
        amount = data.draw(st.sampled_from([10, 50, 250]))  # 250: more than is bonded
        self._feed(self.h.stake(peer, action, amount))

    # --- time, timers, policy, replays, restarts ------------------------------------------------
    @rule(ms=st.sampled_from([1_000, 5_000, 5_000, 5_000, 5_000, 60_000, 16 * 60_000, 31 * 60_000]))
    def advance_and_fire(self, ms: int) -> None:
        self.h.advance(ms)
        for task in self.tasks:  # open tasks, and settled ones' challenge windows
            rec = self.h.state.tasks[task.cid]
            for stage, token in sorted(rec.timers.items()):
                self._feed(TimeoutFired(task_cid=task.cid, stage=stage, token=token))

    @precondition(lambda self: self.accepted)
    @rule(data=st.data())
    def replay(self, data: st.DataObject) -> None:
        obj = data.draw(st.sampled_from(self.accepted))
        assert not self._feed(obj), f"a replayed {type(obj).__name__} was accepted"

    @rule()
    def restart(self) -> None:
        old = self.h.state
        restored = self._restored()
        assert restored.books.tables() == old.books.tables()
        for cid, rec in old.tasks.items():
            assert restored.tasks[cid].state == rec.state
            assert restored.tasks[cid].timers == rec.timers
        self.h.state = restored

    # --- governance with lying clocks -------------------------------------------------------
    @rule(data=st.data(), skew=SKEWS)
    def propose_or_vote(self, data: st.DataObject, skew: int) -> None:
        books, auth = self.h.state.books, self.h.authority
        member = data.draw(st.sampled_from(self.h.peers))  # members and outsiders alike
        claimed = self.h.now + skew
        if self.proposal is None or data.draw(st.booleans()):
            frag = data.draw(st.sampled_from(FRAGMENTS))  # payouts change mid-task too
            ev = propose(books, self.fed.did, member, frag, description="x", now_ms=claimed)
        else:
            ev = vote(self.proposal, member, approve=data.draw(st.booleans()), now_ms=claimed)
        stamp = clock_stamp(books, auth, (ev,), self.h.now)
        assert stamp is not None
        if self._apply(stamp, ev) and type(ev).__name__ == "MeshPolicyProposal":
            self.proposal = ev
        for row in proposals(books, self.fed.did):
            if row["status"] == "Approved":
                self._apply(activation_for(books, row["cid"], auth, books.ledger_time()))

    # --- invariants ------------------------------------------------------------------------
    @invariant()
    def tokens_are_conserved(self) -> None:
        if hasattr(self, "h"):
            self.h.state.books.check_conservation()

    @invariant()
    def nobody_is_paid_for_work_it_did_not_do(self) -> None:
        if not hasattr(self, "h"):
            return
        assigned: dict[str, TaskAssigned] = {}
        voted: dict[str, set[str]] = {}
        revealed: dict[str, str] = {}
        for e in self.events:
            if isinstance(e, TaskAssigned):
                assigned[str(e.task_cid)] = e
            elif isinstance(e, ExecutionReceipt):
                revealed[str(e.task_cid)] = e.worker
            elif isinstance(e, VerificationReceipt):
                voted.setdefault(str(e.task_cid), set()).add(e.verifier)
            elif isinstance(e, RewardDistributed):
                key = str(e.task_cid)
                for p in e.payouts:
                    if p.role in ("worker", "held"):
                        assert revealed.get(key) == p.account == assigned[key].worker
                    elif p.role == "verifier":
                        assert p.account in voted.get(key, set())
                pinned = assigned.get(key)
                if pinned is not None and pinned.policy_cid is not None:
                    assert e.policy_cid == pinned.policy_cid  # the pinned policy settles

    @invariant()
    def no_activation_without_the_electorates_quorum(self) -> None:
        if not hasattr(self, "h"):
            return
        books: Books = self.h.state.books
        for e in self.events:
            if isinstance(e, MeshPolicyActivated) and e.proposal_cid is not None:
                row = books.get("proposals", str(e.proposal_cid))
                assert len(row["approvals"]) >= row["required"]
                assert set(row["approvals"]) <= set(row["electorate"])


AdversarialMesh.TestCase.settings = settings(
    max_examples=400 if SOAK else 60,
    stateful_step_count=80 if SOAK else 50,
    deadline=None,
)
test_adversarial_mesh = AdversarialMesh.TestCase
