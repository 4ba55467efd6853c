"""mesh-cli and the control socket, against a node started in this process."""

from __future__ import annotations

import contextlib
import json
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from meshbench.cli.mesh_cli import main
from meshbench.cli.peer_service import NodeService
from meshbench.core.errors import BlobNotFound, NetworkError, ProtocolError
from meshbench.net import control
from meshbench.net.control import NodeNotRunning
from meshbench.testing.factories import make_identity, make_task


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = 0
    try:
        main(list(argv))
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def service(tmp_path: Path) -> Iterator[NodeService]:
    svc = NodeService(tmp_path / "node", listen=["/ip4/127.0.0.1/tcp/0"], mdns=False).start()
    try:
        yield svc
    finally:
        svc.close()


def test_control_socket_is_private_and_errors_keep_their_type(service: NodeService) -> None:
    sock = control.socket_path(service.data_dir)
    assert stat.S_IMODE(sock.stat().st_mode) == 0o600
    with pytest.raises(BlobNotFound):
        control.request(service.data_dir, "fetch", cid=str(make_task(make_identity(1)).wasm_cid))
    with pytest.raises(NetworkError, match="unknown control command"):
        control.request(service.data_dir, "nope")
    with pytest.raises(ProtocolError, match="--role authority"):
        control.request(service.data_dir, "publish-task")


def test_a_second_node_on_the_same_data_dir_is_refused(service: NodeService) -> None:
    with pytest.raises(NetworkError, match="already running"):
        NodeService(service.data_dir, listen=["/ip4/127.0.0.1/tcp/0"], mdns=False).start()


def test_cli_commands_drive_the_node(
    service: NodeService, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = str(service.data_dir)
    code, out, _ = run(capsys, "list-peers", "--json", "--data-dir", d)
    assert code == 0 and json.loads(out) == []
    code, out, _ = run(capsys, "list-peers", "--data-dir", d)
    assert code == 0 and "(none)" in out
    code, out, _ = run(capsys, "status", "--json", "--data-dir", d)
    assert json.loads(out)["peer_id"] == service.node.peer_id
    task = make_task(make_identity(2), sign=True)
    f = tmp_path / "task.cbor"
    f.write_bytes(task.encode())
    code, out, _ = run(capsys, "publish", str(f), "--data-dir", d)
    assert code == 0 and json.loads(out)["cids"] == [str(task.cid)]
    code, out, _ = run(capsys, "events", "--json", "--data-dir", d)
    assert [e["cid"] for e in json.loads(out)] == [str(task.cid)]
    blob = tmp_path / "m.wasm"
    blob.write_bytes(b"\x00asm\x01\x00\x00\x00")
    code, out, _ = run(capsys, "provide", str(blob), "--data-dir", d)
    assert code == 0 and out.strip() == str(task.wasm_cid)
    args = ["--wasm-cid", str(task.wasm_cid), "--input-cid", str(task.input_cid), "--fee", "5"]
    # protocol commands need a role: this node is a plain peer
    code, _, err = run(capsys, "publish-task", *args, "--data-dir", d)
    assert code == 1 and "ProtocolError" in err and "--role authority" in err
    code, _, err = run(capsys, "offer-execution", "--task-cid", str(task.cid), "--cost", "3",
                       "--data-dir", d)  # fmt: skip
    assert code == 1 and "--role worker" in err


def test_commands_without_a_running_node_fail_with_a_clear_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "list-peers", "--data-dir", str(tmp_path))
    assert code == 1 and "NodeNotRunning" in err and "mesh-cli start" in err
    with pytest.raises(NodeNotRunning):
        control.request(tmp_path, "status")


@contextlib.contextmanager
def _authority(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], policy: Any = None
) -> Iterator[tuple[NodeService, list[str]]]:
    """An authority node with a module and an input provided: (the node, publish-task's
    blob arguments)."""
    from meshbench.runtime.roles import AuthorityRole

    svc = NodeService(tmp_path / "auth", listen=["/ip4/127.0.0.1/tcp/0"], mdns=False,
                      key_name="node").start()  # fmt: skip
    svc.role = AuthorityRole(svc, policy=policy)
    try:
        d = str(svc.data_dir)
        wasm, data = tmp_path / "m.wasm", tmp_path / "in.txt"
        wasm.write_bytes(b"\x00asm\x01\x00\x00\x00")
        data.write_bytes(b"hello")
        wasm_cid = run(capsys, "provide", str(wasm), "--data-dir", d)[1].strip()
        input_cid = run(capsys, "provide", str(data), "--data-dir", d)[1].strip()
        yield svc, ["--wasm-cid", wasm_cid, "--input-cid", input_cid, "--data-dir", d]
    finally:
        svc.close()


def test_an_authority_node_publishes_tasks_and_reports_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with _authority(tmp_path, capsys) as (svc, blobs):
        d = str(svc.data_dir)
        args = [*blobs, "--fee", "100"]
        code, out, err = run(capsys, "publish-task", *args, "--verifiers", "1", "--json")
        assert code == 0, err
        task_cid = json.loads(out)["task_cid"]
        status = control.request(svc.data_dir, "status")
        assert status["protocol"]["federation"].startswith("did:key:")
        assert status["protocol"]["role"] == "authority" and status["protocol"]["tasks"] == 1
        code, out, err = run(capsys, "status", task_cid, "--json", "--data-dir", d)
        assert code == 0 and json.loads(out)["task_cid"] == task_cid
        code, out, err = run(capsys, "publish-task", *args, "--full-verification", "--json")
        assert code == 0, err
        records = svc.role.mesh.node.records
        full = {str(c): r.task.assurance for c, r in records.items()}
        assert full == {task_cid: "policy", json.loads(out)["task_cid"]: "full"}


def test_publish_task_says_when_audits_are_sampled_and_full_verification_opts_out(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with _authority(tmp_path, capsys, policy={"audit": {"enabled": True}}) as (_, blobs):
        args = [*blobs, "--fee", "100", "--json"]
        sampled = json.loads(run(capsys, "publish-task", *args)[1])
        assert sampled["verifiers"] == 1  # the policy's auditors, when drawn
        assert any("sampled audits" in w for w in sampled["warnings"])
        full = json.loads(run(capsys, "publish-task", *args, "--full-verification")[1])
        assert full["verifiers"] == 3 and not any("sampled" in w for w in full["warnings"])


def test_status_wait_and_follow_end_with_a_typed_error_when_the_task_does_not_settle(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No worker has joined: the task cannot settle, and --wait/--follow say so in time."""
    import time

    from meshbench.runtime.roles import AuthorityRole

    svc = NodeService(tmp_path / "auth", listen=["/ip4/127.0.0.1/tcp/0"], mdns=False,
                      key_name="node").start()  # fmt: skip
    svc.role = AuthorityRole(svc)
    try:
        d = str(svc.data_dir)
        wasm, data = tmp_path / "m.wasm", tmp_path / "in.txt"
        wasm.write_bytes(b"\x00asm\x01\x00\x00\x00")
        data.write_bytes(b"x")
        cids = [run(capsys, "provide", str(f), "--data-dir", d)[1].strip() for f in (wasm, data)]
        args = ["--wasm-cid", cids[0], "--input-cid", cids[1], "--fee", "100", "--verifiers", "2"]
        code, out, err = run(capsys, "publish-task", *args, "--data-dir", d)
        assert code == 0 and out.strip().startswith("bafyrei"), err
        assert "warning: 2 verifiers asked, 3 drawn: policy minimum_verifiers" in err
        assert "0 have joined: it waits for more" in err
        task_cid = out.strip()
        t0 = time.monotonic()
        code, out, err = run(capsys, "status", task_cid, "--follow", "--timeout", "1.5",
                             "--data-dir", d)  # fmt: skip
        assert 1.4 < time.monotonic() - t0 < 20
        assert code == 1 and "error: ProtocolError: " in err and "after 1.5 s" in err
        first = out.splitlines()[0].split()
        assert len(first) == 2 and first[1] in ("Published", "Offered")
        assert "done" in out and "no" in out  # the last status, as text
        # an unknown task is refused at once, not waited for
        other = str(make_task(make_identity(3)).cid)
        code, _, err = run(capsys, "status", other, "--wait", "--timeout", "30", "--data-dir", d)
        assert code == 1 and "ProtocolError" in err and "unknown task" in err
    finally:
        svc.close()
