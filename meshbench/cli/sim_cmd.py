"""``meshbench sim``: the adversarial simulator on the real protocol engine.

Example::

    meshbench sim --workers 50 --malicious 0.2 --tasks 1000 --verifiers 3 --seed 1 --json
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from meshbench.cli.common import emit

__all__ = ["sim"]


@click.command()
@click.option("--workers", default=50, show_default=True, help="Peers (workers and verifiers).")
@click.option("--malicious", default=0.1, show_default=True, help="Fraction of colluding peers.")
@click.option(
    "--faulty",
    default=0.0,
    show_default=True,
    help="Further fraction spread over wrong, lazy, offline and slow peers.",
)
@click.option(
    "--attackers",
    default=0.0,
    show_default=True,
    help="Further fraction spread over rule attackers: unbonder, clock-liar, silent.",
)
@click.option("--tasks", default=1000, show_default=True)
@click.option("--verifiers", default=3, show_default=True, help="Verifiers asked per task.")
@click.option("--seed", default=0, show_default=True)
@click.option(
    "--ledger",
    "ledger_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also append every event to this SQLite ledger (slower).",
)
@click.option(
    "--table",
    is_flag=True,
    help="Print the verification table instead (schemes x attackers x f; --tasks per cell).",
)
@click.option(
    "--fractions",
    default="0.05,0.1,0.2,0.3",
    show_default=True,
    help="With --table: the fractions f of attackers, comma separated.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def sim(
    workers: int,
    malicious: float,
    faulty: float,
    attackers: float,
    tasks: int,
    verifiers: int,
    seed: int,
    ledger_path: Path | None,
    table: bool,
    fractions: str,
    as_json: bool,
) -> None:
    """Simulate a mesh with dishonest peers and report what the protocol let through.

    Runs the real protocol engine (signatures, commit-reveal, quorum, escrow, slashing)
    with simulated executors on a manual clock.

    With --table, the verification table: executions per accepted task and the finalized
    wrong-accept rate of fixed quorums (k = 1, 2, 3, 5), BOINC-style adaptive replication
    and our adaptive audits, for each attacker class, with the closed-form bound beside.

    \b
    Example:
      meshbench sim --workers 100 --malicious 0.2 --tasks 10000 --seed 1 --json
      meshbench sim --table --tasks 1000 --fractions 0.1,0.3
    """
    if table:
        _table(tasks, workers, fractions, seed, as_json)
        return
    from meshbench.sim.simulator import SimConfig, Simulation

    fractions = (malicious, faulty, attackers)
    if any(not 0.0 <= f <= 1.0 for f in fractions) or sum(fractions) > 1.0:
        raise click.BadParameter(
            "--malicious, --faulty and --attackers are fractions that sum to at most 1"
        )
    if workers < 1 or tasks < 0 or verifiers < 0:
        raise click.BadParameter("--workers must be positive; --tasks and --verifiers >= 0")
    cfg = SimConfig(
        workers=workers,
        malicious=malicious,
        faulty=faulty,
        attackers=attackers,
        tasks=tasks,
        verifiers=verifiers,
        seed=seed,
    )
    simulation = Simulation(cfg)
    if ledger_path is not None:
        from meshbench.store.ledger import Ledger

        simulation.attach_ledger(Ledger(ledger_path, authority=simulation.authority.did))
    report = simulation.run().to_dict()
    if simulation.ledger is not None:
        simulation.ledger.close()
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        report.pop("config")
        emit(report, as_json=False)


def _table(tasks: int, workers: int, fractions: str, seed: int, as_json: bool) -> None:
    from meshbench.sim.table import verification_table

    try:
        fs = tuple(float(x) for x in fractions.split(",") if x.strip())
    except ValueError:
        raise click.BadParameter(f"--fractions must be numbers, not {fractions!r}") from None
    if not fs or any(not 0.0 <= f < 1.0 for f in fs) or tasks < 1:
        raise click.BadParameter("--fractions are in [0, 1) and --tasks is positive")
    result = verification_table(tasks=tasks, workers=workers, fractions=fs, seed=seed)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    click.echo(f"{'scheme':<10} {'attacker':<17} {'f':>5} {'exec/task':>9} "
               f"{'wrong-accept':>12} {'bound':>9}")  # fmt: skip
    for r in result["rows"]:
        click.echo(
            f"{r['scheme']:<10} {r['attacker']:<17} {r['f']:>5} {r['executions_per_task']:>9} "
            f"{r['wrong_accept']:>12.2e} {r['bound']:>9.2e}"
        )
    click.echo(f"({result['seconds']} s)")
