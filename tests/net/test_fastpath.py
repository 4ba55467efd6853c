"""meshbench.net.fastpath: py-libp2p's Noise + Yamux bulk path as we patch it.

The pins first (an upgrade of py-libp2p must fail here, not run an old copy of its code),
then each patched piece against what the protocols require, then blobs end to end.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import inspect
import os
import struct
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from libp2p.io.exceptions import IncompleteReadError
from libp2p.security.noise.io import MAX_NOISE_MESSAGE_LEN, NoiseTransportReadWriter
from libp2p.security.secure_session import SecureSession
from libp2p.stream_muxer.exceptions import MuxedStreamError
from libp2p.stream_muxer.yamux import yamux
from noise.connection import NoiseConnection
from noise.exceptions import NoiseInvalidMessage

from meshbench.core.errors import BlobNotFound
from meshbench.net import fastpath
from meshbench.net.node import Libp2pNode
from meshbench.store.blobs import BlobStore
from meshbench.testing.factories import make_identity
from meshbench.testing.streams import Pipe

#: sha256 (first 16 hex digits) of the source of every py-libp2p 0.8.1 function fastpath
#: replaces or relies on. A mismatch means upstream changed it: read the new version,
#: carry the change into meshbench/net/fastpath.py (or drop the patch), then re-pin.
PINNED = {
    "YamuxStream.write": "d87f74dfb53ab194",
    "BaseNoiseMsgReadWriter.write_msg": "00818920318f86aa",
    "BaseNoiseMsgReadWriter.read_msg": "b2fa218c135c82c0",
    "YamuxStream._auto_tune_and_send_window_update": "6ebcbd822fe7f996",
    "SecureSession.read": "eeba14a89cf12325",
    "read_exactly": "ae12723eff6b556d",
    "YamuxStream.__init__": "ab24c0709285d573",
    "YamuxStream.send_window_update": "f76fe6e67077b4a3",
    "Yamux.handle_incoming": "ad15ff6943feac20",
    "Yamux._read_data_body": "54cc06c91ba6ee15",
    "Yamux._write_frame": "16ff969cdd0d2b1b",
    "SecureSession._drain": "a697c9f38d7b2e6c",
    "BaseNoiseMsgReadWriter.__init__": "e6b51bace4fa3dda",
}


def test_the_patched_upstream_functions_are_the_ones_pinned() -> None:
    assert importlib.metadata.version("libp2p") == "0.8.1"
    found = {
        name: hashlib.sha256(inspect.getsource(fn).encode()).hexdigest()[:16]
        for name, fn in fastpath.upstream_functions().items()
    }
    assert found == PINNED
    # the constants the patches build on
    assert (yamux.HEADER_SIZE, yamux.YAMUX_HEADER_FORMAT) == (12, "!BBHII")
    assert (yamux.DEFAULT_WINDOW_SIZE, yamux.MAX_WINDOW_SIZE) == (256 * 1024, 16 * 1024**2)
    assert MAX_NOISE_MESSAGE_LEN == 65535


def test_install_is_idempotent_and_replaces_what_it_says() -> None:
    fastpath.install()
    fastpath.install()
    assert yamux.YamuxStream.write is fastpath._yamux_write
    assert SecureSession.read is fastpath._session_read
    assert NoiseTransportReadWriter.read_msg is fastpath._noise_read_msg
    assert yamux.read_exactly is fastpath._read_exactly


# --- yamux ---------------------------------------------------------------------------------
class FrameSink:
    """What a YamuxStream needs of its connection to write: frames, recorded."""

    def __init__(self) -> None:
        self.wire = bytearray()

    async def _write_frame(self, data: bytes) -> None:
        self.wire += data


def parse_frames(wire: bytes) -> list[tuple[int, int, int, bytes]]:
    out, at = [], 0
    while at < len(wire):
        _, typ, flags, sid, length = struct.unpack("!BBHII", wire[at : at + 12])
        out.append((typ, flags, sid, bytes(wire[at + 12 : at + 12 + length])))
        at += 12 + length
    assert at == len(wire)
    return out


def test_a_write_goes_out_as_data_frames_within_the_window_and_the_frame_limit() -> None:
    fastpath.install()
    sink = FrameSink()
    data = os.urandom(700_001)

    async def main() -> None:
        stream = yamux.YamuxStream(5, sink, True)  # type: ignore[arg-type]
        stream.send_window = len(data)  # as a peer's window update would have set it
        await stream.write(data)
        assert stream.send_window == 0

    trio.run(main)
    frames = parse_frames(bytes(sink.wire))
    assert {(typ, flags, sid) for typ, flags, sid, _ in frames} == {(yamux.TYPE_DATA, 0, 5)}
    assert max(len(body) for *_, body in frames) == fastpath.FRAME_PAYLOAD
    assert 12 + fastpath.FRAME_PAYLOAD == yamux.DEFAULT_WINDOW_SIZE  # any peer's first window
    assert b"".join(body for *_, body in frames) == data


def test_a_writer_without_window_wakes_when_the_window_opens_not_on_a_poll() -> None:
    fastpath.install()
    sink = FrameSink()
    clock = trio.testing.MockClock()  # time stands still: a polling writer never wakes

    async def main() -> None:
        stream = yamux.YamuxStream(3, sink, True)  # type: ignore[arg-type]
        stream.send_window = 0
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stream.write, b"x" * 1000)
            await trio.testing.wait_all_tasks_blocked()
            assert sink.wire == b""  # waiting for the peer
            async with stream.window_lock:
                stream.send_window += 600  # what handle_incoming does on WINDOW_UPDATE
            await trio.testing.wait_all_tasks_blocked()
            assert len(parse_frames(bytes(sink.wire))[0][3]) == 600
            stream.send_window += 400
        assert trio.current_time() == 0

    trio.run(main, clock=clock)
    assert b"".join(body for *_, body in parse_frames(bytes(sink.wire))) == b"x" * 1000


def test_a_writer_whose_window_never_opens_fails_after_the_wait_limit() -> None:
    fastpath.install()

    async def main() -> None:
        stream = yamux.YamuxStream(3, FrameSink(), True)  # type: ignore[arg-type]
        stream.send_window = 0
        with pytest.raises(MuxedStreamError, match="window update"):
            await stream.write(b"x")
        assert trio.current_time() == pytest.approx(fastpath.WINDOW_WAIT_S, abs=0.1)

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


# --- noise ---------------------------------------------------------------------------------
def noise_pair() -> tuple[NoiseConnection, NoiseConnection]:
    a = NoiseConnection.from_name(b"Noise_NN_25519_ChaChaPoly_SHA256")
    b = NoiseConnection.from_name(b"Noise_NN_25519_ChaChaPoly_SHA256")
    a.set_as_initiator()
    b.set_as_responder()
    a.start_handshake()
    b.start_handshake()
    b.read_message(a.write_message())
    a.read_message(b.write_message())
    assert a.handshake_finished and b.handshake_finished
    return a, b


def noise_messages(wire: bytes) -> list[bytes]:
    out, at = [], 0
    while at < len(wire):
        n = int.from_bytes(wire[at : at + 2], "big")
        out.append(bytes(wire[at + 2 : at + 2 + n]))
        at += 2 + n
    return out


def test_noise_sends_a_large_write_as_full_messages_in_one_socket_write() -> None:
    fastpath.install()
    a, b = noise_pair()
    data = os.urandom(300_000)
    out = Pipe(chunk=100_000)
    trio.run(NoiseTransportReadWriter(out, a).write_msg, data)  # type: ignore[arg-type]
    assert out.writes == 1
    sealed = noise_messages(bytes(out.written))
    assert all(len(m) <= MAX_NOISE_MESSAGE_LEN for m in sealed)
    assert [len(m) for m in sealed[:-1]] == [MAX_NOISE_MESSAGE_LEN] * (len(sealed) - 1)
    assert b"".join(b.decrypt(m) for m in sealed) == data


def test_noise_reads_messages_cut_from_large_reads_and_checks_each() -> None:
    fastpath.install()
    parts = [os.urandom(n) for n in (5, 65519, 12, 40_000, 65519, 1)]

    async def read_all(chunk: int) -> list[bytes]:
        a, b = noise_pair()
        wire = b"".join(len(m).to_bytes(2, "big") + m for m in (a.encrypt(p) for p in parts))
        reader = NoiseTransportReadWriter(Pipe(wire, chunk), b)  # type: ignore[arg-type]
        return [await reader.read_msg() for _ in parts]

    assert trio.run(read_all, 100_000) == parts
    assert trio.run(read_all, 3) == parts  # a few bytes at a time: lengths split too
    a, b = noise_pair()
    sealed = bytearray(a.encrypt(b"pay me"))
    sealed[3] ^= 1
    wire = Pipe(len(sealed).to_bytes(2, "big") + sealed, 100_000)
    with pytest.raises(NoiseInvalidMessage):
        trio.run(NoiseTransportReadWriter(wire, b).read_msg)  # type: ignore[arg-type]


def test_noise_reports_the_end_of_the_connection_as_py_libp2p_does() -> None:
    fastpath.install()
    _, b = noise_pair()
    clean = NoiseTransportReadWriter(Pipe(b"", 100_000), b)  # type: ignore[arg-type]
    with pytest.raises(IncompleteReadError) as exc:
        trio.run(clean.read_msg)
    assert exc.value.is_clean_close
    cut = NoiseTransportReadWriter(Pipe(b"\x00\x20abc", 100_000), b)  # type: ignore[arg-type]
    with pytest.raises(IncompleteReadError) as exc:
        trio.run(cut.read_msg)
    assert not exc.value.is_clean_close and exc.value.expected_bytes == 2 + 32


# --- secure session and read_exactly ---------------------------------------------------------
class Messages:
    """A message reader: these plaintexts, then the end as the Noise layer reports it."""

    def __init__(self, *msgs: bytes) -> None:
        self.msgs = list(msgs)

    async def read_msg(self) -> bytes:
        await trio.sleep(0)
        if not self.msgs:
            raise IncompleteReadError("closed", expected_bytes=2, received_bytes=0)
        return self.msgs.pop(0)


def session(*msgs: bytes) -> SecureSession:
    s = SecureSession.__new__(SecureSession)
    s.conn = Messages(*msgs)  # type: ignore[assignment]
    s._reset_internal_buffer()
    return s


class ShortThenEnd:
    """A reader that gives ``data`` and then ends."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    async def read(self, n: int) -> bytes:
        out, self.data = self.data[:n], self.data[n:]
        if not out:
            raise IncompleteReadError("closed", expected_bytes=n, received_bytes=0)
        return out


def test_session_reads_keep_py_libp2p_s_contract() -> None:
    fastpath.install()

    async def main() -> None:
        s = session(b"abc", b"defgh", b"ij", b"0123456789")
        assert await s.read(4) == b"abcd"  # across messages
        assert await s.read(None) == b"efgh"  # what is buffered
        assert await s.read(None) == b"ij"  # else the next message
        assert await fastpath._read_exactly(s, 10) == b"0123456789"
        with pytest.raises(IncompleteReadError) as exc:
            await s.read(1)
        assert exc.value.is_clean_close
        # a frame cut short: the count covers the bytes read before the end
        with pytest.raises(IncompleteReadError) as exc:
            await fastpath._read_exactly(ShortThenEnd(b"01234"), 10)
        assert (exc.value.expected_bytes, exc.value.received_bytes) == (10, 5)
        assert not exc.value.is_clean_close

    trio.run(main)


# --- end to end ------------------------------------------------------------------------------
@pytest.mark.parametrize("muxer", ["YAMUX", "MPLEX"])
def test_an_8_mb_blob_round_trips_byte_identical_over_the_tuned_path(
    tmp_path: Path, muxer: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    size = 8 * 1024 * 1024 if muxer == "YAMUX" else 1024 * 1024  # Mplex: the fallback works
    windows: list[int | None] = []  # each fetch stream's receive window once widened
    widen = fastpath.widen_receive_window

    async def recorded(stream: Any) -> int:
        granted = await widen(stream)
        windows.append(getattr(stream.muxed_stream, "recv_window", None))
        return granted

    monkeypatch.setattr(fastpath, "widen_receive_window", recorded)
    a = Libp2pNode(make_identity(71), BlobStore(tmp_path / "a"), muxer=muxer).start()
    try:
        b = Libp2pNode(
            make_identity(72), BlobStore(tmp_path / "b"), muxer=muxer, bootstrap=a.addrs
        ).start()
        try:
            b.wait_for_peers(1, 30)
            data = os.urandom(size)
            cid = a.store.put(data)
            path = b.fetch_blob(cid, peers=[a.peer_id], timeout=60)
            assert hashlib.sha256(path.read_bytes()).digest() == hashlib.sha256(data).digest()
            assert b.store.get(cid) == data  # and get() checks the CID again
            assert windows == [fastpath.RECEIVE_WINDOW if muxer == "YAMUX" else None]
            # a provider whose copy went bad is refused: the CID is checked on arrival
            bad = a.store.put(os.urandom(size // 2))
            with open(a.store.path(bad), "r+b") as f:
                f.seek(size // 4)
                f.write(b"\x00" * 64)
            with pytest.raises(BlobNotFound, match="CIDMismatch"):
                b.fetch_blob(bad, peers=[a.peer_id], timeout=60)
            assert not b.store.has(bad) and not list((tmp_path / "b" / "tmp").iterdir())
        finally:
            b.close()
    finally:
        a.close()


def test_a_stream_on_mplex_has_no_window_to_widen() -> None:
    class NotYamux:
        muxed_stream = object()

    assert trio.run(fastpath.widen_receive_window, NotYamux()) == 0
