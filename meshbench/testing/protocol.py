"""A step-by-step driver of the protocol state machine, for tests and notebooks.

:class:`ProtocolHarness` holds a ledger authority's :class:`AuthorityState`, a federation, a
publisher and funded, bonded peers, and makes correctly signed participant objects on
demand; the caller decides what is delivered and when (``now`` is a manual clock).
"""

from __future__ import annotations

import hashlib
from typing import Any

from meshbench.core.audit import SettlementAuditor
from meshbench.core.books import Books
from meshbench.core.encoding import CID, blob_cid
from meshbench.core.events import StakeRequest, TaskAssigned
from meshbench.core.identity import Identity
from meshbench.core.model import Model
from meshbench.core.policy import MeshPolicy
from meshbench.core.protocol import (
    AppendToLedger,
    AuthorityState,
    Command,
    Faucet,
    Journaled,
    TimeoutFired,
)
from meshbench.core.types import (
    CapabilityScope,
    ComputeOffer,
    ExecutionReceipt,
    ExecutionSummary,
    HardwareProfile,
    PeerInfo,
    ResultCommitment,
    TaskIntent,
    VerificationReceipt,
    result_commitment,
)
from meshbench.core.views import MembershipView, PolicyView, StaticPolicyView
from meshbench.testing.factories import T0, make_identity

__all__ = ["ProtocolHarness", "output_cid"]


def output_cid(label: str) -> CID:
    """A deterministic output CID for tests (``"good"``, ``"bad"``, ...)."""
    return blob_cid(hashlib.sha256(label.encode()).digest())


class ProtocolHarness:
    def __init__(
        self,
        *,
        peers: int = 8,
        policy: MeshPolicy | None = None,
        policies: PolicyView | None = None,
        membership: MembershipView | None = None,
        fund: int = 1_000,
        bond: int = 200,
        publisher_funds: int = 10_000,
        forget_settled: bool = False,
    ) -> None:
        self.now = T0
        self.authority = make_identity(1000)
        self.federation = make_identity(1001)
        self.publisher = make_identity(1002)
        self.peers = [make_identity(2000 + i) for i in range(peers)]
        self.by_did = {p.did: p for p in [*self.peers, self.publisher]}
        self.policies = policies or StaticPolicyView(policy or MeshPolicy())
        self.state = AuthorityState(
            self.authority,
            policies=self.policies,
            membership=membership,
            forget_settled=forget_settled,
        )
        self.log: list[Command] = []
        #: the ledger as the node would write it: journalled stimuli and events, in order
        self.history: list[Journaled | Model] = []
        self._nonce = 0
        if publisher_funds:
            self.feed(Faucet(account=self.publisher.did, amount=publisher_funds))
        for p in self.peers:
            if fund:
                self.feed(Faucet(account=p.did, amount=fund))
            if bond:
                self.feed(self.stake(p, "bond", bond))
            self.feed(
                PeerInfo(
                    did=p.did,
                    federation=self.federation.did,
                    hardware=HardwareProfile(memory_mb=4096),
                    updated_at=self.now,
                ).sign(p)
            )

    # --- delivery -------------------------------------------------------------------------
    def feed(self, event: Any) -> list[Command]:
        out = self.state.handle(event, self.now)
        self.log += out
        self.history += self.state.take_journal()
        self.history += [e for c in out if isinstance(c, AppendToLedger) for e in c.events]
        return out

    def appended(self, kind: type | None = None) -> list[Any]:
        """Every event the authority appended so far (of type ``kind``), in order."""
        events = [e for c in self.log if isinstance(c, AppendToLedger) for e in c.events]
        return events if kind is None else [e for e in events if isinstance(e, kind)]

    def audit(
        self, events: list[Any] | None = None, *, policies: tuple[MeshPolicy, ...] = ()
    ) -> SettlementAuditor:
        """The settlement auditor (what ``ledger verify`` runs) over ``events`` (default: all
        appended so far), with ``policies`` known as if activated in the ledger."""
        auditor, books = SettlementAuditor(), Books(self.authority.did)
        for p in policies:
            auditor.policies[str(p.cid)] = p
        for e in self.appended() if events is None else events:
            auditor.before(e, books)
            books.apply(e)
        return auditor

    def advance(self, ms: int) -> None:
        self.now += ms

    def fire(self, task: TaskIntent, stage: str) -> list[Command]:
        token = self.state.tasks[task.cid].timers[stage]
        return self.feed(TimeoutFired(task_cid=task.cid, stage=stage, token=token))  # type: ignore[arg-type]

    # --- participants' objects -------------------------------------------------------------
    def stake(self, who: Identity, action: str, amount: int, token: str = "ICN") -> StakeRequest:
        self._nonce += 1
        return StakeRequest(
            account=who.did,
            federation=self.federation.did,
            action=action,  # type: ignore[arg-type]
            amount=amount,
            token=token,
            nonce=self._nonce,
            timestamp=self.now,
        ).sign(who)

    def task(
        self, *, fee: int = 100, verifiers: int = 3, nonce: int | None = None, **kw: Any
    ) -> TaskIntent:
        self._nonce += 1
        fields: dict[str, Any] = {
            "publisher": self.publisher.did,
            "federation": self.federation.did,
            "wasm_cid": blob_cid(b"\x00asm\x01\x00\x00\x00"),
            "input_cid": blob_cid(b"input"),
            "fee": fee,
            "verifier_count": verifiers,
            "scope": CapabilityScope(),
            "created_at": self.now,
            "deadline": self.now + 3600 * 1000,
            "nonce": self._nonce if nonce is None else nonce,
        }
        fields.update(kw)
        return TaskIntent(**fields).sign(self.by_did.get(fields["publisher"], self.publisher))

    def offer(
        self,
        task: TaskIntent,
        who: Identity,
        *,
        cost: int = 50,
        eta_ms: int = 2_000,
        hardware: HardwareProfile | None = None,
    ) -> ComputeOffer:
        return ComputeOffer(
            task_cid=task.cid,
            worker=who.did,
            federation=self.federation.did,
            cost=cost,
            eta_ms=eta_ms,
            hardware=hardware or HardwareProfile(memory_mb=4096),
            created_at=self.now,
        ).sign(who)

    def salt(self, did: str, task: TaskIntent) -> bytes:
        return hashlib.sha256(did.encode() + bytes(task.cid)).digest()[:16]

    def commit(self, task: TaskIntent, did: str, output: CID) -> ResultCommitment:
        return ResultCommitment(
            task_cid=task.cid,
            worker=did,
            commitment=result_commitment(task.cid, did, output, self.salt(did, task)),
            created_at=self.now,
        ).sign(self.by_did[did])

    def receipt(
        self, task: TaskIntent, did: str, output: CID, score: float = 1.0
    ) -> ExecutionReceipt:
        salt = self.salt(did, task)
        return ExecutionReceipt(
            task_cid=task.cid,
            worker=did,
            output_cid=output,
            result_commitment=result_commitment(task.cid, did, output, salt),
            salt=salt,
            summary=ExecutionSummary(
                fuel_used=10, peak_memory_bytes=1, wall_time_us=1, contribution_score=score
            ),
            created_at=self.now,
        ).sign(self.by_did[did])

    def verdict(
        self, task: TaskIntent, did: str, output: CID, receipt: ExecutionReceipt
    ) -> VerificationReceipt:
        return VerificationReceipt(
            task_cid=task.cid,
            receipt_cid=receipt.cid,
            verifier=did,
            approved=output == receipt.output_cid,
            output_cid=output,
            salt=self.salt(did, task),
            created_at=self.now,
        ).sign(self.by_did[did])

    # --- whole phases ------------------------------------------------------------------------
    def publish_and_assign(
        self, *, fee: int = 100, cost: int = 50, worker: Identity | None = None, **kw: Any
    ) -> tuple[TaskIntent, TaskAssigned]:
        task = self.task(fee=fee, **kw)
        self.feed(task)
        self.feed(self.offer(task, worker or self.peers[0], cost=cost))
        self.advance(self.state.policy(task.federation).selection.offer_window_ms)
        self.fire(task, "offers")
        assignment = self.state.tasks[task.cid].assignment
        assert assignment is not None
        return task, assignment

    def execute(
        self,
        task: TaskIntent,
        outputs: dict[str, CID],
        *,
        worker_output: CID,
        score: float = 1.0,
    ) -> ExecutionReceipt:
        """Worker and verifiers commit, the worker reveals, verifiers judge."""
        rec = self.state.tasks[task.cid]
        assert rec.assignment is not None
        worker = rec.assignment.worker
        self.feed(self.commit(task, worker, worker_output))
        for v in rec.verifiers:
            if v in outputs:
                self.feed(self.commit(task, v, outputs[v]))
        receipt = self.receipt(task, worker, worker_output, score)
        self.feed(receipt)
        for v in list(rec.verifiers):
            if v in outputs and v not in rec.verdicts and rec.state != "Settled":
                self.feed(self.verdict(task, v, outputs[v], receipt))
        return receipt
