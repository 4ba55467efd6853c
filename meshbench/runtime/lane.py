"""A lean socket lane from the node to one Dask worker, for the node's direct calls.

Measured under ``meshbench bench mesh`` (py-spy, GIL samples of the node process), a direct
call over Dask's comms cost the node about 0.6 ms of CPU and the worker 0.4 ms: Dask's
``rpc`` machinery (a coroutine on the client's event loop, a hop there and back, msgpack
*and* pickle frames, tornado's IOStream, ``sizeof`` of every frame) for a request that is a
few hundred bytes (an offer, a reveal) or one input. With ~13 calls a verified task (offers
to every worker, 1 + k executions, reveals and verdicts) the client's event loop was the
node's busiest thread: about 9 ms of its 24 ms per task.

A lane is one TCP connection, node to worker, with frames of a 4-byte length and a
MessagePack body (msgspec): ``[call id, kind, items, now_ms]`` out, ``[call id, answers]``
back, many calls in flight, answered in any order. Blocking sockets on threads of their
own (the GIL is released while they wait): the node's reader hands each answer on and
never blocks on anything else, the worker's reader answers an offer or a reveal at once and
hands an execution to the worker's thread pool, which sends its answer when it is done.

What it trusts and checks:

* MessagePack carries only data (bytes, text, integers, lists, maps, ``None``): unlike
  pickle, an answer from a worker cannot run code on the node. An error travels as its
  class name and message (:data:`ERROR_EXT`) and is raised again on the node as the
  meshbench error of that name (:func:`error_of`), else as a :class:`ProtocolError`.
* A lane is opened with a 32-byte secret the worker made (:func:`secrets.token_bytes`) and
  gave the node over Dask's own comms: whoever could not reach Dask's comm cannot call a
  worker on its lane. The backend uses lanes only where Dask's comm is plain ``tcp://``
  (under Dask's TLS it stays on Dask's comm, which that configuration protects).
* Frames are bounded (:data:`MAX_REQUEST_BYTES` to a worker, :data:`MAX_ANSWER_BYTES` back);
  a frame over its bound, bytes that do not decode, or a frame of the wrong shape close
  the lane: every call still out on it gets a :class:`NetworkError`, as a lost worker's do.
"""

from __future__ import annotations

import contextlib
import hmac
import itertools
import logging
import secrets
import socket
import struct
import threading
from collections.abc import Callable, Mapping
from typing import Any, Final

import msgspec

from meshbench.core import errors as _errors
from meshbench.core.errors import MeshError, NetworkError, ProtocolError

__all__ = [
    "ERROR_EXT",
    "MAX_ANSWER_BYTES",
    "MAX_REQUEST_BYTES",
    "TOKEN_BYTES",
    "Lane",
    "LaneServer",
    "decode",
    "encode",
    "error_of",
]

#: The MessagePack extension type of an error (its body: ``[class name, message]``).
ERROR_EXT: Final = 1
#: The secret a lane is opened with.
TOKEN_BYTES: Final = 32
#: The largest frame a worker reads (an execution's module and input come in one).
MAX_REQUEST_BYTES: Final = 1024 * 1024 * 1024
#: The largest frame the node reads (outputs come back with reveals and verdicts).
MAX_ANSWER_BYTES: Final = 256 * 1024 * 1024
#: How long opening a lane (connect and secret) may take.
OPEN_TIMEOUT_S: Final = 10.0
_HEADER: Final = struct.Struct(">I")
_READ_BUFFER: Final = 256 * 1024

log = logging.getLogger("meshbench.lane")

#: Errors an answer may name, raised again by that name (every meshbench error).
KNOWN_ERRORS: Final[Mapping[str, type[Exception]]] = {
    name: cls
    for name, cls in vars(_errors).items()
    if isinstance(cls, type) and issubclass(cls, MeshError)
}


def _enc_hook(obj: Any) -> Any:
    if isinstance(obj, BaseException):
        return msgspec.msgpack.Ext(ERROR_EXT, _ENCODER.encode([type(obj).__name__, str(obj)]))
    raise TypeError(f"a lane carries data only, not a {type(obj).__name__}")


def error_of(name: str, message: str, known: Mapping[str, type[Exception]]) -> Exception:
    """The error a worker answered, as the exception of that name in ``known`` (a meshbench
    error, or one the caller adds); any other name is a :class:`ProtocolError` saying it."""
    cls = known.get(name)
    if cls is not None:
        with contextlib.suppress(Exception):  # a class that wants other arguments: below
            return cls(message)
    return ProtocolError(f"the worker failed with {name}: {message}")


def _decoder(known: Mapping[str, type[Exception]]) -> msgspec.msgpack.Decoder[Any]:
    def ext_hook(code: int, data: memoryview) -> Any:
        if code != ERROR_EXT:
            raise ProtocolError(f"a lane frame holds an unknown extension type {code}")
        body = msgspec.msgpack.decode(data)
        if not (
            isinstance(body, list) and len(body) == 2 and all(isinstance(x, str) for x in body)
        ):
            raise ProtocolError("a lane frame holds an error that is not [name, message]")
        return error_of(body[0], body[1], known)

    return msgspec.msgpack.Decoder(ext_hook=ext_hook)


_ENCODER: Final = msgspec.msgpack.Encoder(enc_hook=_enc_hook)


def encode(message: Any) -> bytes:
    """One frame: its length, then ``message`` as MessagePack (errors as :data:`ERROR_EXT`)."""
    body = _ENCODER.encode(message)
    return _HEADER.pack(len(body)) + body


def decode(body: bytes | memoryview, known: Mapping[str, type[Exception]] = KNOWN_ERRORS) -> Any:
    """A frame's body; :class:`ProtocolError` for bytes that are not one."""
    return _decode_with(_decoder(known), body)


def _decode_with(decoder: msgspec.msgpack.Decoder[Any], body: bytes | memoryview) -> Any:
    try:
        return decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise ProtocolError(f"a lane frame does not decode: {exc}") from exc


def _read_frame(reader: Any, limit: int) -> bytes | None:
    """The next frame's body from ``reader`` (a buffered socket file); None at a clean end."""
    header = reader.read(_HEADER.size)
    if not header:
        return None
    if len(header) < _HEADER.size:
        raise NetworkError("a lane closed inside a frame's length")
    (size,) = _HEADER.unpack(header)
    if size > limit:
        raise ProtocolError(f"a lane frame of {size} bytes is over the limit of {limit}")
    body = reader.read(size)
    if len(body) < size:
        raise NetworkError(f"a lane closed {size - len(body)} bytes short of a frame")
    return body


class Lane:
    """The node's end: calls to one worker, each answered by ``then(answers)`` on this
    lane's reader thread (``then`` must hand its work on: the reader must keep reading).

    :meth:`call` raises :class:`NetworkError` once the lane is closed; a call out when it
    closes is answered with that error."""

    def __init__(
        self,
        host: str,
        port: int,
        token: bytes,
        *,
        known_errors: Mapping[str, type[Exception]] = KNOWN_ERRORS,
        name: str = "",
    ) -> None:
        self.name = name or f"{host}:{port}"
        sock = socket.create_connection((host, port), timeout=OPEN_TIMEOUT_S)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.sendall(token)
            sock.settimeout(None)
        except OSError:
            sock.close()
            raise
        self._sock = sock
        self._reader = sock.makefile("rb", buffering=_READ_BUFFER)
        self._decoder = _decoder(known_errors)
        self._lock = threading.Lock()
        self._ids = itertools.count()
        self._pending: dict[int, Callable[[Any], None]] = {}
        self.closed: NetworkError | None = None
        self._thread = threading.Thread(
            target=self._read, name=f"mesh-lane {self.name}", daemon=True
        )
        self._thread.start()

    def call(self, kind: str, items: Any, now_ms: int | None, then: Callable[[Any], None]) -> None:
        call_id = next(self._ids)  # atomic: ids are unique without the lock
        frame = encode([call_id, kind, items, now_ms])
        with self._lock:
            if self.closed is not None:
                raise self.closed
            self._pending[call_id] = then
            try:
                self._sock.sendall(frame)
                return
            except OSError as exc:
                self._pending.pop(call_id, None)
                why = NetworkError(f"the lane to {self.name} failed: {exc!r}")
                error = exc
        self._fail(why)
        raise why from error

    def _read(self) -> None:
        why: NetworkError
        try:
            while True:
                body = _read_frame(self._reader, MAX_ANSWER_BYTES)
                if body is None:
                    why = NetworkError(f"the worker at {self.name} closed its lane")
                    break
                message = _decode_with(self._decoder, body)
                if not (isinstance(message, list) and len(message) == 2):
                    raise ProtocolError("a lane answer is not [call id, answers]")
                call_id, answers = message
                with self._lock:
                    then = self._pending.pop(call_id, None) if isinstance(call_id, int) else None
                if then is None:
                    raise ProtocolError(f"a lane answer names no call out ({call_id!r})")
                try:
                    then(_tuples(answers))
                except Exception:  # the caller's bug: it must not stop this lane's answers
                    log.exception("an answer on the lane to %s was not taken", self.name)
        except (OSError, ValueError, MeshError, msgspec.DecodeError) as exc:
            why = NetworkError(f"the lane to {self.name} closed: {exc!r}")
            if not isinstance(exc, OSError | NetworkError):
                log.warning("closing the lane to %s: %r", self.name, exc)
        self._fail(why)

    def _fail(self, why: NetworkError) -> None:
        """Close, and answer every call out with ``why`` (or the error it closed with)."""
        with self._lock:
            if self.closed is None:
                self.closed = why
            pending, self._pending = self._pending, {}
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        for then in pending.values():
            with contextlib.suppress(Exception):
                then(self.closed)

    def close(self) -> None:
        self._fail(NetworkError(f"the lane to {self.name} was closed"))
        self._thread.join(timeout=5)
        with contextlib.suppress(OSError):
            self._reader.close()
            self._sock.close()

    @property
    def calls_out(self) -> int:
        with self._lock:
            return len(self._pending)


def _tuples(answers: Any) -> Any:
    """A call's answers as the worker's functions return them: an answer that is a list
    (a reveal: receipt and output) is a tuple again, as Dask's pickles kept it."""
    if not isinstance(answers, list):
        return answers
    return [tuple(a) if isinstance(a, list) else a for a in answers]


#: ``handle(kind, items, now_ms, answer)``: answer a call, by calling ``answer(answers)``
#: exactly once, on any thread.
Handler = Callable[[str, list[Any], "int | None", Callable[[Any], None]], None]


class LaneServer:
    """A worker's end: accepts lanes (each opened with :attr:`token`) on ``host`` and hands
    each call to ``handle``."""

    def __init__(self, host: str, handle: Handler, *, name: str = "") -> None:
        self.token = secrets.token_bytes(TOKEN_BYTES)
        self._handle = handle
        self.name = name or host
        self._listener = socket.create_server((host, 0))
        self.host = host
        self.port = int(self._listener.getsockname()[1])
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._closed = False
        threading.Thread(
            target=self._accept, name=f"mesh-lane-accept {self.name}", daemon=True
        ).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return  # closed
            with self._lock:
                if self._closed:
                    conn.close()
                    return
                self._conns.add(conn)
            threading.Thread(
                target=self._serve, args=(conn,), name=f"mesh-lane {self.name}", daemon=True
            ).start()

    def _serve(self, conn: socket.socket) -> None:
        write = threading.Lock()
        try:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn.settimeout(OPEN_TIMEOUT_S)
            token = b""
            while len(token) < TOKEN_BYTES:
                got = conn.recv(TOKEN_BYTES - len(token))
                if not got:
                    return
                token += got
            if not hmac.compare_digest(token, self.token):
                log.warning("a lane to %s was opened without its secret: closed", self.name)
                return
            conn.settimeout(None)
            reader = conn.makefile("rb", buffering=_READ_BUFFER)
            decoder = _decoder(KNOWN_ERRORS)
            while True:
                body = _read_frame(reader, MAX_REQUEST_BYTES)
                if body is None:
                    return
                message = _decode_with(decoder, body)
                if not (
                    isinstance(message, list)
                    and len(message) == 4
                    and isinstance(message[0], int)
                    and isinstance(message[1], str)
                    and isinstance(message[2], list)
                    and (message[3] is None or isinstance(message[3], int))
                ):
                    raise ProtocolError("a lane call is not [call id, kind, items, now_ms]")
                call_id, kind, items, now_ms = message
                self._handle(kind, items, now_ms, _answerer(conn, write, call_id))
        except (OSError, ValueError, MeshError, msgspec.DecodeError) as exc:
            if not isinstance(exc, OSError):
                log.warning("closing a lane to %s: %r", self.name, exc)
        finally:
            with self._lock:
                self._conns.discard(conn)
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            conns, self._conns = list(self._conns), set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


def _answerer(conn: socket.socket, write: threading.Lock, call_id: int) -> Callable[[Any], None]:
    def answer(answers: Any) -> None:
        try:
            frame = encode([call_id, answers])
        except (TypeError, ValueError) as exc:  # an answer that is not data: say so instead
            frame = encode([call_id, ProtocolError(f"the worker's answer is not data: {exc}")])
        with write, contextlib.suppress(OSError):  # the node went: nobody waits for it
            conn.sendall(frame)

    return answer
