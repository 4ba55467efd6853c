"""The books: balances, escrows, stakes, reputation, tasks and policies, as a pure fold.

Every derived table of the ledger is the result of folding the event DAG, in ledger order,
through the handlers registered here. The same :class:`Books` runs inside the protocol
state machine (to decide with current balances), inside the SQLite ledger (whose derived
tables are written from it) and inside ``ledger rebuild`` (which folds from nothing and
must arrive at the same tables).

Extension point: :func:`register_fold` maps an event type to a handler
``handler(books, event) -> None`` that reads with :meth:`Books.get` and writes with
:meth:`Books.put` (never mutating a value it read). A handler raises a :class:`MeshError`
to refuse an event; :meth:`Books.apply` then leaves every table exactly as it was. The
governance module registers its own handlers (proposals, votes, federations) the same
way; the default handler of :class:`MeshPolicyActivated` stores the active policy in the
``policies`` table, which :meth:`Books.policy_for` (and so the default ``PolicyView``) reads.

Conservation: tokens are created only by :class:`Mint` and the fold checks, event by
event, that ``minted == sum(accounts) + sum(escrows) + sum(stakes)`` (exactly, integers).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, Final, TypeVar

from meshbench.core import reputation
from meshbench.core.encoding import CID
from meshbench.core.errors import InsufficientFunds, LedgerError, ProtocolError
from meshbench.core.events import (
    EscrowDispute,
    EscrowStateChanged,
    MeshPolicyActivated,
    Mint,
    QuorumReached,
    RewardDistributed,
    StakeBonded,
    StakeSlashed,
    StakeUnbonding,
    StakeWithdrawn,
    TaskAssigned,
    TaskExpired,
    Transfer,
)
from meshbench.core.model import Model
from meshbench.core.policy import MeshPolicy
from meshbench.core.types import (
    ComputeOffer,
    ExecutionReceipt,
    ReputationSnapshot,
    ResultCommitment,
    TaskIntent,
    VerificationReceipt,
)

__all__ = [
    "ESCROW_TRANSITIONS",
    "FOLD_HANDLERS",
    "TABLES",
    "Books",
    "FoldHandler",
    "cid_key",
    "register_fold",
]

#: The derived tables every ledger has; handlers may create more (``Books.put``).
TABLES: Final = ("accounts", "escrows", "stakes", "reputation", "tasks", "policies", "meta")
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

E = TypeVar("E", bound=Model)
FoldHandler = Callable[["Books", Any], None]
FOLD_HANDLERS: dict[type[Model], FoldHandler] = {}


def register_fold(
    event_type: type[E], *, replace: bool = False
) -> Callable[[FoldHandler], FoldHandler]:
    """Decorator: fold events of ``event_type`` with the decorated handler.

    ``replace=True`` overrides an existing handler (e.g. governance taking over policy
    activation); registering twice without it raises ``LedgerError``.
    """

    def deco(handler: FoldHandler) -> FoldHandler:
        if event_type in FOLD_HANDLERS and not replace:
            raise LedgerError(f"a fold handler for {event_type.__name__} is already registered")
        FOLD_HANDLERS[event_type] = handler
        return handler

    return deco


def cid_key(cid: CID) -> str:
    """The text key of a CID in the derived tables (base32; cached inside the CID)."""
    return str(cid)


_MISSING: Final = object()


class Books:
    """Derived tables: ``{table: {key: value}}`` with JSON-able values, changed only by folds.

    ``authority`` is the federation's ledger authority: the only signer of mints, escrow,
    stake, quorum and reward events that these books accept.
    """

    def __init__(self, authority: str) -> None:
        self.authority = authority
        self._tables: dict[str, dict[str, Any]] = {t: {} for t in TABLES}
        self._pending: dict[tuple[str, str], Any] | None = None
        self._policy_cache: dict[str, MeshPolicy] = {}
        self.dirty: set[tuple[str, str]] = set()

    def copy(self) -> Books:
        """An independent copy (values are replaced, never mutated, so a shallow copy works)."""
        other = Books(self.authority)
        other.load(self._tables)
        return other

    def load(self, tables: dict[str, dict[str, Any]]) -> None:
        """Replace every table with stored rows (a ledger reopening its derived tables)."""
        self._tables = {t: {} for t in TABLES}
        for name, rows in tables.items():
            self._tables[name] = dict(rows)
        self.dirty.clear()

    # --- reading ---
    def get(self, table: str, key: str, default: Any = None) -> Any:
        if self._pending is not None:
            value = self._pending.get((table, key), _MISSING)
            if value is not _MISSING:
                return default if value is None else value
        return self._tables.get(table, {}).get(key, default)

    def table(self, name: str) -> dict[str, Any]:
        """A copy of one table (committed state)."""
        return dict(self._tables.get(name, {}))

    def tables(self) -> dict[str, dict[str, Any]]:
        return {name: dict(rows) for name, rows in self._tables.items() if rows}

    def balance(self, account: str) -> int:
        return int(self.get("accounts", account, 0))

    def bonded(self, account: str) -> int:
        stake = self.get("stakes", account)
        return int(stake["bonded"]) if stake else 0

    def escrow(self, task_cid: CID) -> dict[str, Any] | None:
        return self.get("escrows", cid_key(task_cid))

    def task(self, task_cid: CID) -> dict[str, Any] | None:
        return self.get("tasks", cid_key(task_cid))

    def reputation_record(self, peer: str) -> dict[str, Any] | None:
        return self.get("reputation", peer)

    def policy_for(self, federation: str) -> MeshPolicy:
        """The policy activated for ``federation`` in these books, else the defaults."""
        row = self.get("policies", federation)
        if row is None:
            return _DEFAULT_POLICY
        cached = self._policy_cache.get(row["cid"])
        if cached is None:
            cached = MeshPolicy.from_json(row["json"])
            self._policy_cache[row["cid"]] = cached
        return cached

    # --- writing (only from fold handlers) --------------------------------------------
    def put(self, table: str, key: str, value: Any) -> None:
        if self._pending is None:
            raise LedgerError("Books.put is only for fold handlers (inside Books.apply)")
        self._pending[(table, key)] = value

    def credit(self, account: str, amount: int) -> None:
        self.put("accounts", account, self.balance(account) + amount)

    def debit(self, account: str, amount: int, what: str) -> None:
        have = self.balance(account)
        if have < amount:
            raise InsufficientFunds(f"{account} holds {have}, cannot pay {amount} for {what}")
        self.put("accounts", account, have - amount)

    # --- folding ---
    def apply(self, *events: Model) -> None:
        """Fold ``events`` atomically: all of them, or (on any error) none of them.

        Before committing, the token change of every touched row is summed: it must equal
        what was minted by these events, else the whole batch is refused (``LedgerError``).
        """
        if self._pending is not None:
            raise LedgerError("Books.apply is not re-entrant")
        self._pending = pending = {}
        try:
            for event in events:
                handler = FOLD_HANDLERS.get(type(event))
                if handler is not None:
                    handler(self, event)
            minted = int(pending.get(("meta", "minted"), self.minted())) - self.minted()
            moved = sum(
                _tokens(table, value) - _tokens(table, self._tables.get(table, {}).get(key))
                for (table, key), value in pending.items()
                if table in _TOKEN_TABLES
            )
            if moved != minted:
                raise LedgerError(
                    f"refused: these events change the token total by {moved} "
                    f"but mint {minted} ({', '.join(type(e).__name__ for e in events)})"
                )
        finally:
            self._pending = None
        for (table, key), value in pending.items():
            rows = self._tables.setdefault(table, {})
            if value is None:
                rows.pop(key, None)
            else:
                rows[key] = value
            self.dirty.add((table, key))

    def fold(self, events: Iterable[Model]) -> Books:
        for event in events:
            self.apply(event)
        return self

    # --- invariants ---
    def token_total(self) -> int:
        """Every token that exists: balances + escrowed + bonded + unbonding."""
        return sum(
            _tokens(name, value)
            for name in _TOKEN_TABLES
            for value in self._tables.get(name, {}).values()
        )

    def minted(self) -> int:
        return int(self._tables["meta"].get("minted", 0))

    def check_conservation(self) -> None:
        """Recount every table; raise ``LedgerError`` if tokens appeared or vanished."""
        total, minted = self.token_total(), self.minted()
        if total != minted:
            raise LedgerError(f"tokens not conserved: {total} held but {minted} minted")
        for name in _TOKEN_TABLES:
            for key, value in self._tables.get(name, {}).items():
                if _tokens(name, value) < 0:
                    raise LedgerError(f"{name}[{key}] holds a negative amount")

    def __iter__(self) -> Iterator[tuple[str, str, Any]]:
        for name in sorted(self._tables):
            for key in sorted(self._tables[name]):
                yield name, key, self._tables[name][key]


_DEFAULT_POLICY: Final = MeshPolicy()
_TOKEN_TABLES: Final = ("accounts", "escrows", "stakes")


def _tokens(table: str, value: Any) -> int:
    """Tokens held by one row of a token table (0 for a missing row)."""
    if value is None:
        return 0
    if table == "accounts":
        return int(value)
    if table == "escrows":
        return int(value["amount"])
    return int(value["bonded"]) + sum(int(a) for a, _ in value["unbonding"])


# --- handlers ------------------------------------------------------------------------------
def _require_authority(books: Books, signer: str, what: str) -> None:
    if signer != books.authority:
        raise LedgerError(f"{what} signed by {signer}, who is not the ledger authority")


@register_fold(Mint)
def _fold_mint(books: Books, ev: Mint) -> None:
    _require_authority(books, ev.authority, "Mint")
    books.credit(ev.account, ev.amount)
    books.put("meta", "minted", int(books.get("meta", "minted", 0)) + ev.amount)


@register_fold(Transfer)
def _fold_transfer(books: Books, ev: Transfer) -> None:
    last = books.get("meta", f"nonce:{ev.sender}", -1)
    if ev.nonce <= last:
        raise ProtocolError(f"transfer nonce {ev.nonce} of {ev.sender} was used (last {last})")
    if ev.sender == ev.recipient:
        raise ProtocolError("a transfer to oneself is refused")
    books.debit(ev.sender, ev.amount, "a transfer")
    books.credit(ev.recipient, ev.amount)
    books.put("meta", f"nonce:{ev.sender}", ev.nonce)


@register_fold(TaskIntent)
def _fold_task(books: Books, ev: TaskIntent) -> None:
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
        },
    )


def _task_row(books: Books, task_cid: CID) -> tuple[str, dict[str, Any]]:
    key = cid_key(task_cid)
    row = books.get("tasks", key)
    if row is None:
        raise ProtocolError(f"unknown task {key}")
    return key, row


@register_fold(EscrowStateChanged)
def _fold_escrow_state(books: Books, ev: EscrowStateChanged) -> None:
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


@register_fold(EscrowDispute)
def _fold_dispute(books: Books, ev: EscrowDispute) -> None:
    _require_authority(books, ev.authority, "EscrowDispute")
    key, task = _task_row(books, ev.task_cid)
    escrow = books.get("escrows", key)
    if escrow is None or escrow["state"] not in ("InProgress", "Disputed"):
        raise LedgerError(
            f"escrow of {key} cannot be disputed in state {escrow and escrow['state']}"
        )
    books.put("escrows", key, {**escrow, "state": "Disputed"})
    books.put("tasks", key, {**task, "state": "Disputed"})


@register_fold(RewardDistributed)
def _fold_reward(books: Books, ev: RewardDistributed) -> None:
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
        if p.amount:
            books.credit(p.account, p.amount)
    books.put("escrows", key, {**escrow, "amount": 0, "paid": True})
    books.put("tasks", key, {**task, "state": "Settled"})


@register_fold(TaskAssigned)
def _fold_assigned(books: Books, ev: TaskAssigned) -> None:
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
        },
    )


@register_fold(TaskExpired)
def _fold_expired(books: Books, ev: TaskExpired) -> None:
    _require_authority(books, ev.authority, "TaskExpired")
    key, task = _task_row(books, ev.task_cid)
    state = "Expired" if ev.stage == "deadline" else "Reassigned"
    books.put("tasks", key, {**task, "state": state})
    if ev.worker is not None:
        policy = books.policy_for(task["federation"])
        rec = reputation.observe(
            books.get("reputation", ev.worker), "exec_bad", ev.timestamp, policy
        )
        books.put("reputation", ev.worker, rec)


@register_fold(QuorumReached)
def _fold_quorum(books: Books, ev: QuorumReached) -> None:
    _require_authority(books, ev.authority, "QuorumReached")
    key, task = _task_row(books, ev.task_cid)
    if task["outcome"] is not None:
        raise ProtocolError(f"task {key} already has an outcome ({task['outcome']})")
    books.put("tasks", key, {**task, "state": ev.outcome, "outcome": ev.outcome})
    policy = books.policy_for(task["federation"])
    t = ev.timestamp

    def upd(peer: str, kind: reputation.Observation, quality: float = 1.0) -> None:
        rec = reputation.observe(books.get("reputation", peer), kind, t, policy, quality)
        books.put("reputation", peer, rec)

    if ev.worker is not None and ev.outcome in ("Accepted", "Rejected"):
        if ev.outcome == "Accepted":
            upd(ev.worker, "exec_ok", ev.quality_ppm / 1_000_000)
        else:
            upd(ev.worker, "exec_bad")
    for v in ev.with_quorum:
        upd(v, "verify_ok")
    for v in ev.against_quorum:
        upd(v, "verify_bad")


def _stake(books: Books, account: str) -> dict[str, Any]:
    return books.get("stakes", account) or {"bonded": 0, "unbonding": []}


@register_fold(StakeBonded)
def _fold_bond(books: Books, ev: StakeBonded) -> None:
    _require_authority(books, ev.authority, "StakeBonded")
    books.debit(ev.account, ev.amount, "a bond")
    s = _stake(books, ev.account)
    books.put("stakes", ev.account, {**s, "bonded": s["bonded"] + ev.amount})


@register_fold(StakeUnbonding)
def _fold_unbond(books: Books, ev: StakeUnbonding) -> None:
    _require_authority(books, ev.authority, "StakeUnbonding")
    s = _stake(books, ev.account)
    if s["bonded"] < ev.amount:
        raise InsufficientFunds(f"{ev.account} has {s['bonded']} bonded, cannot unbond {ev.amount}")
    unbonding = [*s["unbonding"], [ev.amount, ev.unlock_at]]
    books.put("stakes", ev.account, {"bonded": s["bonded"] - ev.amount, "unbonding": unbonding})


@register_fold(StakeWithdrawn)
def _fold_withdraw(books: Books, ev: StakeWithdrawn) -> None:
    _require_authority(books, ev.authority, "StakeWithdrawn")
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


@register_fold(StakeSlashed)
def _fold_slash(books: Books, ev: StakeSlashed) -> None:
    _require_authority(books, ev.authority, "StakeSlashed")
    s = _stake(books, ev.account)
    if s["bonded"] < ev.amount:
        raise LedgerError(f"cannot slash {ev.amount} from {ev.account}: {s['bonded']} bonded")
    books.put("stakes", ev.account, {**s, "bonded": s["bonded"] - ev.amount})
    books.credit(ev.recipient, ev.amount)


@register_fold(VerificationReceipt)
def _fold_verification(books: Books, ev: VerificationReceipt) -> None:
    _task_row(books, ev.task_cid)  # a receipt for an unknown task is refused


def _advance(books: Books, task_cid: CID, src: tuple[str, ...], dst: str) -> None:
    key, task = _task_row(books, task_cid)
    if task["state"] in src:
        books.put("tasks", key, {**task, "state": dst})


@register_fold(ComputeOffer)
def _fold_offer(books: Books, ev: ComputeOffer) -> None:
    _advance(books, ev.task_cid, ("Published",), "Offered")


@register_fold(ResultCommitment)
def _fold_commitment(books: Books, ev: ResultCommitment) -> None:
    _, task = _task_row(books, ev.task_cid)
    if ev.worker == task["worker"]:
        _advance(books, ev.task_cid, ("Assigned",), "Executed")


@register_fold(ExecutionReceipt)
def _fold_receipt(books: Books, ev: ExecutionReceipt) -> None:
    _advance(books, ev.task_cid, ("Executed",), "Verifying")


@register_fold(ReputationSnapshot)
def _fold_snapshot(books: Books, ev: ReputationSnapshot) -> None:
    _require_authority(books, ev.authority, "ReputationSnapshot")
    books.put("snapshots", ev.peer, {"score": ev.score, "at": ev.at, "cid": cid_key(ev.cid)})


@register_fold(MeshPolicyActivated)
def _fold_policy(books: Books, ev: MeshPolicyActivated) -> None:
    """Default activation: store the carried policy (governance may ``replace`` this)."""
    _require_authority(books, ev.authority, "MeshPolicyActivated")
    books.put(
        "policies",
        ev.federation_did,
        {"cid": cid_key(ev.policy_cid), "version": ev.policy_version, "json": ev.policy.to_json()},
    )


# Governance (federations, credentials, proposals, votes, policy activation, lineage) is part
# of every ledger's fold: importing it registers its handlers (it replaces the default
# MeshPolicyActivated handler above with the governed one).
from meshbench.core import governance as _governance  # noqa: E402, F401
