"""The control socket's request/reply lines and the sync frames, without sockets.

Regression tests for what fuzzing the control client turned up: a reply that was not JSON
raised ``json.JSONDecodeError`` and one that was JSON but not an object raised
``AttributeError``; both are a :class:`NetworkError` now.
"""

from __future__ import annotations

import json

import pytest
import trio

from meshbench.core.errors import InvalidCID, NetworkError
from meshbench.net import control, sync
from meshbench.net.topics import Topic
from meshbench.net.wire import StreamReader, uvarint
from meshbench.testing.fuzz.targets import MemoryStream


@pytest.mark.parametrize(
    "line",
    [
        b"",
        b"not json\n",
        b"[1, 2]\n",
        b"\xff\xfe\n",
        b"[" * 100_000 + b"\n",
        b'{"ok": false, "error": 5, "message": "x"}\n',
        b'{"ok": false, "error": "SystemExit", "message": "x"}\n',
        b'{"ok": "yes", "result": 1}\n',
    ],
)
def test_a_malformed_reply_is_a_network_error(line: bytes) -> None:
    with pytest.raises(NetworkError):
        control.parse_reply(line, "status")


def test_replies_carry_results_and_typed_errors() -> None:
    assert control.parse_reply(b'{"ok": true, "result": [1]}\n', "x") == [1]
    with pytest.raises(InvalidCID, match="bad"):
        control.parse_reply(b'{"ok": false, "error": "InvalidCID", "message": "bad"}', "x")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b"[]", "JSON object"),
        (b'{"cmd": "echo", "args": [1]}', "arguments are a JSON object"),
        (b'{"cmd": ["echo"]}', "unknown control command"),
        (b'{"args": {}}', "bad request"),
        (b"\xff", "bad request"),
    ],
)
def test_a_bad_request_gets_one_error_line(line: bytes, message: str) -> None:
    reply = control.answer(line, {"echo": lambda args: args})
    assert reply.endswith(b"\n") and reply.count(b"\n") == 1
    parsed = json.loads(reply)
    assert parsed["ok"] is False and parsed["error"] == "NetworkError"
    assert message in parsed["message"]


def _frames(data: bytes, max_bytes: int = 1000) -> list[tuple[Topic, bytes]]:
    async def read() -> list[tuple[Topic, bytes]]:
        reader, out = StreamReader(MemoryStream(data)), []
        while (frame := await sync.read_frame(reader, max_bytes)) is not None:
            out.append(frame)
        return out

    return trio.run(read)


def test_sync_frames_round_trip_across_any_read_sizes() -> None:
    frames = [(Topic.LEDGER, b"a" * 300), (Topic.POLICY, b""), (Topic.PEERS, b"xyz")]
    assert _frames(b"".join(sync.encode_frame(t, d) for t, d in frames)) == frames


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (uvarint(65) + b"x" * 65, "topic name of 65 bytes"),
        (uvarint(5) + b"nopes" + uvarint(0), "unknown topic"),
        (uvarint(6) + b"ledger" + uvarint(1001), "over the 1000-byte limit"),
        (uvarint(6) + b"ledger" + uvarint(10) + b"abc", "stream ended"),
        (b"\xff" * 12, "varint too long"),
    ],
)
def test_bad_sync_frames_are_network_errors(data: bytes, message: str) -> None:
    with pytest.raises(NetworkError, match=message):
        _frames(data)
