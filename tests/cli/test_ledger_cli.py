"""``meshbench ledger faucet|balances|verify|rebuild``."""

from __future__ import annotations

import json

from click.testing import CliRunner

from meshbench.cli.meshbench import main, main_group


def test_faucet_then_verify(tmp_path, monkeypatch):
    monkeypatch.setenv("MESHBENCH_HOME", str(tmp_path))
    runner = CliRunner()
    assert runner.invoke(main_group, ["key", "new", "--name", "authority"]).exit_code == 0
    alice = runner.invoke(main_group, ["key", "new", "--name", "alice"]).output.strip()
    out = runner.invoke(main_group, ["ledger", "faucet", alice, "500"])
    assert out.exit_code == 0, out.output
    rows = json.loads(runner.invoke(main_group, ["ledger", "balances", "--json"]).output)
    assert rows == [{"account": alice, "balance": 500, "bonded": 0}]
    report = json.loads(runner.invoke(main_group, ["ledger", "verify", "--json"]).output)
    assert report["ok"] and report["tokens_minted"] == 500


def test_errors_go_to_stderr_with_exit_1(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MESHBENCH_HOME", str(tmp_path))
    try:
        main(["ledger", "verify"])
    except SystemExit as exc:
        assert exc.code == 1
    assert "no ledger" in capsys.readouterr().err
