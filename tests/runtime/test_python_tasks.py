"""Python functions published to a mesh: verified, a dishonest worker caught, a Polars frame.

Runs on the in-process backend (threads), a Dask LocalCluster in threads and two libp2p worker
peer processes; all load the runtime from the shared disk cache (compiled once per host).
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from meshbench.core.errors import ProtocolError
from meshbench.core.types import CapabilityScope
from meshbench.exec.python_task import PythonTaskFailed
from meshbench.runtime.mesh import Mesh
from meshbench.runtime.python_tasks import results_frame

pytestmark = pytest.mark.timeout(900)  # a fresh host compiles the runtime first

SMALL = CapabilityScope(memory_mb=256, cpu_cycles=10**9, io_mb=4)


def collatz(n):
    steps = 0
    while n != 1:
        n = n // 2 if n % 2 == 0 else 3 * n + 1
        steps += 1
    return {"steps": steps, "label": LABEL}


LABEL = "collatz"


def fails(x):
    return x / 0


def test_publish_and_map_python_functions_in_process(tmp_path: Path) -> None:
    # one verifier per task: once the cheater is caught it verifies no more (its reputation),
    # and the two honest workers must still make a worker and a verifier
    policy = {"verification_quorum": {"minimum_verifiers": 1}}
    with Mesh.in_process(
        workers=3, data_dir=tmp_path, executors=("python",), behaviours={0: "wrong"},
        policy=policy,
    ) as mesh:  # fmt: skip
        handles = mesh.map(collatz, [6, 7, 27], verifiers=1, scope=SMALL, progress=False)
        frame = results_frame(handles)
        assert isinstance(frame, pl.DataFrame) and frame.height == 3
        accepted = frame.filter(pl.col("outcome") == "Accepted")
        assert accepted.height >= 1
        expected = {6: 8, 7: 16, 27: 111}
        for row in accepted.iter_rows(named=True):
            assert row["label"] == "collatz" and row["steps"] in expected.values()
        rejected = frame.filter(pl.col("outcome") == "Rejected")
        # the cheating worker (index 0) is caught whenever it was chosen
        assert rejected.height + accepted.height == 3
        failed = mesh.publish(python=fails, args=(1,), verifiers=1, scope=SMALL).result(120)
        if failed.accepted:  # the failure itself is the verified result
            with pytest.raises(PythonTaskFailed, match="ZeroDivisionError"):
                failed.value()
        with pytest.raises(ProtocolError):
            mesh.publish(b"\0asm", python=collatz)

        @mesh.task(scope=SMALL, verifiers=1)
        def double(x):
            return 2 * x

        assert double.local(4) == 8 and double.__name__ == "double"
        value = None
        for n in range(5):  # the cheating worker's turn gives a rejection, not a value
            result = double.publish(21 + n).result(120)
            if result.accepted:
                value = result.value()
                break
        assert value is not None and value == 2 * (21 + n)
        assert mesh.node.verify_ledger().ok


def test_python_task_over_dask_threads(tmp_path: Path) -> None:
    with Mesh.local(workers=2, processes=False, data_dir=tmp_path, executors=("python",)) as mesh:
        result = mesh.publish(python=collatz, args=(27,), verifiers=1, scope=SMALL).result(300)
        assert result.accepted, result
        assert result.value() == {"steps": 111, "label": "collatz"}


def test_cluster_batch_file_publishes_python_tasks(tmp_path: Path) -> None:
    from meshbench.cli.cluster_cmd import _publish, load_batch

    (tmp_path / "steps.py").write_text(
        "def main(n, extra):\n    return {'n': n, 'extra': extra, 'double': 2 * n}\n"
    )
    batch = tmp_path / "tasks.json"
    batch.write_text(
        '[{"python": "steps.py", "args": [21, {"k": [1, 2]}], "verifiers": 1,'
        ' "cpu_cycles": 1000000000, "memory_mb": 256, "io_mb": 4}]'
    )
    [spec] = load_batch(batch)
    with Mesh.in_process(workers=2, data_dir=tmp_path / "mesh", executors=("python",)) as mesh:
        result = _publish(mesh, spec).result(120)
        assert result.accepted and result.value() == {"n": 21, "extra": {"k": [1, 2]}, "double": 42}


@pytest.mark.slow
def test_python_task_over_libp2p_worker_peers(tmp_path: Path) -> None:
    """Two worker peer processes with ``--executor python`` fetch the 100 MB runtime through
    the content protocol, execute and verify."""
    import subprocess
    import sys

    from meshbench.testing.netmesh import wait_until

    policy = {
        "verification_quorum": {"minimum_verifiers": 1},
        "selection": {"offer_window_ms": 3000},
    }
    workers: list[subprocess.Popen] = []
    with Mesh.join(data_dir=tmp_path / "node", policy=policy) as mesh:
        try:
            for i in range(2):
                workers.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "meshbench.runtime.p2p", "worker",
                         "--data-dir", str(tmp_path / f"w{i}"), "--bootstrap", mesh.net.addrs[0],
                         "--authority", mesh.node.authority.did,
                         "--federation", mesh.node.federation, "--executor", "python"],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                    )
                )  # fmt: skip

            def bonded() -> int:
                stakes = mesh.node.books_tables().get("stakes", {}).values()
                return sum(1 for s in stakes if s["bonded"] >= 200)

            wait_until(lambda: bonded() >= 2, 120, "two funded and bonded worker peers")
            handle = mesh.publish(
                python=collatz, args=(27,), verifiers=1, scope=SMALL, deadline_s=240
            )
            result = handle.result(timeout=300)
            assert result.accepted, mesh.rejections()
            assert result.value() == {"steps": 111, "label": "collatz"}
        finally:
            for w in workers:
                w.terminate()
            for w in workers:
                try:
                    w.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    w.kill()


def test_the_workbench_publish_form_takes_python_source(tmp_path: Path) -> None:
    from meshbench.workbench.feed import MeshFeed
    from meshbench.workbench.panels import PublishForm

    with Mesh.in_process(
        workers=3,
        data_dir=tmp_path,
        executors=("python",),
        policy={"verification_quorum": {"minimum_verifiers": 1}},
    ) as mesh:
        feed = MeshFeed.attach(mesh.node)
        try:
            form = PublishForm(mesh, feed)
            form.python.value = "def double(x):\n    return 2 * x\n"
            form.entry.value = "double"
            form.python_args.value = "[21]"
            form.verifiers.value = 1
            handle = form.publish()
            assert handle is not None, feed.errors
            assert handle.result(timeout=300).value() == 42
            form.entry.value = "not a name"
            assert form.publish() is None and "entry" in str(feed.errors[-1])
        finally:
            feed.detach()
