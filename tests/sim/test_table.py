"""The verification table (issue 19), in a reduced form: the schemes, measured side by side."""

from __future__ import annotations

import json

from click.testing import CliRunner

from meshbench.sim.table import scheme_policy, verification_table


def test_adaptive_audits_cost_less_than_a_quorum_and_let_nothing_wrong_through():
    t = verification_table(
        tasks=240,
        workers=12,
        fractions=(0.2,),
        schemes=("quorum-3", "adaptive"),
        attackers=("wrong", "colluding"),
    )
    rows = {(r["scheme"], r["attacker"]): r for r in t["rows"]}
    assert len(rows) == 4 and all(r["tokens_conserved"] for r in rows.values())
    for attacker in ("always-cheat", "colluding"):
        quorum, ours = rows[("quorum-3", attacker)], rows[("adaptive", attacker)]
        assert ours["executions_per_task"] < quorum["executions_per_task"] - 1.0
        assert ours["wrong_accept"] == 0.0  # finalized: caught on probation, or clawed back
        assert 0.0 <= ours["bound"] <= 1.0 and 0.0 <= quorum["bound"] <= 1.0


def test_schemes_are_valid_policies():
    for name in ("quorum-1", "quorum-5", "boinc", "adaptive"):
        policy, k = scheme_policy(name)
        assert k >= 1 and policy.cid is not None


def test_cli_table_prints_json_rows():
    from meshbench.cli.meshbench import main_group

    out = CliRunner().invoke(
        main_group,
        ["sim", "--table", "--tasks", "30", "--workers", "8", "--fractions", "0.1", "--json"],
    )
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert {"scheme", "attacker", "f", "executions_per_task", "wrong_accept", "bound"} <= set(
        data["rows"][0]
    )
    bad = CliRunner().invoke(main_group, ["sim", "--table", "--fractions", "x"])
    assert bad.exit_code != 0
