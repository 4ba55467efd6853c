"""The Dask backend: a LocalCluster, and a headless cluster of separate OS processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import polars as pl
import pytest

from meshbench.runtime.mesh import Mesh
from meshbench.testing.netmesh import wait_until as wait_for

WASM = Path(__file__).resolve().parents[2] / "datasets" / "wasm"
BIN = Path(sys.executable).parent


def test_local_cluster_in_threads(tmp_path: Path) -> None:
    before = _listening()
    with Mesh.local(workers=3, processes=False, data_dir=tmp_path) as mesh:
        # the dashboard, and every socket the cluster opened, on 127.0.0.1 only
        assert mesh.dashboard_link
        url = urlsplit(mesh.dashboard_link)
        opened = _listening() - before
        assert url.hostname == "127.0.0.1" and ("127.0.0.1", url.port) in opened
        assert {ip for ip, _ in opened} == {"127.0.0.1"}, opened
        handles = mesh.map(WASM / "sha256.wasm", [b"a", b"b", b"c"], progress=False)
        assert all(h.result().accepted for h in handles)
        # executions were spread over the workers, each verified by the others
        receipts = mesh.receipts()
        for task in receipts["task_cid"].unique():
            peers = receipts.filter(pl.col("task_cid") == task)["peer"].to_list()
            assert len(peers) == len(set(peers)) == 3  # worker + 2 verifiers, all distinct
        assert mesh.node.verify_ledger().ok


def _listening() -> set[tuple[str, int]]:
    import psutil

    return {
        (c.laddr.ip, c.laddr.port)
        for c in psutil.Process().net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN
    }


@pytest.fixture
def headless_cluster(tmp_path: Path) -> Iterator[tuple[str, dict[str, subprocess.Popen]]]:
    """``dask scheduler`` and three ``dask worker`` processes on 127.0.0.1."""
    sched_file = tmp_path / "scheduler.json"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    procs: dict[str, subprocess.Popen] = {}
    procs["scheduler"] = subprocess.Popen(
        [str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", "0",
         "--dashboard-address", "127.0.0.1:0", "--scheduler-file", str(sched_file)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for(sched_file.exists, 60, "the scheduler file")
        wait_for(lambda: "address" in sched_file.read_text(), 10, "the scheduler address")
        address = json.loads(sched_file.read_text())["address"]
        for i in range(3):
            procs[f"w{i}"] = subprocess.Popen(
                [str(BIN / "dask"), "worker", address, "--name", f"w{i}", "--nthreads", "1",
                 "--host", "127.0.0.1", "--no-nanny", "--memory-limit", "1GiB"],
                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
        yield address, procs
    finally:
        for p in procs.values():
            p.kill()
        for p in procs.values():
            p.wait(timeout=30)


@pytest.mark.slow
def test_headless_cluster_survives_a_killed_worker(
    headless_cluster: tuple[str, dict[str, subprocess.Popen]], tmp_path: Path
) -> None:
    address, _procs = headless_cluster
    from distributed import Client

    with Client(address, timeout=60) as probe:
        probe.wait_for_workers(3, timeout=60)
    policy = {
        "scheduling": {"task_timeout": 6},
        "verification_quorum": {"minimum_verifiers": 1, "verification_timeout": 8},
    }
    with Mesh.connect(address, data_dir=tmp_path, policy=policy) as mesh:
        # first, ordinary tasks through separate worker processes
        quick = mesh.map(WASM / "sha256.wasm", [b"x", b"y"], verifiers=1, progress=False)
        assert all(h.result().accepted for h in quick)
        # then a long task (a few seconds of fuel) whose worker is killed mid-run
        pids = mesh.client.run(os.getpid)
        from meshbench.core.types import CapabilityScope

        long = mesh.publish(
            WASM / "loop.wasm", b"", fee=100_000, verifiers=1,
            scope=CapabilityScope(cpu_cycles=3_000_000_000), deadline_s=120,
        )  # fmt: skip
        assigned: list[str] = []

        def assigned_worker() -> bool:
            frame = mesh.offers().filter((pl.col("task_cid") == str(long.cid)) & pl.col("selected"))
            assigned[:] = frame["worker"].to_list()
            return bool(assigned)

        wait_for(assigned_worker, 60, "the long task's assignment")
        victim = mesh.node.backend.address_of(assigned[0])
        os.kill(pids[victim], signal.SIGKILL)
        result = long.result(timeout=90)
        # the task was reassigned (or, if no worker was left, expired and refunded):
        # either way it settled once, and no token was created or lost
        # (Failed: a verified out-of-fuel, issue 23 item 4)
        assert result.outcome in ("Accepted", "Failed", "Expired", "NoConsensus")
        settled = mesh.payouts().filter(pl.col("task_cid") == str(long.cid))
        assert settled["amount"].sum() == 100_000
        assert mesh.node.verify_ledger().ok
    # the same (now smaller) cluster runs a headless batch from the CLI
    batch = tmp_path / "tasks.json"
    batch.write_text(json.dumps({
        "defaults": {"verifiers": 1, "fee": 100},
        "tasks": [{"wasm": str(WASM / "sha256.wasm"), "input_text": "a"},
                  {"wasm": str(WASM / "wordcount.wasm"), "input_text": "b c"}],
    }))  # fmt: skip
    from meshbench.cli.meshbench import main

    report = tmp_path / "report.json"
    try:
        main(["cluster", "run", str(batch), "--scheduler", address, "--report", str(report),
              "--data-dir", str(tmp_path / "batch")])  # fmt: skip
    except SystemExit as exc:
        assert exc.code in (0, None)
    summary = json.loads(report.read_text())["summary"]
    assert summary["accepted"] == 2 and summary["ledger_ok"] and summary["workers"] == 2


def test_a_request_for_a_worker_not_known_yet_waits_for_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker restarted by its nanny is back under a new address seconds later: a request
    for it meanwhile waits for it (off the caller's thread), and one for a key no worker
    holds is answered UnknownPeer after the wait."""
    import queue

    import meshbench.runtime.dask_backend as dask_backend
    from meshbench.core.encoding import blob_cid
    from meshbench.core.errors import UnknownPeer

    monkeypatch.setattr(dask_backend, "UNKNOWN_WORKER_WAIT_S", 1.0)
    with Mesh.local(workers=2, processes=False, data_dir=tmp_path) as mesh:
        backend = mesh.node.backend
        backend.describe(0)
        did = next(iter(backend._addr))
        backend._addr.clear()  # as after a restart: no address known for anyone
        answers: queue.Queue = queue.Queue()
        backend.reveal(did, blob_cid(b"no such task"), answers.put)
        backend.reveal("did:key:z6MkNobodyHoldsThisKey", blob_cid(b"x"), answers.put)
        got = [answers.get(timeout=30), answers.get(timeout=30)]
        assert did in backend._addr  # learnt while the request waited
        # one reached the worker (which has no such task), the other found no worker
        unknown = [a for a in got if isinstance(a, UnknownPeer)]
        assert len(unknown) == 1 and "Nobody" in str(unknown[0]), got
