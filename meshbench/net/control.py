"""The local control socket of a running node (``mesh-cli`` talks to ``mesh-cli start``).

A Unix socket in the data dir (``mesh-node.sock``, mode 0600, and each connection's peer
credentials checked: only the owner may drive the node). One request per connection: a JSON
line ``{"cmd": ..., "args": {...}}``; one JSON line back: ``{"ok": true, "result": ...}`` or
``{"ok": false, "error": "<type>", "message": ...}``. A MeshError raised in the node is
raised again, with its own type, in the client.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import socketserver
import struct
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from meshbench.core import errors
from meshbench.core.errors import MeshError, NetworkError

__all__ = [
    "SOCKET_NAME",
    "ControlServer",
    "NodeNotRunning",
    "answer",
    "parse_reply",
    "peer_uid",
    "request",
    "socket_path",
]

log = logging.getLogger("meshbench.net")

SOCKET_NAME: Final = "mesh-node.sock"
MAX_REQUEST: Final = 64 * 1024 * 1024
_UCRED: Final = struct.Struct("3i")  # struct ucred: pid, uid, gid
Handler = Callable[[dict[str, Any]], Any]


class NodeNotRunning(NetworkError):
    """No node answers on the data dir's control socket."""


def socket_path(data_dir: str | os.PathLike[str]) -> Path:
    return Path(data_dir) / SOCKET_NAME


def answer(line: bytes, handlers: dict[str, Handler]) -> bytes:
    """The reply line to one request line: never raises, whatever the bytes."""
    try:
        req = json.loads(line)
        if not isinstance(req, dict):
            raise NetworkError(f"a control request is a JSON object, not {type(req).__name__}")
        cmd, args = req["cmd"], req.get("args") or {}
        handler = handlers.get(cmd) if isinstance(cmd, str) else None
        if handler is None:
            known = ", ".join(sorted(handlers))
            raise NetworkError(f"unknown control command {cmd!r}; known: {known}")
        if not isinstance(args, dict):
            raise NetworkError(f"control arguments are a JSON object, not {type(args).__name__}")
        return _reply_line({"ok": True, "result": handler(args)})
    except (MeshError, NotImplementedError) as exc:
        reply = {"ok": False, "error": type(exc).__name__, "message": str(exc)}
    except (ValueError, KeyError, TypeError) as exc:
        reply = {"ok": False, "error": "NetworkError", "message": f"bad request: {exc}"}
    except Exception as exc:  # the node keeps running; the client learns what broke
        log.exception("control command failed")
        reply = {"ok": False, "error": "NetworkError", "message": f"{type(exc).__name__}: {exc}"}
    return _reply_line(reply)


def _reply_line(reply: dict[str, Any]) -> bytes:
    return json.dumps(reply, default=str).encode() + b"\n"


def parse_reply(line: bytes, cmd: str) -> Any:
    """The result in a reply line, or the error it carries raised with its own type.

    A reply that is not one JSON object of the expected shape raises :class:`NetworkError`.
    """
    if not line:
        raise NetworkError(f"the node closed the control socket without answering {cmd!r}")
    try:
        reply = json.loads(line)
    except (ValueError, RecursionError) as exc:
        raise NetworkError(f"the node's reply to {cmd!r} is not JSON: {exc}") from None
    if not isinstance(reply, dict) or not isinstance(reply.get("ok"), bool):
        raise NetworkError(f"the node's reply to {cmd!r} is not a JSON object with an ok flag")
    if reply["ok"]:
        return reply.get("result")
    name, message = reply.get("error", "MeshError"), reply.get("message", "")
    if not isinstance(name, str) or not isinstance(message, str):
        raise NetworkError(f"the node's error reply to {cmd!r} is malformed")
    if name == "NotImplementedError":
        raise NotImplementedError(message)
    cls = getattr(errors, name, None)
    if isinstance(cls, type) and issubclass(cls, MeshError):
        raise cls(message)
    raise NetworkError(f"{name}: {message}")


class _Handler(socketserver.StreamRequestHandler):
    server: _Server

    def handle(self) -> None:
        self.wfile.write(answer(self.rfile.readline(MAX_REQUEST), self.server.handlers))


class _Server(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True
    handlers: dict[str, Handler]

    def verify_request(self, request: Any, client_address: Any) -> bool:
        """Only the node's own user may drive it (the socket's 0600 mode aside: root and
        a socket file whose mode was changed are still refused)."""
        uid = peer_uid(request)
        if uid == os.geteuid():
            return True
        log.warning("control socket: refused a connection from uid %s", uid)
        with contextlib.suppress(OSError):
            request.sendall(
                _reply_line(
                    {
                        "ok": False,
                        "error": "NetworkError",
                        "message": f"refused: uid {uid} does not own this node",
                    }
                )
            )
        return False


def peer_uid(sock: socket.socket) -> int | None:
    """The user id of the process at the other end of a Unix socket (SO_PEERCRED)."""
    try:
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    except (OSError, AttributeError):  # no SO_PEERCRED on this platform
        return None
    return _UCRED.unpack(creds)[1]


class ControlServer:
    """Serve ``handlers`` on the data dir's socket from a background thread."""

    def __init__(self, data_dir: str | os.PathLike[str], handlers: dict[str, Handler]) -> None:
        self.path = socket_path(data_dir)
        if len(str(self.path)) > 100:
            raise NetworkError(f"control socket path {self.path} is too long for a Unix socket")
        if self.path.exists():
            if _answers(self.path):
                raise NetworkError(f"a node is already running on {self.path.parent}")
            self.path.unlink()  # left by a node that crashed
        self.path.parent.mkdir(parents=True, exist_ok=True)
        old = os.umask(0o177)
        try:
            self._server = _Server(str(self.path), _Handler)
        finally:
            os.umask(old)
        self._server.handlers = handlers
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            name="meshbench-control",
            kwargs={"poll_interval": 0.1},
        )

    def start(self) -> ControlServer:
        self._thread.start()
        return self

    def close(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(5)
        self._server.server_close()
        self.path.unlink(missing_ok=True)


def _answers(path: Path) -> bool:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(1)
            s.connect(str(path))
        return True
    except OSError:
        return False


def request(data_dir: str | os.PathLike[str], cmd: str, timeout: float = 600, **args: Any) -> Any:
    """Send one command to the node running on ``data_dir``; return its result."""
    path = socket_path(data_dir)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(str(path))
            s.sendall(json.dumps({"cmd": cmd, "args": args}).encode() + b"\n")
            with s.makefile("rb") as f:
                line = f.readline(MAX_REQUEST)
    except (FileNotFoundError, ConnectionRefusedError):
        raise NodeNotRunning(
            f"no mesh node is running on {Path(data_dir)}; start one with 'mesh-cli start'"
        ) from None
    except TimeoutError:
        raise NetworkError(f"the node did not answer {cmd!r} within {timeout:.0f} s") from None
    except OSError as exc:
        raise NetworkError(f"control socket {path}: {exc}") from exc
    return parse_reply(line, cmd)
