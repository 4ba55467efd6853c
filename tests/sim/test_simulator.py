"""A small simulation on the real engine: conservation, detection, reputation by class."""

from __future__ import annotations

import json

from click.testing import CliRunner

from meshbench.cli.meshbench import main_group
from meshbench.core.policy import MeshPolicy
from meshbench.core.quorum import binomial_wrong_accept_bound
from meshbench.sim.simulator import SimConfig, run_simulation


def test_small_simulation_conserves_tokens_and_ranks_honest_peers_first():
    r = run_simulation(SimConfig(workers=16, malicious=0.25, faulty=0.25, tasks=60, seed=3))
    assert r.tasks == 60
    assert r.tokens_before == r.tokens_after
    assert r.accepted + r.refunded == r.tasks
    assert r.wrong_accepted <= r.accepted
    rep = r.reputation_by_class
    assert rep["honest"] > max(rep["colluding"], rep["wrong"], rep["offline"])
    assert r.executions_per_task >= 4  # one worker and at least three verifiers


def test_simulation_is_deterministic_for_a_seed():
    a = run_simulation(SimConfig(workers=10, malicious=0.2, tasks=15, seed=11)).to_dict()
    b = run_simulation(SimConfig(workers=10, malicious=0.2, tasks=15, seed=11)).to_dict()
    a.pop("seconds"), b.pop("seconds")
    assert a == b


def test_binomial_bound_grows_with_the_dishonest_fraction():
    p = MeshPolicy()
    bounds = [binomial_wrong_accept_bound(f, p, 3) for f in (0.1, 0.2, 0.3)]
    assert bounds == sorted(bounds) and bounds[0] > 0
    assert binomial_wrong_accept_bound(0.0, p, 3) == 0


def test_sim_cli_prints_one_json_object(tmp_path):
    ledger = tmp_path / "sim.sqlite"
    runner = CliRunner()
    out = runner.invoke(
        main_group,
        [
            "sim",
            "--workers",
            "10",
            "--malicious",
            "0.2",
            "--tasks",
            "12",
            "--seed",
            "1",
            "--ledger",
            str(ledger),
            "--json",
        ],
    )
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    for key in (
        "tasks",
        "accepted",
        "wrong_accepted",
        "refunded",
        "disputes",
        "executions_per_task",
        "tokens_before",
        "tokens_after",
        "reputation_by_class",
    ):
        assert key in data
    assert "honest" in data["reputation_by_class"]
    verify = runner.invoke(main_group, ["ledger", "verify", "--ledger", str(ledger), "--json"])
    assert verify.exit_code == 0, verify.output
    assert json.loads(verify.output)["ok"] is True
    rebuild = runner.invoke(main_group, ["ledger", "rebuild", "--ledger", str(ledger)])
    assert rebuild.exit_code == 0
    balances = runner.invoke(main_group, ["ledger", "balances", "--ledger", str(ledger), "--json"])
    assert balances.exit_code == 0


def test_sim_cli_rejects_bad_fractions():
    out = CliRunner().invoke(main_group, ["sim", "--malicious", "1.5"])
    assert out.exit_code != 0


def test_rule_attackers_gain_nothing_and_tokens_are_conserved():
    """Issue 18's attackers in numbers: an unbonder is slashed anyway, a clock liar's
    backdated commitments are refused, a silent verifier is penalised; none ends up better
    off than an honest peer, nothing wrong is accepted and no token is created or lost."""
    from meshbench.sim.simulator import ATTACKERS

    r = run_simulation(SimConfig(workers=24, malicious=0.0, attackers=0.375, tasks=150, seed=2))
    assert set(r.peers_by_class) == {"honest", *ATTACKERS}
    assert r.tokens_before == r.tokens_after
    assert r.wrong_accepted == 0
    assert r.refused_by_class.get("clock-liar", 0) > 0
    for kind in ATTACKERS:
        assert r.slashed_by_class.get(kind, 0) > 0, kind
        assert r.net_by_class[kind] < r.net_by_class["honest"], (kind, r.net_by_class)
