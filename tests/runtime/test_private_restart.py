"""A node whose ledger holds a private task restarts: the journal replays in order."""

from __future__ import annotations

from pathlib import Path

from meshbench.runtime.mesh import Mesh

WASM = Path(__file__).resolve().parents[2] / "datasets" / "wasm"


def test_a_ledger_with_a_private_task_restores(tmp_path: Path) -> None:
    wasm = (WASM / "sha256.wasm").read_bytes()
    with Mesh.in_process(workers=3, data_dir=tmp_path) as mesh:
        first = mesh.publish(wasm, b"private", private=True, verifiers=2).result(timeout=60)
        assert first.accepted
    with Mesh.in_process(workers=3, data_dir=tmp_path) as again:  # restore replays the journal
        assert again.node.state_of(first.task_cid) == "Settled"
        assert again.publish(wasm, b"next", private=True, verifiers=2).result(timeout=60).accepted
        assert again.node.verify_ledger().ok
