"""The lane of the node's direct calls to a worker (meshbench.runtime.lane): framing, calls
answered in any order, errors by name, the secret it opens with, and what closes it."""

from __future__ import annotations

import queue
import re
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from typing import Any

import msgspec
import pytest

from meshbench.core.errors import (
    CIDMismatch,
    InvalidModule,
    NetworkError,
    ProtocolError,
)
from meshbench.runtime import lane as lane_mod
from meshbench.runtime.lane import Lane, LaneServer, decode, encode, error_of
from meshbench.testing.netmesh import wait_until

WAIT_S = 10.0


class _Answers:
    """The answers of calls, collected from the lane's reader thread."""

    def __init__(self) -> None:
        self.got: queue.Queue[Any] = queue.Queue()

    def then(self, tag: Any) -> Callable[[Any], None]:
        return lambda answers: self.got.put((tag, answers))

    def next(self) -> tuple[Any, Any]:
        return self.got.get(timeout=WAIT_S)


def _echo(kind: str, items: list[Any], now_ms: int | None, answer: Callable[[Any], None]) -> None:
    if kind == "echo":
        answer([kind, items, now_ms])
    elif kind == "fail":
        answer([CIDMismatch("the output does not hash to its CID"), b"ok"])
    elif kind == "later":  # answered from another thread, after the calls behind it
        threading.Timer(0.2, answer, args=(["later", items],)).start()
    elif kind == "object":
        answer([object()])
    else:
        answer(ProtocolError(f"no call {kind!r}"))


@pytest.fixture
def server() -> Iterator[LaneServer]:
    s = LaneServer("127.0.0.1", _echo, name="test")
    yield s
    s.close()


def test_calls_and_their_answers_round_trip(server: LaneServer) -> None:
    lane = Lane("127.0.0.1", server.port, server.token)
    answers = _Answers()
    items = [b"\x00bytes", "text", 7, None, [b"nested", 1]]
    lane.call("echo", items, 1_700_000_000_000, answers.then("a"))
    tag, got = answers.next()
    assert tag == "a"
    # a list answer comes back as the tuple the worker's functions return (a reveal)
    assert got == ["echo", tuple(items), 1_700_000_000_000]
    lane.call("echo", [], None, answers.then("b"))
    assert answers.next() == ("b", ["echo", (), None])
    assert lane.calls_out == 0
    lane.close()


def test_calls_are_answered_in_any_order_many_in_flight(server: LaneServer) -> None:
    lane = Lane("127.0.0.1", server.port, server.token)
    answers = _Answers()
    lane.call("later", [b"slow"], None, answers.then("slow"))
    for i in range(200):
        lane.call("echo", [i], None, answers.then(i))
    got = [answers.next() for _ in range(201)]
    assert [tag for tag, _ in got[:200]] == list(range(200))  # not held behind the slow one
    assert got[200] == ("slow", ["later", (b"slow",)])
    assert all(a == ["echo", (tag,), None] for tag, a in got[:200])
    lane.close()


def test_an_error_comes_back_as_the_meshbench_error_of_its_name(server: LaneServer) -> None:
    lane = Lane("127.0.0.1", server.port, server.token)
    answers = _Answers()
    lane.call("fail", [], None, answers.then("fail"))
    _, (err, ok) = answers.next()
    assert type(err) is CIDMismatch and "does not hash" in str(err)
    assert ok == b"ok"
    lane.call("bogus", [], None, answers.then("bogus"))
    _, err = answers.next()
    assert isinstance(err, ProtocolError) and "bogus" in str(err)
    # an answer that is not data is refused by the worker's end, and said to be
    lane.call("object", [], None, answers.then("object"))
    _, err = answers.next()
    assert isinstance(err, ProtocolError) and "not data" in str(err)
    lane.close()


def test_error_names_not_known_are_protocol_errors_and_the_caller_may_add_its_own() -> None:
    class ModuleNotHeld(LookupError):
        pass

    known = {**lane_mod.KNOWN_ERRORS, "ModuleNotHeld": ModuleNotHeld}
    assert type(error_of("ModuleNotHeld", "let go", known)) is ModuleNotHeld
    assert type(error_of("InvalidModule", "bad", known)) is InvalidModule
    other = error_of("KeyboardInterrupt", "no", known)
    assert type(other) is ProtocolError and "KeyboardInterrupt" in str(other)
    # an error body that is not [name, message] does not decode
    bad = msgspec.msgpack.Ext(lane_mod.ERROR_EXT, msgspec.msgpack.encode([1, 2]))
    with pytest.raises(ProtocolError, match="not \\[name, message\\]"):
        decode(msgspec.msgpack.encode([0, [bad]]))
    with pytest.raises(ProtocolError, match="unknown extension"):
        decode(msgspec.msgpack.encode(msgspec.msgpack.Ext(9, b"")))
    with pytest.raises(ProtocolError, match="does not decode"):
        decode(b"\xc1")
    # a frame is its length and its body
    frame = encode(["x", b"y"])
    assert struct.unpack(">I", frame[:4])[0] == len(frame) - 4
    assert decode(frame[4:]) == ["x", b"y"]
    with pytest.raises(TypeError, match="data only"):
        encode([object()])


def test_a_lane_opened_without_the_secret_is_closed_and_calls_nothing(server: LaneServer) -> None:
    calls: list[str] = []
    spy = LaneServer("127.0.0.1", lambda k, i, n, a: calls.append(k) or a(None), name="spy")
    try:
        lane = Lane("127.0.0.1", spy.port, b"\x00" * 32)
        answers = _Answers()
        try:
            lane.call("echo", [1], None, answers.then("x"))
        except NetworkError:
            pass  # the worker closed it before the call went out
        else:
            tag, err = answers.next()
            assert tag == "x" and isinstance(err, NetworkError)
        wait_until(lambda: lane.closed is not None, WAIT_S, "the lane closed")
        with pytest.raises(NetworkError):
            lane.call("echo", [2], None, answers.then("y"))
        assert calls == []
        # the same server still serves a lane opened with its secret
        good = Lane("127.0.0.1", spy.port, spy.token)
        good.call("echo", [3], None, answers.then("z"))
        assert answers.next() == ("z", None) and calls == ["echo"]
        good.close()
    finally:
        spy.close()


def test_a_worker_that_goes_answers_every_call_out_with_a_network_error() -> None:
    held: list[Callable[[Any], None]] = []
    s = LaneServer("127.0.0.1", lambda k, i, n, a: held.append(a), name="holds")
    lane = Lane("127.0.0.1", s.port, s.token)
    answers = _Answers()
    lane.call("x", [], None, answers.then(1))
    lane.call("x", [], None, answers.then(2))
    wait_until(lambda: len(held) == 2, WAIT_S, "both calls held")
    s.close()
    got = sorted([answers.next(), answers.next()], key=lambda t: t[0])
    assert [t for t, _ in got] == [1, 2]
    assert all(isinstance(err, NetworkError) for _, err in got)
    assert isinstance(lane.closed, NetworkError)
    with pytest.raises(NetworkError):
        lane.call("x", [], None, answers.then(3))
    held[0](["too late"])  # a worker's answer after it went is dropped, not raised
    lane.close()


def _fake_worker(frames: Callable[[int], list[bytes]]) -> tuple[int, bytes, threading.Thread]:
    """A worker's end that reads the secret and one call, sends ``frames(call_id)`` and
    closes."""
    listener = socket.create_server(("127.0.0.1", 0))
    token = b"\x01" * 32

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            reader = conn.makefile("rb")
            assert reader.read(32) == token
            (size,) = struct.unpack(">I", reader.read(4))
            call_id = decode(reader.read(size))[0]
            for frame in frames(call_id):
                conn.sendall(frame)
        listener.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    return int(listener.getsockname()[1]), token, t


@pytest.mark.parametrize(
    ("frames", "why"),
    [
        (lambda cid: [encode([cid + 1, ["not my call"]])], "names no call out"),
        (lambda cid: [encode("not a list")], "not \\[call id, answers\\]"),
        (lambda cid: [struct.pack(">I", 3) + b"\xc1\xc1\xc1"], "does not decode"),
        (lambda cid: [struct.pack(">I", lane_mod.MAX_ANSWER_BYTES + 1)], "over the limit"),
        (lambda cid: [struct.pack(">I", 100) + b"\x90"], "closed"),
    ],
    ids=["unknown-call", "bad-shape", "garbage", "oversized", "truncated"],
)
def test_a_hostile_answer_closes_the_lane_and_fails_its_calls(
    frames: Callable[[int], list[bytes]], why: str
) -> None:
    port, token, t = _fake_worker(frames)
    lane = Lane("127.0.0.1", port, token)
    answers = _Answers()
    lane.call("offer", [b"task"], None, answers.then("offer"))
    tag, err = answers.next()
    assert tag == "offer" and isinstance(err, NetworkError)
    assert lane.closed is not None
    assert re.search(why, str(lane.closed)), lane.closed
    lane.close()
    t.join(WAIT_S)


def test_a_hostile_call_closes_that_lane_only(server: LaneServer) -> None:
    bad = socket.create_connection(("127.0.0.1", server.port))
    bad.sendall(server.token + encode(["not", "a call"]))
    assert bad.recv(10) == b""  # closed by the worker's end
    bad.close()
    over = socket.create_connection(("127.0.0.1", server.port))
    over.sendall(server.token + struct.pack(">I", lane_mod.MAX_REQUEST_BYTES + 1))
    assert over.recv(10) == b""
    over.close()
    lane = Lane("127.0.0.1", server.port, server.token)
    answers = _Answers()
    lane.call("echo", [1], None, answers.then(1))
    assert answers.next() == (1, ["echo", (1,), None])
    lane.close()
