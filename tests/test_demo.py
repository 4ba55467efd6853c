"""``make demo``: the same seed tells the same story, and it shows the cheater's slash."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from meshbench.cli.meshbench import main
from meshbench.demo import EXAMPLES, run_demo

#: Lines that differ between two runs by design: folders, ports and seconds.
VARIABLE = re.compile(r"^(data dir |mesh up in |demo done in )")
STORY = "\n== the story of the task"


def _comparable(out: str) -> list[str]:
    """The printed run without its variable lines and without the story's journal (whose
    order is the order answers arrived in; the decisions it tells are in the tables)."""
    head, _, tail = out.partition(STORY)
    summary = [line for line in tail.splitlines() if "tasks accepted" in line]
    return [line for line in head.splitlines() if not VARIABLE.match(line)] + summary


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_same_seed_tells_the_same_story(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # `make demo` as a user runs it (Dask worker processes) ...
    try:
        main(["demo", "--data-dir", str(tmp_path / "a")])
    except SystemExit as exc:
        assert not exc.code, capsys.readouterr().err
    first = capsys.readouterr().out
    # ... and again, in threads: the same keys, offers, choices, verdicts and slash
    lines: list[str] = []
    report = run_demo(tmp_path / "b", processes=False, say=lines.append)
    second = "\n".join(lines) + "\n"
    assert _comparable(first) == _comparable(second)

    assert report.ledger_ok and report.accepted + report.rejected == len(EXAMPLES)
    assert report.rejected >= 1 and report.slashes, "the dishonest worker is caught"
    cheater = {worker for _, outcome, worker in report.tasks if outcome == "Rejected"}
    assert {account for _, account, _, _ in report.slashes} == cheater
    assert "== slashes (the dishonest worker's bond penalties" in second
    assert f"{report.accepted}/{len(EXAMPLES)} tasks accepted" in second
    assert f"{sum(s[3] for s in report.slashes)} slashed from the dishonest worker's bond" in (
        second
    )
    assert "the story of the task the dishonest worker got" in first


def test_another_seed_names_other_parties(tmp_path: Path) -> None:
    from meshbench.runtime.mesh import MESH_KEYS, seed_keys
    from meshbench.store.keystore import Keystore

    a, b, c = (Keystore(tmp_path / n) for n in "abc")
    seed_keys(a, b"one", MESH_KEYS)
    seed_keys(b, b"one", MESH_KEYS)
    seed_keys(c, b"two", MESH_KEYS)
    dids = {name: (a.load(name).did, b.load(name).did, c.load(name).did) for name in MESH_KEYS}
    for name, (x, y, z) in dids.items():
        assert x == y != z, name
    assert len({x for x, _, _ in dids.values()}) == len(MESH_KEYS)  # one key per role
    seed_keys(a, b"one", MESH_KEYS)  # again: the keys are there, nothing changes

    from meshbench.core.errors import IdentityError

    with pytest.raises(IdentityError, match="not made from this seed"):
        seed_keys(a, b"two", MESH_KEYS)
