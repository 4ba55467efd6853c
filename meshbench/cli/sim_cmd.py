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
    as_json: bool,
) -> None:
    """Simulate a mesh with dishonest peers and report what the protocol let through.

    Runs the real protocol engine (signatures, commit-reveal, quorum, escrow, slashing)
    with simulated executors on a manual clock.

    \b
    Example:
      meshbench sim --workers 100 --malicious 0.2 --tasks 10000 --seed 1 --json
    """
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
