"""Issue 19 end to end on a Dask LocalCluster: a dishonest worker under sampled audits is
caught, its earlier held results are re-checked by the referee and the wrong ones clawed
back; tokens are conserved and the ledger verifies."""

from __future__ import annotations

from pathlib import Path

import pytest

from meshbench.runtime.mesh import Mesh

WASM = Path(__file__).resolve().parents[2] / "datasets" / "wasm"
POLICY = {
    "audit": {"enabled": True, "rate_ppm": 300_000, "probation_tasks": 1},
    "selection": {"reputation_weight": 0.0},  # the cheater keeps being chosen
}


@pytest.mark.timeout(240)
def test_sampled_audits_catch_a_trust_then_cheat_worker_and_claw_back(tmp_path: Path) -> None:
    with Mesh.local(
        workers=3,
        processes=False,
        data_dir=tmp_path,
        behaviours={0: "trust-then-cheat"},
        policy=POLICY,
    ) as mesh:
        minted = mesh.node.snapshot().books.minted()
        results = []
        for i in range(60):  # bounded: stop once a clawback has happened
            results.append(mesh.publish(wasm=WASM / "hello.wasm", input=f"t{i}").result(60))
            if len(mesh.events().filter(type="ResultClawedBack")):
                break
        events = mesh.events()
        drawn = events.filter(type="AuditDrawn")
        assert len(drawn) == len(results)  # every result drawn for (or against) an audit
        executions = len(results) + len(events.filter(type="VerificationReceipt"))
        assert executions < 2 * len(results)  # far fewer than 1 + k per task
        assert len(events.filter(type="RefereeRuled")) >= 1  # a mismatch went to the referee
        claws = events.filter(type="ResultClawedBack")
        assert len(claws) >= 1, "no wrong result was held and clawed back in 60 tasks"
        books = mesh.node.snapshot().books
        assert books.token_total() == books.minted() == minted  # nothing created or lost
        assert mesh.node.verify_ledger().ok
