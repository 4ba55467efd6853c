"""A task's story, read back from the ledger's journal and events."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from meshbench.cli.meshbench import main_group as main
from meshbench.core.errors import LedgerError
from meshbench.sim.simulator import SimConfig, Simulation
from meshbench.store.ledger import Ledger
from meshbench.store.story import task_story


@pytest.fixture(scope="module")
def sim_ledger(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("story") / "ledger.sqlite"
    sim = Simulation(SimConfig(workers=12, malicious=0.25, tasks=40, seed=3))
    sim.attach_ledger(Ledger(path, authority=sim.authority.did))
    sim.run()
    sim.ledger.close()
    return path


def _tasks_by_outcome(led: Ledger) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for key, row in led.books.table("tasks").items():
        out.setdefault(row["outcome"] or "none", []).append(key)
    return out


def test_story_of_a_rejected_task_says_who_was_chosen_caught_and_slashed(sim_ledger):
    with Ledger(sim_ledger) as led:
        rejected = _tasks_by_outcome(led).get("Rejected")
        assert rejected, "the seed should give the colluders a rejected task"
        story = task_story(led, rejected[0])
    text = str(story)
    assert story.outcome == "Rejected"
    whats = [line.what for line in story.lines]
    for step in ("published", "offer", "selection scores", "commitment", "reveal", "verdict"):
        assert step in whats or any(w.startswith(step) for w in whats), step
    assert "decision Rejected" in whats and "slashed" in whats and "payouts" in whats
    assert "(chosen)" in text and "wrong_result" in text
    ids = [int(line.stimulus[1:]) for line in story.lines if line.stimulus]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)  # stimulus ids, in order
    times = [line.at_ms for line in story.lines if line.stimulus]
    assert times[0] == 0 and times == sorted(times)  # the authority's times, from publication


def test_story_of_an_accepted_task_and_the_cli(sim_ledger):
    with Ledger(sim_ledger) as led:
        accepted = _tasks_by_outcome(led)["Accepted"][0]
    result = CliRunner().invoke(main, ["ledger", "story", accepted, "--ledger", str(sim_ledger)])
    assert result.exit_code == 0, result.output
    assert re.search(r"decision Accepted\s+\d approve", result.output)
    assert "worker" in result.output and "verifier" in result.output  # payouts by role
    as_json = CliRunner().invoke(
        main, ["ledger", "story", accepted, "--ledger", str(sim_ledger), "--json", "--no-scores"]
    )
    assert as_json.exit_code == 0 and '"outcome": "Accepted"' in as_json.output
    assert "selection scores" not in as_json.output


def test_unknown_task_is_a_typed_error(sim_ledger):
    with Ledger(sim_ledger) as led, pytest.raises(LedgerError, match="no journalled stimulus"):
        task_story(led, "bafyreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy")
