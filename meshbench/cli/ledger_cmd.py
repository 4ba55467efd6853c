"""``meshbench ledger verify|rebuild|story|show``: check and refold the SQLite ledger.

Example::

    meshbench ledger verify --json
    meshbench ledger rebuild
    meshbench ledger story TASK_CID
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from meshbench.cli.common import data_dir_option, emit, print_table, resolve_data_dir
from meshbench.core.errors import LedgerError
from meshbench.runtime.clock import wall_clock_ms as _now_ms
from meshbench.store.ledger import Ledger

__all__ = ["ledger"]


def _open(data_dir: Path | None, path: Path | None) -> Ledger:
    db = path or resolve_data_dir(data_dir) / "ledger.sqlite"
    if not db.exists():
        raise LedgerError(f"no ledger at {db} (pass --ledger FILE or --data-dir)")
    return Ledger(db)


_ledger_option = click.option(
    "--ledger",
    "path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Ledger file (default: <data dir>/ledger.sqlite).",
)


@click.group()
def ledger() -> None:
    """Check, refold, fund and show the event ledger.

    \b
    Example:
      meshbench ledger verify --json
    """


@ledger.command("verify")
@_ledger_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@data_dir_option
def verify_cmd(path: Path | None, as_json: bool, data_dir: Path | None) -> None:
    """Check every signature, CID, parent link, fold rule and token conservation.

    Exits 1 when anything is wrong.

    \b
    Example:
      meshbench ledger verify --json
    """
    with _open(data_dir, path) as led:
        report = led.verify()
    emit(report.to_dict(), as_json=as_json)
    if not report.ok:
        sys.exit(1)


@ledger.command("rebuild")
@_ledger_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@data_dir_option
def rebuild_cmd(path: Path | None, as_json: bool, data_dir: Path | None) -> None:
    """Drop the derived tables and refold them from the event DAG.

    Reports whether the refold equals what was stored.

    \b
    Example:
      meshbench ledger rebuild
    """
    with _open(data_dir, path) as led:
        report = led.rebuild()
    emit(report.to_dict(), as_json=as_json)
    if report.problems:
        sys.exit(1)


@ledger.command("story")
@click.argument("task_cid")
@_ledger_option
@click.option("--no-scores", is_flag=True, help="Skip the selection scores (no refold).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@data_dir_option
def story_cmd(
    task_cid: str, path: Path | None, no_scores: bool, as_json: bool, data_dir: Path | None
) -> None:
    """What happened to one task and why: stimuli, events, scores, decision, payouts.

    Example: meshbench ledger story bafyrei... --data-dir ./mesh-data
    """
    from meshbench.store.story import task_story

    with _open(data_dir, path) as led:
        story = task_story(led, task_cid, scores=not no_scores)
    if as_json:
        emit(
            {
                "task_cid": story.task_cid,
                "outcome": story.outcome,
                "lines": [vars(line) for line in story.lines],
            },
            as_json=True,
        )
    else:
        click.echo(str(story))


@ledger.command("balances")
@_ledger_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@data_dir_option
def balances_cmd(path: Path | None, as_json: bool, data_dir: Path | None) -> None:
    """Print every account's balance and bond.

    \b
    Example:
      meshbench ledger balances
    """
    with _open(data_dir, path) as led:
        accounts = led.books.table("accounts")
        stakes = led.books.table("stakes")
    rows = [
        {"account": a, "balance": accounts.get(a, 0), "bonded": stakes.get(a, {}).get("bonded", 0)}
        for a in sorted(set(accounts) | set(stakes))
    ]
    if as_json:
        emit(rows, as_json=True)
    else:
        print_table(rows)


@ledger.command("faucet")
@click.argument("account")
@click.argument("amount", type=int)
@click.option(
    "--key", default="authority", show_default=True, help="Keystore name of the authority."
)
@click.option("--memo", default="faucet", show_default=True)
@_ledger_option
@data_dir_option
def faucet_cmd(
    account: str, amount: int, key: str, memo: str, path: Path | None, data_dir: Path | None
) -> None:
    """Mint AMOUNT tokens to ACCOUNT (genesis/faucet), signed by the ledger authority.

    Creates the ledger (owned by that key) when it does not exist yet.
    \b
    Example:
      meshbench ledger faucet did:key:z6Mk... 1000
    """
    from meshbench.core.protocol import Faucet
    from meshbench.store.authority import decide_on_ledger
    from meshbench.store.keystore import Keystore

    root = resolve_data_dir(data_dir)
    authority = Keystore(root / "keys").load(key)
    db = path or root / "ledger.sqlite"
    with Ledger(db, authority=authority.did) as led:
        mint = Faucet(account=account, amount=amount, memo=memo)
        decide_on_ledger(led, authority, mint, _now_ms())
        click.echo(f"{account} now holds {led.balance(account)}")
