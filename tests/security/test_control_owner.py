"""The control socket accepts only its owner: mode 0600, and the peer's uid checked."""

from __future__ import annotations

import contextlib
import os
import socket
import stat
import tempfile
from pathlib import Path

import pytest

from meshbench.net import control

NOBODY = 65534


def _as_nobody(path: Path) -> str:
    """Connect to ``path`` and ask a command as uid 65534, in a forked child; its report."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: only socket calls, then _exit
        try:
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(10)
            try:
                s.connect(str(path))
            except OSError as exc:
                report = f"connect refused: {exc.strerror}".encode()
            else:
                with contextlib.suppress(OSError):  # the refusal may come before we ask
                    s.sendall(b'{"cmd": "secret", "args": {}}\n')
                report = s.makefile("rb").readline()
            os.write(write_end, report)
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as f:
        report = f.read().decode()
    os.waitpid(pid, 0)
    return report


def test_the_socket_is_private(tmp_path: Path) -> None:
    server = control.ControlServer(tmp_path, {"ping": lambda args: "pong"}).start()
    try:
        assert stat.S_IMODE(server.path.stat().st_mode) == 0o600
        assert control.request(tmp_path, "ping") == "pong"  # the owner is served
    finally:
        server.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a client as another user")
def test_another_user_is_refused_even_when_the_socket_mode_lets_it_connect() -> None:
    calls: list[object] = []
    root = Path(tempfile.mkdtemp(prefix="mb-ctl-"))
    try:
        root.chmod(0o711)
        server = control.ControlServer(root, {"secret": lambda args: calls.append(args) or "x"})
        server.start()
        try:
            assert "connect refused" in _as_nobody(server.path)  # the file mode stops it first
            server.path.chmod(0o666)  # a mistake, or an attacker who could chmod: still refused
            assert f"refused: uid {NOBODY} does not own this node" in _as_nobody(server.path)
            assert calls == []
            assert control.request(root, "secret") == "x"  # the owner still is served
        finally:
            server.close()
    finally:
        for p in root.iterdir():
            p.unlink()
        root.rmdir()
