"""The py-libp2p throughput patches (meshbench/net/libp2p_fast.py): same bytes, fewer trips."""

from __future__ import annotations

import struct

import trio
import trio.testing
from libp2p.security.noise import io as noise_io
from libp2p.stream_muxer.yamux import yamux

import meshbench.net.host  # noqa: F401  (applies the patches)
from meshbench.net import libp2p_fast


class _Muxer:
    """What a YamuxStream writes through: records each _write_frame call."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []

    async def _write_frame(self, data: bytes) -> None:
        self.writes.append(bytes(data))


def _frames(data: bytes) -> list[tuple[int, int, bytes]]:
    out, pos = [], 0
    while pos < len(data):
        _, typ, _, sid, n = struct.unpack(yamux.YAMUX_HEADER_FORMAT, data[pos : pos + 12])
        out.append((typ, sid, data[pos + 12 : pos + 12 + n]))
        pos += 12 + n
    return out


def test_patches_are_applied_and_frames_fit_one_noise_message():
    assert libp2p_fast.applied()
    assert yamux.MAX_MESSAGE_SIZE <= noise_io.MAX_PLAINTEXT_LENGTH


def test_a_write_is_framed_in_order_within_the_window_and_resumes_on_an_update():
    muxer = _Muxer()
    stream = yamux.YamuxStream(5, muxer, True)  # type: ignore[arg-type]
    data = bytes(range(256)) * 4096  # 1 MiB, four times the initial window

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stream.write, data)
            for _ in range(3):  # each time the window is used up, the peer grants more
                with trio.fail_after(5):
                    while stream.send_window > 0:
                        await trio.sleep(0)
                    await trio.testing.wait_all_tasks_blocked()
                async with stream.window_lock:
                    stream.send_window += yamux.DEFAULT_WINDOW_SIZE

    trio.run(main)
    frames = [f for w in muxer.writes for f in _frames(w)]
    assert all(typ == yamux.TYPE_DATA and sid == 5 for typ, sid, _ in frames)
    assert all(len(p) <= yamux.MAX_MESSAGE_SIZE - yamux.HEADER_SIZE for _, _, p in frames)
    assert b"".join(p for _, _, p in frames) == data
    assert stream.send_window == 0 and stream._zero_window_waits == 3
    assert len(muxer.writes) == 4  # one batch per window, not one trip per frame


class _Socket:
    """A trio SocketStream stand-in that hands out scripted chunks."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks
        self.calls = 0

    async def receive_some(self, n: int | None = None) -> bytes:
        self.calls += 1
        await trio.lowlevel.checkpoint()
        return self.chunks.pop(0) if self.chunks else b""


def test_buffered_reads_serve_exact_sizes_from_one_recv():
    from libp2p.io.trio import TrioTCPStream

    sock = _Socket([b"ab" + b"x" * 1000 + b"cd", b"tail"])
    tcp = TrioTCPStream(sock)  # type: ignore[arg-type]

    async def main() -> list[bytes]:
        return [await tcp.read(2), await tcp.read(1000), await tcp.read(10), await tcp.read()]

    assert trio.run(main) == [b"ab", b"x" * 1000, b"cd", b"tail"]
    assert sock.calls == 2


def test_a_large_noise_write_is_the_same_messages_in_one_send():
    sent: list[bytes] = []

    class Conn:
        async def write(self, data: bytes) -> None:
            sent.append(data)

    class Counter:  # an "encryption" that shows message boundaries: tag + length
        def encrypt(self, data: bytes) -> bytes:
            return b"E" + len(data).to_bytes(4, "big") + data

    rw = noise_io.NoiseTransportReadWriter.__new__(noise_io.NoiseTransportReadWriter)
    rw.read_writer = noise_io.NoisePacketReadWriter(Conn())  # type: ignore[arg-type]
    rw.encrypt = Counter().encrypt  # type: ignore[method-assign]
    msg = bytes(range(256)) * 600  # 153,600 bytes: three Noise messages
    trio.run(rw.write_msg, msg)
    assert len(sent) == 1
    out, pos, pieces = sent[0], 0, []
    while pos < len(out):
        n = int.from_bytes(out[pos : pos + 2], "big")
        pieces.append(out[pos + 2 + 5 : pos + 2 + n])
        pos += 2 + n
    assert b"".join(pieces) == msg
    assert [len(p) for p in pieces] == [noise_io.MAX_PLAINTEXT_LENGTH] * 2 + [
        len(msg) - 2 * noise_io.MAX_PLAINTEXT_LENGTH
    ]
