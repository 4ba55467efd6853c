"""mesh.story(task) on a running mesh: a dishonest worker's task, told from the ledger."""

from __future__ import annotations

from pathlib import Path

from meshbench.runtime.mesh import Mesh

WASM = Path(__file__).resolve().parents[2] / "datasets" / "wasm"


def test_story_tells_how_a_wrong_result_was_caught(tmp_path: Path) -> None:
    with Mesh.in_process(
        workers=5,
        data_dir=tmp_path,
        behaviours={0: "wrong"},
        policy={"verification_quorum": {"minimum_verifiers": 2}},
    ) as mesh:
        handles = [
            mesh.publish(WASM / "sha256.wasm", f"story {i}".encode(), fee=100, verifiers=2)
            for i in range(6)
        ]
        results = [h.result(timeout=60) for h in handles]
        for h, r in zip(handles, results, strict=True):
            story = h.story()
            assert story.outcome == r.outcome
            whats = [line.what for line in story.lines]
            assert whats[0] == "TaskIntent" and "published" in whats and "payouts" in whats
            if r.outcome == "Rejected":
                assert "slashed" in whats and "decision Rejected" in whats
            else:
                assert "decision Accepted" in whats
