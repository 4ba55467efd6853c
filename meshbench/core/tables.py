"""The fold engine: derived tables changed only by folding events through a rule set.

:class:`Tables` holds ``{table: {key: value}}`` (JSON-able values) and applies events
atomically through an explicit rule set (``{event type: handler}``), checking token
conservation per batch. The rule sets themselves live with their domain: the economy
(:mod:`meshbench.core.books`) and governance (:mod:`meshbench.core.governance`); a ledger's
books combine both (:data:`meshbench.core.books.LEDGER_RULES`). This module knows no rule.

A handler ``handler(tables, event) -> None`` reads with :meth:`Tables.get` and writes with
:meth:`Tables.put` (never mutating a value it read); it raises a :class:`MeshError` to refuse
an event, and :meth:`Tables.apply` then leaves every table exactly as it was.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Final, Self

from meshbench.core.encoding import CID
from meshbench.core.errors import InsufficientFunds, LedgerError
from meshbench.core.model import Model
from meshbench.core.policy import MeshPolicy

__all__ = ["TABLES", "Changes", "FoldHandler", "FoldRules", "Tables", "cid_key"]

#: The derived tables every ledger has; handlers may create more (``Tables.put``).
TABLES: Final = (
    "accounts",
    "escrows",
    "stakes",
    "held",
    "reputation",
    "tasks",
    "policies",
    "meta",
)

FoldHandler = Callable[[Any, Any], None]
FoldRules = Mapping[type[Model], FoldHandler]
#: What one fold changed: ``(table, key, new value or None when the row was removed)``.
Changes = tuple[tuple[str, str, Any], ...]


def cid_key(cid: CID) -> str:
    """The text key of a CID in the derived tables (base32; cached inside the CID)."""
    return str(cid)


_MISSING: Final = object()


class Tables:
    """Derived tables: ``{table: {key: value}}`` with JSON-able values, changed only by folds.

    ``authority`` is the federation's ledger authority: the only signer of mints, escrow,
    stake, quorum and reward events that these books accept.
    """

    def __init__(self, authority: str, rules: FoldRules) -> None:
        self.authority = authority
        #: event type -> handler: the rule set this fold applies (an explicit value).
        self.rules = rules
        self._tables: dict[str, dict[str, Any]] = {t: {} for t in TABLES}
        self._pending: dict[tuple[str, str], Any] | None = None
        self._policy_cache: dict[str, MeshPolicy] = {}

    def __deepcopy__(self, memo: dict[int, Any]) -> Self:
        """Deep copies share the rule set (an immutable value), and copy everything else."""
        import copy

        other = type(self).__new__(type(self))
        memo[id(self)] = other
        for name, value in vars(self).items():
            setattr(other, name, value if name == "rules" else copy.deepcopy(value, memo))
        return other

    def copy(self) -> Self:
        """An independent copy (values are replaced, never mutated, so a shallow copy works)."""
        other = type(self)(self.authority, self.rules)
        other.load(self._tables)
        return other

    def load(self, tables: dict[str, dict[str, Any]]) -> None:
        """Replace every table with stored rows (a ledger reopening its derived tables)."""
        self._tables = {t: {} for t in TABLES}
        for name, rows in tables.items():
            self._tables[name] = dict(rows)

    # --- reading ---
    def get(self, table: str, key: str, default: Any = None) -> Any:
        if self._pending is not None:
            value = self._pending.get((table, key), _MISSING)
            if value is not _MISSING:
                return default if value is None else value
        return self._tables.get(table, {}).get(key, default)

    def evict(self, table: str, key: str) -> bool:
        """Drop a row from memory only (the ledger's derived tables keep it): for the rows of
        settled work that no fold reads again. A row that holds tokens is never evicted (the
        conservation check counts what is in memory). True if a row was dropped."""
        if self._pending is not None:
            raise LedgerError("Books.evict is not allowed inside Books.apply")
        rows = self._tables.get(table, {})
        if key not in rows or (table in _TOKEN_TABLES and _tokens(table, rows[key]) != 0):
            return False
        del rows[key]
        return True

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

    def slashable(self, account: str) -> int:
        """Stake a slash can reach: bonded plus still-unbonding lots (unbonding does not
        take stake out of reach of the tasks it backed)."""
        stake = self.get("stakes", account)
        if not stake:
            return 0
        return int(stake["bonded"]) + sum(int(a) for a, _ in stake["unbonding"])

    def ledger_time(self) -> int:
        """The ledger authority's latest clock stamp (``AuthorityClock``), 0 before any."""
        return int(self.get("meta", "clock", 0))

    def backing(self, account: str) -> int:
        """Open tasks whose assignment names ``account`` (as worker or verifier)."""
        return int(self.get("backing", account, 0))

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
    def apply(self, *events: Model) -> Changes:
        """Fold ``events`` atomically: all of them, or (on any error) none of them.

        Returns what changed, ``((table, key, value or None for a deleted row), ...)``: what a
        ledger persists with these events (no second fold).

        Before committing, the token change of every touched row is summed: it must equal
        what was minted by these events, else the whole batch is refused (``LedgerError``).
        """
        if self._pending is not None:
            raise LedgerError("Books.apply is not re-entrant")
        self._pending = pending = {}
        try:
            for event in events:
                handler = self.rules.get(type(event))
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
        return tuple((table, key, value) for (table, key), value in pending.items())

    def fold(self, events: Iterable[Model]) -> Self:
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
_TOKEN_TABLES: Final = ("accounts", "escrows", "stakes", "held")


def _tokens(table: str, value: Any) -> int:
    """Tokens held by one row of a token table (0 for a missing row)."""
    if value is None:
        return 0
    if table == "accounts":
        return int(value)
    if table in ("escrows", "held"):
        return int(value["amount"])
    return int(value["bonded"]) + sum(int(a) for a, _ in value["unbonding"])
