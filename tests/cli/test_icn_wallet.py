"""The scripted governance session of the governance issue, through the icn-wallet CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from meshbench.cli.icn_wallet import main
from meshbench.store.ledger import Ledger

SPEC_EXAMPLE = {
    "reward_settings": {
        "worker_percentage": 75,
        "verifier_percentage": 20,
        "platform_fee_percentage": 5,
    },
    "verification_quorum": {"required_percentage": 66, "minimum_verifiers": 3},
}


class Wallet:
    def __init__(self, home: Path, capsys: pytest.CaptureFixture[str]) -> None:
        self.home, self.capsys = home, capsys

    def __call__(self, *argv: str, ok: bool = True) -> str:
        code = 0
        try:
            main([*argv, "--data-dir", str(self.home)])
        except SystemExit as exc:
            code = int(exc.code or 0)
        out, err = self.capsys.readouterr()
        if ok:
            assert code == 0, err
        else:
            assert code == 1 and err.startswith("error: "), (code, err)
            return err
        return out

    def events(self) -> int:
        with Ledger(self.home / "ledger.sqlite") as ledger:
            return len(ledger)


@pytest.fixture
def wallet(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Wallet:
    w = Wallet(tmp_path, capsys)
    w("federation", "create", "coop", "--as", "founder")
    for m in ("alice", "bob", "carol"):
        w("federation", "join", "--federation", "coop", "--as", m)
    return w


def test_three_member_session(wallet: Wallet, tmp_path: Path) -> None:
    w = wallet
    view = json.loads(w("mesh", "policy", "view", "--json"))
    assert view["policy_version"] == 1 and view["reward_settings"]["worker_percentage"] == 90
    update = tmp_path / "update.json"
    update.write_text(json.dumps(SPEC_EXAMPLE))
    cid = w(
        "mesh", "policy", "propose", "--update-file", str(update),
        "--description", "Increase worker rewards", "--as", "alice",
    ).strip()  # fmt: skip
    [row] = json.loads(w("mesh", "policy", "list", "--json"))
    assert (row["proposal_cid"], row["status"], row["required"]) == (cid, "Open", 2)
    assert "Open" in w("mesh", "policy", "vote", "--policy-cid", cid, "--approve", "--as", "alice")
    out = w("mesh", "policy", "vote", "--policy-cid", cid, "--approve", "--as", "bob")
    assert "Approved" in out and "activated: policy version 2" in out
    view2 = json.loads(w("mesh", "policy", "view", "--json"))
    assert view2["policy_version"] == 2
    assert view2["previous_policy_cid"] == view["policy_cid"]
    r = view2["reward_settings"]
    assert (r["worker_percentage"], r["verifier_percentage"], r["platform_fee_percentage"]) == (
        75, 20, 5,
    )  # fmt: skip
    history = json.loads(w("mesh", "policy", "history", "--json"))
    assert [h["version"] for h in history] == [1, 2]
    assert history[1]["previous_policy_cid"] == history[0]["policy_cid"] == view["policy_cid"]
    old = json.loads(w("mesh", "policy", "view", "--version", "1", "--json"))
    assert old["reward_settings"]["worker_percentage"] == 90
    diff = json.loads(w("mesh", "policy", "diff", "1", "2", "--json"))
    assert diff["reward_settings.worker_percentage"] == {"from": 90, "to": 75}
    members = json.loads(w("federation", "members", "--json"))
    assert len(members) == 3


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ('{"reward_settings": {"worker_pct": 75}}', "unknown policy field"),
        ('{"reward_settings": {"worker_percentage": "75"}}', "Expected `int`"),
        ('{"reward_settings": {"worker_percentage": 75}}', "sum to 85"),
    ],
)
def test_bad_updates_write_nothing(
    wallet: Wallet, tmp_path: Path, content: str, message: str
) -> None:
    before = wallet.events()
    f = tmp_path / "u.json"
    f.write_text(content)
    err = wallet(
        "mesh", "policy", "propose", "--update-file", str(f), "--description", "x",
        "--as", "alice", ok=False,
    )  # fmt: skip
    assert message in err and wallet.events() == before


def test_bad_votes_write_nothing(wallet: Wallet, tmp_path: Path) -> None:
    w = wallet
    f = tmp_path / "u.json"
    f.write_text('{"min_fee": 20}')
    cid = w(
        "mesh", "policy", "propose", "--update-file", str(f), "--description", "x",
        "--as", "alice",
    ).strip()  # fmt: skip
    w("mesh", "policy", "vote", "--policy-cid", cid, "--approve", "--as", "alice")
    before = w.events()
    assert "DoubleVote" in w(
        "mesh", "policy", "vote", "--policy-cid", cid, "--reject", "--as", "alice", ok=False
    )
    w("key", "new", "--name", "mallory")
    assert "NotAMember" in w(
        "mesh", "policy", "vote", "--policy-cid", cid, "--approve", "--as", "mallory", ok=False
    )
    unknown = "bafyreigbtj4x7ip5legnfznufuopl4sg4knzc2cof6duas4b3q2fy6swua"
    assert "no proposal" in w(
        "mesh", "policy", "vote", "--policy-cid", unknown, "--approve", "--as", "bob", ok=False
    )
    assert w.events() == before
    w("mesh", "policy", "vote", "--policy-cid", cid, "--approve", "--as", "bob")
    after = w.events()
    assert "ProposalClosed" in w(
        "mesh", "policy", "vote", "--policy-cid", cid, "--approve", "--as", "carol", ok=False
    )
    assert w.events() == after


def test_keys_balance_stake(wallet: Wallet) -> None:
    w = wallet
    did = w("key", "show", "--name", "alice").strip()
    w("faucet", "--to", "alice", "--amount", "500")
    w("stake", "--amount", "150", "--as", "alice")
    bal = json.loads(w("balance", "--as", "alice", "--json"))
    assert bal == {"did": did, "balance": 350, "bonded": 150, "unbonding": 0}
    assert "InsufficientFunds" in w("stake", "--amount", "10000", "--as", "alice", ok=False)
    w("unstake", "--amount", "50", "--as", "alice")
    bal = json.loads(w("balance", "--as", "alice", "--json"))
    assert (bal["bonded"], bal["unbonding"]) == (100, 50)
    with Ledger(w.home / "ledger.sqlite") as ledger:
        assert ledger.verify().ok
