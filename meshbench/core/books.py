"""The books: balances, escrows, stakes, reputation and tasks, as a pure fold.

Every derived table of the ledger is the result of folding the event DAG, in ledger order,
through an explicit rule set. :data:`ECONOMY_RULES` (here) covers tokens, escrow, stake,
tasks and reputation; :data:`meshbench.core.governance.GOVERNANCE_RULES` covers federations,
credentials, proposals, votes and policy activation; :data:`LEDGER_RULES` is both, and is
what :class:`Books` folds unless given another rule set. The same :class:`Books` runs inside
the protocol state machine (to decide with current balances), inside the SQLite ledger
(which persists what the fold changed) and inside ``ledger rebuild`` (which folds from
nothing and must arrive at the same tables).

Conservation: tokens are created only by :class:`Mint` and the fold checks, event by
event, that ``minted == sum(accounts) + sum(escrows) + sum(stakes)`` (exactly, integers).
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any, Final

from meshbench.core import reputation
from meshbench.core.encoding import CID
from meshbench.core.errors import InsufficientFunds, LedgerError, ProtocolError
from meshbench.core.events import (
    AuditDrawn,
    AuthorityClock,
    EscrowDispute,
    EscrowStateChanged,
    HeldReleased,
    Mint,
    QuorumReached,
    RefereeRuled,
    ResultClawedBack,
    RewardDistributed,
    StakeBonded,
    StakeSlashed,
    StakeUnbonding,
    StakeWithdrawn,
    TaskAssigned,
    TaskExpired,
    Transfer,
    VerdictJudged,
)
from meshbench.core.governance import GOVERNANCE_RULES
from meshbench.core.tables import TABLES, FoldRules, Tables, cid_key
from meshbench.core.types import (
    ComputeOffer,
    ExecutionReceipt,
    PeerInfo,
    ReputationSnapshot,
    ResultCommitment,
    TaskIntent,
    VerificationReceipt,
)

__all__ = [
    "ECONOMY_RULES",
    "ESCROW_TRANSITIONS",
    "LEDGER_RULES",
    "TABLES",
    "Books",
    "audit_record",
    "cid_key",
]

FINAL_ESCROW_STATES: Final = frozenset({"Completed", "Failed", "Expired"})
#: Escrow state machine (reference.md): from -> allowed next states.
ESCROW_TRANSITIONS: Final[dict[str | None, frozenset[str]]] = {
    None: frozenset({"Created"}),
    "Created": frozenset({"InProgress", "Expired", "Failed"}),
    "InProgress": frozenset({"Completed", "Failed", "Disputed", "Expired"}),
    "Disputed": frozenset({"Completed", "Failed", "Expired"}),
    "Completed": frozenset(),
    "Failed": frozenset(),
    "Expired": frozenset(),
}


# --- handlers ------------------------------------------------------------------------------
def _require_authority(books: Tables, signer: str, what: str) -> None:
    if signer != books.authority:
        raise LedgerError(f"{what} signed by {signer}, who is not the ledger authority")


def _fold_clock(books: Tables, ev: AuthorityClock) -> None:
    _require_authority(books, ev.authority, "AuthorityClock")
    last = books.ledger_time()
    if ev.timestamp < last:
        raise LedgerError(f"the authority's clock went back from {last} to {ev.timestamp}")
    books.put("meta", "clock", ev.timestamp)


def _fold_mint(books: Tables, ev: Mint) -> None:
    _require_authority(books, ev.authority, "Mint")
    books.credit(ev.account, ev.amount)
    books.put("meta", "minted", int(books.get("meta", "minted", 0)) + ev.amount)


def _fold_transfer(books: Tables, ev: Transfer) -> None:
    last = books.get("meta", f"nonce:{ev.sender}", -1)
    if ev.nonce <= last:
        raise ProtocolError(f"transfer nonce {ev.nonce} of {ev.sender} was used (last {last})")
    if ev.sender == ev.recipient:
        raise ProtocolError("a transfer to oneself is refused")
    books.debit(ev.sender, ev.amount, "a transfer")
    books.credit(ev.recipient, ev.amount)
    books.put("meta", f"nonce:{ev.sender}", ev.nonce)


def _fold_task(books: Tables, ev: TaskIntent) -> None:
    key = cid_key(ev.cid)
    if books.get("tasks", key) is not None:
        raise ProtocolError(f"task {key} was already published (replay)")
    books.put(
        "tasks",
        key,
        {
            "state": "Published",
            "publisher": ev.publisher,
            "federation": ev.federation,
            "fee": ev.fee,
            "worker": None,
            "price": None,
            "attempt": None,
            "outcome": None,
            "offers": 0,
            "verifiers": [],
            "committed": [],
        },
    )


def _task_row(books: Tables, task_cid: CID) -> tuple[str, dict[str, Any]]:
    key = cid_key(task_cid)
    row = books.get("tasks", key)
    if row is None:
        raise ProtocolError(f"unknown task {key}")
    return key, row


def _fold_escrow_state(books: Tables, ev: EscrowStateChanged) -> None:
    _require_authority(books, ev.authority, "EscrowStateChanged")
    key, task = _task_row(books, ev.task_cid)
    escrow = books.get("escrows", key)
    current = escrow["state"] if escrow else None
    if ev.from_state != current:
        raise LedgerError(f"escrow of {key} is {current}, not {ev.from_state}")
    if ev.to_state not in ESCROW_TRANSITIONS[current]:
        raise LedgerError(f"escrow of {key} cannot go from {current} to {ev.to_state}")
    if current is None:
        if ev.amount != task["fee"]:
            raise LedgerError(f"escrow of {key} must lock the fee {task['fee']}, not {ev.amount}")
        books.debit(task["publisher"], ev.amount, f"the escrow of task {key}")
        books.put(
            "escrows",
            key,
            {
                "state": "Created",
                "publisher": task["publisher"],
                "amount": ev.amount,
                "paid": False,
            },
        )
        return
    books.put("escrows", key, {**escrow, "state": ev.to_state})


def _fold_dispute(books: Tables, ev: EscrowDispute) -> None:
    _require_authority(books, ev.authority, "EscrowDispute")
    key, task = _task_row(books, ev.task_cid)
    escrow = books.get("escrows", key)
    if escrow is None or escrow["state"] not in ("InProgress", "Disputed"):
        raise LedgerError(
            f"escrow of {key} cannot be disputed in state {escrow and escrow['state']}"
        )
    books.put("escrows", key, {**escrow, "state": "Disputed"})
    verifiers = [*task["verifiers"], *ev.extra_verifiers]
    backers = [*task.get("backers", []), *ev.extra_verifiers]
    books.put(
        "tasks",
        key,
        {**task, "state": "Disputed", "verifiers": verifiers, "backers": backers},
    )
    _back(books, list(ev.extra_verifiers), +1)


def _fold_reward(books: Tables, ev: RewardDistributed) -> None:
    _require_authority(books, ev.authority, "RewardDistributed")
    key, task = _task_row(books, ev.task_cid)
    escrow = books.get("escrows", key)
    if escrow is None:
        raise LedgerError(f"task {key} has no escrow to pay out")
    if escrow["paid"]:
        raise LedgerError(f"escrow of {key} was already paid out (double payout refused)")
    if escrow["state"] not in FINAL_ESCROW_STATES:
        raise LedgerError(f"escrow of {key} is {escrow['state']}; it pays out only when final")
    if ev.total != escrow["amount"]:
        raise LedgerError(f"settlement of {key} pays {ev.total}, but {escrow['amount']} is held")
    for p in ev.payouts:
        if p.role == "held":  # kept for the challenge window (adaptive verification)
            if books.get("held", key) is not None:
                raise LedgerError(f"task {key} already holds a payment")
            row = {"account": p.account, "amount": p.amount, "since": ev.timestamp}
            books.put("held", key, row)
        elif p.amount:
            books.credit(p.account, p.amount)
    books.put("escrows", key, {**escrow, "amount": 0, "paid": True})
    books.put("tasks", key, {**task, "state": "Settled", "committed": [], "backers": []})
    _back(books, task.get("backers", []), -1)  # settled: their stake is free again


def _held_row(books: Tables, task_cid: CID, account: str, amount: int, what: str) -> str:
    key = cid_key(task_cid)
    row = books.get("held", key)
    if row is None:
        raise LedgerError(f"{what}: task {key} holds no payment")
    if row["account"] != account or int(row["amount"]) != amount:
        raise LedgerError(
            f"{what}: task {key} holds {row['amount']} for {row['account']}, "
            f"not {amount} for {account}"
        )
    return key


def _fold_held_released(books: Tables, ev: HeldReleased) -> None:
    _require_authority(books, ev.authority, "HeldReleased")
    key = _held_row(books, ev.task_cid, ev.account, ev.amount, "HeldReleased")
    books.put("held", key, None)
    books.credit(ev.account, ev.amount)


def _fold_clawback(books: Tables, ev: ResultClawedBack) -> None:
    _require_authority(books, ev.authority, "ResultClawedBack")
    key = _held_row(books, ev.task_cid, ev.account, ev.amount, "ResultClawedBack")
    _key, task = _task_row(books, ev.task_cid)
    if ev.publisher != task["publisher"]:
        raise LedgerError(f"a clawback of {key} goes to its publisher, not to {ev.publisher}")
    books.put("held", key, None)
    books.credit(ev.publisher, ev.amount)
    books.put("tasks", key, {**task, "clawed_back": True})
    books.put("audits", ev.account, None)  # caught: on probation again


def audit_record(books: Tables, worker: str) -> dict[str, int]:
    """A worker's sampled-verification record: ``clean``, its verified results since it
    appeared or last failed (probation counts them), and ``since``, its results in a row
    that were not audited (the streak rule raises its audit rate with it)."""
    row = books.get("audits", worker)
    return {"clean": 0, "since": 0} if row is None else dict(row)


def _fold_audit_drawn(books: Tables, ev: AuditDrawn) -> None:
    """The auditors of a sampled result back it with their stake and must commit."""
    _require_authority(books, ev.authority, "AuditDrawn")
    key, task = _task_row(books, ev.task_cid)
    row = audit_record(books, task["worker"])
    books.put("audits", task["worker"], {**row, "since": 0 if ev.audited else row["since"] + 1})
    if task.get("worker") not in task["committed"]:
        raise LedgerError(f"an audit of {key} is drawn before its worker committed")
    auditors = list(ev.auditors)
    state = task["state"]
    if auditors and not set(auditors) <= set(task["committed"]):
        state = "Executed" if state in ("Executed", "Verifying") else state
    books.put(
        "tasks",
        key,
        {
            **task,
            "state": state,
            "audited": ev.audited,
            "verifiers": [*task["verifiers"], *auditors],
            "backers": [*task.get("backers", []), *auditors],
        },
    )
    _back(books, auditors, +1)


def _fold_referee(books: Tables, ev: RefereeRuled) -> None:
    _require_authority(books, ev.authority, "RefereeRuled")
    _task_row(books, ev.task_cid)


def _back(books: Tables, parties: list[str], delta: int) -> None:
    for did in parties:
        n = books.backing(did) + delta
        books.put("backing", did, n if n > 0 else None)


def _fold_assigned(books: Tables, ev: TaskAssigned) -> None:
    _require_authority(books, ev.assigner, "TaskAssigned")
    key, task = _task_row(books, ev.task_cid)
    if task["state"] not in ("Published", "Offered", "Reassigned", "Assigned"):
        raise ProtocolError(f"task {key} cannot be assigned in state {task['state']}")
    if ev.price > task["fee"]:
        raise LedgerError(f"assignment price {ev.price} is above the escrowed fee {task['fee']}")
    books.put(
        "tasks",
        key,
        {
            **task,
            "state": "Assigned",
            "worker": ev.worker,
            "price": ev.price,
            "attempt": ev.attempt,
            "verifiers": list(ev.verifiers),
            "committed": [],
            "backers": [ev.worker, *ev.verifiers],
        },
    )
    _back(books, task.get("backers", []), -1)  # the previous attempt's parties, if any
    _back(books, [ev.worker, *ev.verifiers], +1)


def _fold_expired(books: Tables, ev: TaskExpired) -> None:
    _require_authority(books, ev.authority, "TaskExpired")
    key, task = _task_row(books, ev.task_cid)
    # a failed worker sends the task back to the offers (a TaskAssigned in the same batch
    # follows when another eligible offer is there)
    back = "Offered" if task["offers"] else "Published"
    state = "Expired" if ev.stage == "deadline" else back
    books.put("tasks", key, {**task, "state": state, "committed": [], "backers": []})
    _back(books, task.get("backers", []), -1)
    if ev.worker is not None:
        policy = books.policy_for(task["federation"])
        rec = reputation.observe(
            books.get("reputation", ev.worker), "exec_bad", ev.timestamp, policy
        )
        books.put("reputation", ev.worker, rec)


def _fold_quorum(books: Tables, ev: QuorumReached) -> None:
    _require_authority(books, ev.authority, "QuorumReached")
    key, task = _task_row(books, ev.task_cid)
    if task["outcome"] is not None:
        raise ProtocolError(f"task {key} already has an outcome ({task['outcome']})")
    books.put("tasks", key, {**task, "state": ev.outcome, "outcome": ev.outcome})
    policy = books.policy_for(task["federation"])
    t = ev.timestamp

    def upd(
        peer: str, kind: reputation.Observation, quality: float = 1.0, weight: float = 1.0
    ) -> None:
        rec = reputation.observe(books.get("reputation", peer), kind, t, policy, quality, weight)
        books.put("reputation", peer, rec)

    if ev.worker is not None and task["verifiers"]:  # a verified result: probation counts it
        row = audit_record(books, ev.worker)
        if ev.outcome == "Accepted":
            books.put("audits", ev.worker, {**row, "clean": row["clean"] + 1})
        elif ev.outcome == "Rejected":
            books.put("audits", ev.worker, None)
    if ev.worker is not None and ev.outcome in ("Accepted", "Rejected"):
        if ev.outcome == "Accepted":
            # the n-th task a worker does for the same publisher builds 1/n of a reputation
            pair = f"{task['publisher']}|{ev.worker}"
            done = int(books.get("pairs", pair, 0))
            books.put("pairs", pair, done + 1)
            upd(ev.worker, "exec_ok", ev.quality_ppm / 1_000_000, 1.0 / (1 + done))
        else:
            upd(ev.worker, "exec_bad")
    for v in ev.with_quorum:
        upd(v, "verify_ok")
    for v in ev.against_quorum:
        upd(v, "verify_bad")


def _stake(books: Tables, account: str) -> dict[str, Any]:
    return books.get("stakes", account) or {"bonded": 0, "unbonding": []}


def _fold_bond(books: Tables, ev: StakeBonded) -> None:
    _require_authority(books, ev.authority, "StakeBonded")
    books.debit(ev.account, ev.amount, "a bond")
    s = _stake(books, ev.account)
    books.put("stakes", ev.account, {**s, "bonded": s["bonded"] + ev.amount})


def _fold_unbond(books: Tables, ev: StakeUnbonding) -> None:
    _require_authority(books, ev.authority, "StakeUnbonding")
    s = _stake(books, ev.account)
    if s["bonded"] < ev.amount:
        raise InsufficientFunds(f"{ev.account} has {s['bonded']} bonded, cannot unbond {ev.amount}")
    unbonding = [*s["unbonding"], [ev.amount, ev.unlock_at]]
    books.put("stakes", ev.account, {"bonded": s["bonded"] - ev.amount, "unbonding": unbonding})


def _fold_withdraw(books: Tables, ev: StakeWithdrawn) -> None:
    _require_authority(books, ev.authority, "StakeWithdrawn")
    if books.backing(ev.account):
        raise ProtocolError(
            f"{ev.account} backs {books.backing(ev.account)} open task(s): its stake stays "
            "until they settle"
        )
    s = _stake(books, ev.account)
    unlocked = sum(a for a, at in s["unbonding"] if at <= ev.timestamp)
    if unlocked < ev.amount:
        raise InsufficientFunds(
            f"{ev.account} has {unlocked} unlocked, cannot withdraw {ev.amount} (lock period)"
        )
    remaining, left = [], ev.amount
    for amount, at in s["unbonding"]:  # take from the oldest unlocked lots first
        if at <= ev.timestamp and left:
            take = min(amount, left)
            left -= take
            amount -= take
        if amount:
            remaining.append([amount, at])
    books.put("stakes", ev.account, {"bonded": s["bonded"], "unbonding": remaining})
    books.credit(ev.account, ev.amount)


def _fold_slash(books: Tables, ev: StakeSlashed) -> None:
    """Bonded stake first, then unbonding lots (the latest to unlock first): stake that
    backed a task stays within reach of its slash even if its owner asked to unbond."""
    _require_authority(books, ev.authority, "StakeSlashed")
    s = _stake(books, ev.account)
    reach = books.slashable(ev.account)
    if reach < ev.amount:
        raise LedgerError(f"cannot slash {ev.amount} from {ev.account}: {reach} within reach")
    take_bonded = min(s["bonded"], ev.amount)
    left = ev.amount - take_bonded
    lots = sorted(s["unbonding"], key=lambda lot: -lot[1])
    remaining = []
    for amount, at in lots:
        take = min(amount, left)
        left -= take
        if amount - take:
            remaining.append([amount - take, at])
    remaining.sort(key=lambda lot: lot[1])
    books.put("stakes", ev.account, {"bonded": s["bonded"] - take_bonded, "unbonding": remaining})
    books.credit(ev.recipient, ev.amount)
    if ev.offence == "no_show":  # drawn last until it signs something again
        books.put("absent", ev.account, ev.timestamp)


def _present(books: Tables, peer: str) -> None:
    """``peer`` signed something the authority took in: it is no longer absent (the
    ``absent`` table that :func:`meshbench.core.selection.absent_peers` reads)."""
    if books.get("absent", peer) is not None:
        books.put("absent", peer, None)


def _fold_verification(books: Tables, ev: VerificationReceipt) -> None:
    _task_row(books, ev.task_cid)  # a receipt for an unknown task is refused
    _present(books, ev.verifier)


def _fold_peer(books: Tables, ev: PeerInfo) -> None:
    _present(books, ev.did)  # a peer that (re)announces itself is back


def _fold_judged(books: Tables, ev: VerdictJudged) -> None:
    _require_authority(books, ev.authority, "VerdictJudged")
    _task_row(books, ev.task_cid)


def _advance(books: Tables, task_cid: CID, src: tuple[str, ...], dst: str) -> None:
    key, task = _task_row(books, task_cid)
    if task["state"] in src:
        books.put("tasks", key, {**task, "state": dst})


def _fold_offer(books: Tables, ev: ComputeOffer) -> None:
    key, task = _task_row(books, ev.task_cid)
    state = "Offered" if task["state"] == "Published" else task["state"]
    books.put("tasks", key, {**task, "state": state, "offers": task["offers"] + 1})
    _present(books, ev.worker)


def _fold_commitment(books: Tables, ev: ResultCommitment) -> None:
    """Assigned -> Executed when the worker commits; Executed -> Verifying once the worker
    and every drawn verifier have committed (the commit phase is then closed)."""
    key, task = _task_row(books, ev.task_cid)
    committed = [*task["committed"], ev.worker]
    state = task["state"]
    if ev.worker == task["worker"] and state == "Assigned":
        state = "Executed"
    if state == "Executed" and set(task["verifiers"]) <= set(committed):
        state = "Verifying"
    books.put("tasks", key, {**task, "state": state, "committed": committed})
    _present(books, ev.worker)


def _fold_receipt(books: Tables, ev: ExecutionReceipt) -> None:
    _advance(books, ev.task_cid, ("Executed",), "Verifying")
    _present(books, ev.worker)


def _fold_snapshot(books: Tables, ev: ReputationSnapshot) -> None:
    _require_authority(books, ev.authority, "ReputationSnapshot")
    books.put("snapshots", ev.peer, {"score": ev.score, "at": ev.at, "cid": cid_key(ev.cid)})


#: Tokens, escrow, stake, tasks and reputation.
ECONOMY_RULES: Final[FoldRules] = MappingProxyType(
    {
        AuthorityClock: _fold_clock,
        Mint: _fold_mint,
        Transfer: _fold_transfer,
        TaskIntent: _fold_task,
        EscrowStateChanged: _fold_escrow_state,
        EscrowDispute: _fold_dispute,
        RewardDistributed: _fold_reward,
        TaskAssigned: _fold_assigned,
        TaskExpired: _fold_expired,
        QuorumReached: _fold_quorum,
        StakeBonded: _fold_bond,
        StakeUnbonding: _fold_unbond,
        StakeWithdrawn: _fold_withdraw,
        StakeSlashed: _fold_slash,
        VerificationReceipt: _fold_verification,
        VerdictJudged: _fold_judged,
        AuditDrawn: _fold_audit_drawn,
        RefereeRuled: _fold_referee,
        HeldReleased: _fold_held_released,
        ResultClawedBack: _fold_clawback,
        ComputeOffer: _fold_offer,
        ResultCommitment: _fold_commitment,
        ExecutionReceipt: _fold_receipt,
        ReputationSnapshot: _fold_snapshot,
        PeerInfo: _fold_peer,
    }
)
#: Everything a federation's ledger folds: the economy and its governance.
LEDGER_RULES: Final[FoldRules] = MappingProxyType({**ECONOMY_RULES, **GOVERNANCE_RULES})


class Books(Tables):
    """A ledger's derived tables, folded with :data:`LEDGER_RULES` unless told otherwise.

    ``authority`` is the federation's ledger authority: the only signer of mints, escrow,
    stake, quorum and reward events that these books accept.
    """

    def __init__(self, authority: str, rules: FoldRules = LEDGER_RULES) -> None:
        super().__init__(authority, rules)
