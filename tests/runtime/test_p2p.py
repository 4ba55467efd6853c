"""The mesh over libp2p: an authority node and three worker peers as separate OS processes.

The publisher/authority node gossips the task and provides its module and input; worker
peers offer, fetch the blobs through the content protocol, execute, commit, reveal and judge;
everything travels as signed objects over gossipsub on 127.0.0.1.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from meshbench.exec.wasm import WasmExecutor
from meshbench.runtime.mesh import Mesh

WASM = Path(__file__).resolve().parents[2] / "datasets" / "wasm"


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


@pytest.mark.slow
def test_four_peers_run_verified_tasks_end_to_end(tmp_path: Path) -> None:
    policy = {
        "verification_quorum": {"minimum_verifiers": 2},
        "selection": {"offer_window_ms": 3000},
    }
    workers: list[subprocess.Popen] = []
    with Mesh.join(data_dir=tmp_path / "node", policy=policy) as mesh:
        try:
            addr = mesh.net.addrs[0]
            for i in range(3):
                workers.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "meshbench.runtime.p2p", "worker",
                         "--data-dir", str(tmp_path / f"w{i}"), "--bootstrap", addr,
                         "--authority", mesh.node.authority.did,
                         "--federation", mesh.node.federation],
                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                    )
                )  # fmt: skip

            def bonded() -> int:
                tables = mesh.node.books_tables()
                return sum(1 for s in tables.get("stakes", {}).values() if s["bonded"] >= 200)

            wait_for(lambda: bonded() >= 3, 120, "three funded and bonded worker peers")
            wasm = (WASM / "sha256.wasm").read_bytes()
            handles = [mesh.publish(wasm, f"p2p {i}".encode(), verifiers=2) for i in range(2)]
            for i, h in enumerate(handles):
                r = h.result(timeout=120)
                assert r.outcome == "Accepted", mesh.rejections()
                assert r.output == WasmExecutor().run(wasm, f"p2p {i}".encode()).output
                assert len(r.verifications) == 2 and all(v.approved for v in r.verifications)
            assert mesh.node.verify_ledger().ok
            assert len(mesh.net.peers()) >= 3
        finally:
            for w in workers:
                w.terminate()
            for w in workers:
                try:
                    w.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    w.kill()
