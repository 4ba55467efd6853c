"""The mesh over libp2p: an authority node and three worker peers as separate OS processes.

The publisher/authority node gossips the task and provides its module and input; worker
peers offer, fetch the blobs through the content protocol, execute, commit, reveal and judge;
everything travels as signed objects over gossipsub on 127.0.0.1.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from meshbench.exec.wasm import WasmExecutor
from meshbench.runtime.mesh import Mesh
from meshbench.testing.netmesh import wait_until as wait_for

WASM = Path(__file__).resolve().parents[2] / "datasets" / "wasm"


@pytest.mark.slow
@pytest.mark.timeout(300)
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


def _start_node(data: Path, *extra: str) -> tuple[subprocess.Popen, dict]:
    import json

    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("mesh-cli")), "start", "--data-dir", str(data),
         "--listen", "/ip4/127.0.0.1/tcp/0", "--no-mdns", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    line = proc.stdout.readline()  # the node prints one JSON line when it is ready
    if not line:
        raise RuntimeError(f"node did not start: {proc.stderr.read()[-2000:]}")
    return proc, json.loads(line)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_mesh_cli_roles_publish_and_follow_a_task(tmp_path: Path) -> None:
    from meshbench.net import control

    procs: list[subprocess.Popen] = []
    try:
        policy = tmp_path / "policy.json"
        policy.write_text('{"verification_quorum": {"minimum_verifiers": 2}}')
        auth, info = _start_node(
            tmp_path / "auth", "--role", "authority", "--policy-file", str(policy)
        )
        procs.append(auth)
        status = control.request(tmp_path / "auth", "status")
        fed = status["protocol"]["federation"]
        assert status["protocol"]["role"] == "authority"
        for i in range(3):
            w, _ = _start_node(
                tmp_path / f"w{i}", "--role", "worker", "--authority", info["did"],
                "--federation", fed, "--bootstrap", info["addrs"][0],
            )  # fmt: skip
            procs.append(w)
        wait_for(
            lambda: control.request(tmp_path / "auth", "status")["protocol"]["bonded_workers"] >= 3,
            120,
            "three workers funded and bonded",
        )
        wasm = control.request(tmp_path / "auth", "provide", path=str(WASM / "hello.wasm"))
        data = tmp_path / "input.txt"
        data.write_text("")
        inp = control.request(tmp_path / "auth", "provide", path=str(data))
        out = control.request(
            tmp_path / "auth", "publish-task", wasm_cid=wasm["cid"], input_cid=inp["cid"],
            fee=100, verifiers=2, cpu_cycles=1_000_000,
        )  # fmt: skip
        task_cid = out["task_cid"]
        wait_for(
            lambda: (
                control.request(tmp_path / "auth", "task-status", task_cid=task_cid)["state"]
                in ("Settled", "Expired")
            ),
            120,
            "the task to settle",
        )
        final = control.request(tmp_path / "auth", "task-status", task_cid=task_cid)
        refused = control.request(tmp_path / "auth", "rejections")
        assert final["outcome"] == "Accepted" and final["approvals"] == 2, (final, refused)
        # a worker node makes a manual offer for a task it has seen
        offer = control.request(tmp_path / "w0", "offer-execution", task_cid=task_cid, cost=10)
        assert offer["cost"] == 10 and offer["offer_cid"].startswith("bafyrei")
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
