"""``icn-wallet``: a member's wallet: keys, balance, stake, federations and mesh policy.

Every command works on the ledger of a data dir (``--data-dir``, else ``$MESHBENCH_HOME``).
The node's own key (``node``) is the ledger authority of the federations created there; when
this data dir holds it, an approved proposal is activated at once.

Example (a three-member federation)::

    icn-wallet federation create coop --as founder
    icn-wallet federation join --federation coop --as alice    # likewise bob, carol
    icn-wallet mesh policy propose --update-file update.json --description "..." --as alice
    icn-wallet mesh policy vote --policy-cid bafy... --approve --as bob
    icn-wallet mesh policy view --json
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from meshbench.cli import meshbench as meshbench_cli
from meshbench.cli.common import (
    InputFile,
    data_dir_option,
    emit,
    group_data_dir_option,
    print_table,
    resolve_data_dir,
    run_cli,
)
from meshbench.core import governance as gov
from meshbench.core.encoding import parse_cid
from meshbench.core.errors import GovernanceError, IdentityError, KeyNotFound, UnknownFederation
from meshbench.core.events import StakeRequest
from meshbench.core.federation_acts import YEAR_MS, admit, create_federation, propose, vote
from meshbench.core.identity import Identity
from meshbench.core.model import Model
from meshbench.core.policy import MeshPolicyFragment
from meshbench.core.protocol import Faucet
from meshbench.runtime.clock import wall_clock_ms as now_ms
from meshbench.store.authority import decide_on_ledger
from meshbench.store.keystore import Keystore
from meshbench.store.ledger import Ledger

NODE_KEY = "node"


@dataclass
class Wallet:
    """What one command needs: the data dir's keystore, ledger and the acting identity."""

    root: Path
    keys: Keystore
    ledger: Ledger
    acting: str

    def me(self) -> Identity:
        return self.keys.load(self.acting)

    def authority(self) -> Identity | None:
        try:
            ident = self.keys.load(NODE_KEY)
        except KeyNotFound:
            return None
        return ident if ident.did == self.ledger.authority else None

    def federation(self, name_or_did: str | None) -> str:
        """The federation DID named by ``name_or_did`` (or the only one in the ledger)."""
        rows = self.ledger.books.table("federations")
        if name_or_did is None:
            active = [r["did"] for r in rows.values() if r["status"] == "active"]
            if len(active) != 1:
                raise UnknownFederation(
                    f"{len(active)} active federations in this ledger: name one with --federation"
                )
            return active[0]
        if name_or_did in rows:
            return name_or_did
        named = [r["did"] for r in rows.values() if r["name"] == name_or_did]
        if len(named) != 1:
            raise UnknownFederation(f"no federation named {name_or_did!r} in this ledger")
        return named[0]

    def append(self, *events: Model) -> None:
        """Append participants' events; proposals and votes go with the ledger authority's
        clock stamp (they are decided by its time, never by the member's own)."""
        auth = self.authority()
        if auth is None:
            raise GovernanceError(
                "this data dir does not hold the ledger authority's key; send the proposal or "
                "vote to the federation's node"
            )
        stamp = gov.clock_stamp(self.ledger.books, auth, events, now_ms())
        self.ledger.append(*(events if stamp is None else (stamp, *events)))

    def run(self, state_event: object) -> None:
        """Let the ledger authority's state machine handle a request, and append the result."""
        auth = self.authority()
        if auth is None:
            raise GovernanceError(
                "this data dir does not hold the ledger authority's key; send the request to "
                "the federation's node"
            )
        # every command kind is carried out or refused (decide_on_ledger: match/assert_never)
        decide_on_ledger(self.ledger, auth, state_event, now_ms())


@contextmanager
def open_wallet(data_dir: Path | None, acting: str) -> Iterator[Wallet]:
    root = resolve_data_dir(data_dir)
    keys = Keystore(root / "keys")
    node = keys.load_or_create(NODE_KEY)
    path = root / "ledger.sqlite"
    ledger = Ledger(path, authority=None if path.exists() else node.did)
    try:
        yield Wallet(root=root, keys=keys, ledger=ledger, acting=acting)
    finally:
        ledger.close()


def acting_option(f: Any) -> Any:
    return click.option(
        "--as", "acting", default="default", show_default=True, help="Name of the key that acts."
    )(f)


def json_option(f: Any) -> Any:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")(f)


@click.group(name="icn-wallet", context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="meshbench", prog_name="icn-wallet")
@group_data_dir_option
def main_group() -> None:
    """A member's wallet: keys, balance, stake, federations and mesh policy.

    \b
    Example:
      icn-wallet federation create coop --as founder
      icn-wallet mesh policy view --json
    """


# --- keys, balance, stake --------------------------------------------------------------------
# the same key commands as ``meshbench key`` (one keystore, one way to manage it)
main_group.add_command(meshbench_cli.key)


@main_group.command()
@acting_option
@json_option
@data_dir_option
def balance(acting: str, as_json: bool, data_dir: Path | None) -> None:
    """Spendable balance and bonded stake.

    \b
    Example:
      icn-wallet balance --as alice
    """
    with open_wallet(data_dir, acting) as w:
        me = w.me().did
        books = w.ledger.books
        stake = books.get("stakes", me) or {"bonded": 0, "unbonding": []}
        out = {
            "did": me,
            "balance": books.balance(me),
            "bonded": int(stake["bonded"]),
            "unbonding": sum(int(a) for a, _ in stake["unbonding"]),
        }
        emit(out, as_json=as_json)


@main_group.command()
@click.option("--to", "to_name", required=True, help="Key name (or did:key) to credit.")
@click.option("--amount", type=click.IntRange(min=1), required=True)
@data_dir_option
def faucet(to_name: str, amount: int, data_dir: Path | None) -> None:
    """Mint tokens (the ledger authority only).

    \b
    Example:
      icn-wallet faucet --to alice --amount 500
    """
    with open_wallet(data_dir, "default") as w:
        did = to_name if to_name.startswith("did:") else w.keys.load(to_name).did
        w.run(Faucet(account=did, amount=amount, memo="icn-wallet faucet"))
        click.echo(f"{did} balance {w.ledger.books.balance(did)}")


def _stake(action: str, amount: int, federation: str | None, acting: str, d: Path | None) -> None:
    with open_wallet(d, acting) as w:
        me = w.me()
        req = StakeRequest(
            account=me.did,
            federation=w.federation(federation),
            action=action,  # type: ignore[arg-type]
            amount=amount,
            nonce=len(w.ledger),
            timestamp=now_ms(),
        ).sign(me)
        w.run(req)
        stake = w.ledger.books.get("stakes", me.did) or {"bonded": 0}
        click.echo(f"{action}: bonded {stake['bonded']}, balance {w.ledger.books.balance(me.did)}")


@main_group.command()
@click.option("--amount", type=click.IntRange(min=1), required=True)
@click.option("--federation", default=None)
@acting_option
@data_dir_option
def stake(amount: int, federation: str | None, acting: str, data_dir: Path | None) -> None:
    """Bond tokens as stake.

    \b
    Example:
      icn-wallet stake --amount 100 --as alice
    """
    _stake("bond", amount, federation, acting, data_dir)


@main_group.command()
@click.option("--amount", type=click.IntRange(min=1), required=True)
@click.option("--federation", default=None)
@acting_option
@data_dir_option
def unstake(amount: int, federation: str | None, acting: str, data_dir: Path | None) -> None:
    """Start unbonding stake (released after the policy's lock period).

    \b
    Example:
      icn-wallet unstake --amount 50 --as alice
    """
    _stake("unbond", amount, federation, acting, data_dir)


# --- federations ---------------------------------------------------------------------------
@main_group.group()
def federation() -> None:
    """Create, join and list federations.

    \b
    Example:
      icn-wallet federation create coop --as founder
    """


@federation.command("create")
@click.argument("name")
@click.option("--approval-percentage", type=click.IntRange(1, 100), default=51, show_default=True)
@click.option("--approval-count", type=click.IntRange(min=0), default=0, show_default=True)
@click.option(
    "--voting-period", type=click.IntRange(min=60), default=7 * 24 * 3600, show_default=True
)
@acting_option
@data_dir_option
def federation_create(
    name: str,
    approval_percentage: int,
    approval_count: int,
    voting_period: int,
    acting: str,
    data_dir: Path | None,
) -> None:
    """Create a federation governed from this node.

    \b
    Example:
      icn-wallet federation create coop
    """
    with open_wallet(data_dir, acting) as w:
        fed_key = f"federation-{name}"
        if any(r["name"] == name for r in w.ledger.books.table("federations").values()):
            raise GovernanceError(
                f"a federation named {name!r} already exists in {w.root}; "
                "pick another name, or see 'icn-wallet federation members'"
            )
        if fed_key in w.keys.names():
            raise IdentityError(
                f"the keystore of {w.root} already holds a key {fed_key!r} (from a federation "
                f"created elsewhere?); pick another name than {name!r}"
            )
        fed = w.keys.create(fed_key)
        auth = w.authority()
        assert auth is not None  # this data dir created the ledger
        rules = gov.GovernanceRules(
            approval_percentage=approval_percentage,
            approval_count=approval_count,
            voting_period=voting_period,
        )
        w.ledger.append(create_federation(fed, auth.did, name=name, rules=rules, now_ms=now_ms()))
        click.echo(fed.did)


@federation.command("join")
@click.option("--federation", "fed_name", default=None)
@acting_option
@data_dir_option
def federation_join(fed_name: str | None, acting: str, data_dir: Path | None) -> None:
    """Join a federation whose key this data dir holds (the federation admits you).

    \b
    Example:
      icn-wallet federation join --federation coop --as alice
    """
    with open_wallet(data_dir, acting) as w:
        fed_did = w.federation(fed_name)
        me = w.keys.load_or_create(acting)
        row = gov.federation(w.ledger.books, fed_did)
        try:
            fed_key = w.keys.load(f"federation-{row['name']}")
        except KeyNotFound:
            raise GovernanceError(
                f"admission is signed by the federation; this data dir does not hold its key. "
                f"Send your did ({me.did}) to its operator."
            ) from None
        w.ledger.append(admit(fed_key, me.did, now_ms=now_ms(), ttl_ms=YEAR_MS))
        click.echo(f"{me.did} joined {row['name']} ({fed_did})")


@federation.command("members")
@click.option("--federation", "fed_name", default=None)
@json_option
@data_dir_option
def federation_members(fed_name: str | None, as_json: bool, data_dir: Path | None) -> None:
    """List the current members.

    \b
    Example:
      icn-wallet federation members --json
    """
    with open_wallet(data_dir, "default") as w:
        fed = w.federation(fed_name)
        now = now_ms()
        rows = [
            {"member": m, **_member_row(w, fed, m)} for m in gov.members(w.ledger.books, fed, now)
        ]
        if as_json:
            emit(rows, as_json=True)
        else:
            print_table(rows, ["member", "since", "expires", "via"])


def _member_row(w: Wallet, fed: str, did: str) -> dict[str, Any]:
    row = gov.member(w.ledger.books, fed, did)
    assert row is not None  # did is one of gov.members(...)
    return {"since": row["issued_at"], "expires": row["expires_at"], "via": row["via"]}


# --- mesh policy ---------------------------------------------------------------------------
@main_group.group()
def mesh() -> None:
    """Mesh compute settings.

    \b
    Example:
      icn-wallet mesh policy view
    """


@mesh.group()
def policy() -> None:
    """View, propose, vote on and audit the federation's MeshPolicy.

    \b
    Example:
      icn-wallet mesh policy history
    """


@policy.command("view")
@click.option("--federation", "fed_name", default=None)
@click.option("--version", "version", type=int, default=None, help="A past version.")
@json_option
@data_dir_option
def policy_view(
    fed_name: str | None, version: int | None, as_json: bool, data_dir: Path | None
) -> None:
    """Show the active policy (or any version).

    \b
    Example:
      icn-wallet mesh policy view --json
    """
    with open_wallet(data_dir, "default") as w:
        fed = w.federation(fed_name)
        books = w.ledger.books
        p = books.policy_for(fed) if version is None else gov.policy_version(books, fed, version)
        data = p.to_jsonable()
        data.pop("@type", None)
        for section in data.values():
            if isinstance(section, dict):
                section.pop("@type", None)
        data["policy_cid"] = str(p.cid)
        if as_json:
            emit(data, as_json=True)
        else:
            _print_policy(data)


def _print_policy(data: dict[str, Any], prefix: str = "") -> None:
    for k, v in data.items():
        if isinstance(v, dict):
            _print_policy(v, f"{prefix}{k}.")
        else:
            click.echo(f"{prefix}{k:<{40 - len(prefix)}} {v}")


@policy.command("propose")
@click.option("--update-file", type=InputFile(), required=True)
@click.option("--description", required=True)
@click.option("--federation", "fed_name", default=None)
@click.option("--open-hours", type=click.FloatRange(min=0.01), default=72.0, show_default=True)
@acting_option
@json_option
@data_dir_option
def policy_propose(
    update_file: Path,
    description: str,
    fed_name: str | None,
    open_hours: float,
    acting: str,
    as_json: bool,
    data_dir: Path | None,
) -> None:
    """Propose a policy update from a JSON fragment.

    \b
    Example:
      echo '{"min_fee": 20}' > u.json
      icn-wallet mesh policy propose --update-file u.json --description "More for workers"
    """
    fragment = MeshPolicyFragment.from_file(update_file)
    with open_wallet(data_dir, acting) as w:
        fed = w.federation(fed_name)
        me = w.me()
        rules = gov.GovernanceRules.from_json(gov.federation(w.ledger.books, fed)["rules"])
        now = now_ms()
        open_ms = min(int(open_hours * 3600 * 1000), rules.voting_period * 1000)
        prop = propose(
            w.ledger.books, fed, me, fragment, description=description, now_ms=now, open_ms=open_ms
        )
        w.append(prop)
        emit({"proposal_cid": str(prop.cid)} if as_json else str(prop.cid), as_json=as_json)


@policy.command("list")
@click.option("--federation", "fed_name", default=None)
@json_option
@data_dir_option
def policy_list(fed_name: str | None, as_json: bool, data_dir: Path | None) -> None:
    """List proposals with their tallies.

    \b
    Example:
      icn-wallet mesh policy list
    """
    with open_wallet(data_dir, "default") as w:
        fed = w.federation(fed_name)
        now = now_ms()
        rows = []
        for r in gov.proposals(w.ledger.books, fed, now):
            t = gov.tally(w.ledger.books, r["cid"], now)
            rows.append(
                {
                    "proposal_cid": r["cid"],
                    "status": t.status,
                    "approvals": t.approvals,
                    "rejections": t.rejections,
                    "required": t.required,
                    "proposer": r["proposer"],
                    "description": r["description"],
                    "updates": r["updates"],
                }
            )
        if as_json:
            emit(rows, as_json=True)
        else:
            print_table(
                rows,
                ["proposal_cid", "status", "approvals", "rejections", "required", "description"],
            )


@policy.command("vote")
@click.option("--policy-cid", required=True, help="CID of the proposal.")
@click.option("--approve/--reject", required=True)
@acting_option
@data_dir_option
def policy_vote(policy_cid: str, approve: bool, acting: str, data_dir: Path | None) -> None:
    """Vote on a proposal (once; a second vote is refused).

    \b
    Example:
      icn-wallet mesh policy vote --policy-cid bafy... --approve
    """
    with open_wallet(data_dir, acting) as w:
        me = w.me()
        row = gov.proposal(w.ledger.books, parse_cid(policy_cid, codec="dag-cbor"))
        w.append(
            vote(parse_cid(row["cid"]), row["federation"], me, approve=approve, now_ms=now_ms())
        )
        t = gov.tally(w.ledger.books, row["cid"])
        click.echo(f"{t.status}: {t.approvals} approvals of {t.required} needed")
        auth = w.authority()
        if t.status == "Approved" and auth is not None:
            act = gov.activation_for(w.ledger.books, row["cid"], auth, now_ms())
            w.ledger.append(act)
            click.echo(f"activated: policy version {act.policy_version} ({act.policy_cid})")


@policy.command("history")
@click.option("--federation", "fed_name", default=None)
@json_option
@data_dir_option
def policy_history(fed_name: str | None, as_json: bool, data_dir: Path | None) -> None:
    """Every policy version, linked by CID.

    \b
    Example:
      icn-wallet mesh policy history
    """
    with open_wallet(data_dir, "default") as w:
        fed = w.federation(fed_name)
        rows = w.ledger.books.table("policy_history")
        out = [
            {
                "version": r["version"],
                "policy_cid": r["cid"],
                "previous_policy_cid": r["previous"],
                "proposal": r["proposal"],
                "activated_at": r["activated_at"],
                "activated": _readable_ms(r["activated_at"]),
            }
            for r in sorted(
                (r for r in rows.values() if r["federation"] == fed), key=lambda r: r["version"]
            )
        ]
        if as_json:
            emit(out, as_json=True)
        else:
            print_table(out, ["version", "policy_cid", "previous_policy_cid", "activated"])


@policy.command("diff")
@click.argument("old", type=int)
@click.argument("new", type=int)
@click.option("--federation", "fed_name", default=None)
@json_option
@data_dir_option
def policy_diff(
    old: int, new: int, fed_name: str | None, as_json: bool, data_dir: Path | None
) -> None:
    """Fields that differ between two versions.

    \b
    Example:
      icn-wallet mesh policy diff 1 2
    """
    with open_wallet(data_dir, "default") as w:
        fed = w.federation(fed_name)
        a = gov.policy_version(w.ledger.books, fed, old)
        b = gov.policy_version(w.ledger.books, fed, new)
        changes = {k: {"from": x, "to": y} for k, (x, y) in a.diff(b).items()}
        if as_json:
            emit(changes, as_json=True)
        else:
            for k, c in changes.items():
                click.echo(f"{k}: {json.dumps(c['from'])} -> {json.dumps(c['to'])}")


def _readable_ms(ms: int | None) -> str:
    """A ledger timestamp (ms since the epoch) as UTC ISO 8601, to the second."""
    if ms is None:
        return "-"
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def main(argv: list[str] | None = None) -> None:
    run_cli(main_group, argv)
