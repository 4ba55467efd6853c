"""Bulk throughput for py-libp2p 0.8.1's Noise + Yamux streams, carried here until upstream.

py-libp2p moves a blob at a fraction of what the wire allows, for four reasons found by
profiling (``meshbench bench net``; see the issue-20 note in README's bench figures):

1. **The receive window never grows.** Yamux starts every stream at 256 KiB and doubles
   it only when a window update follows the last within 4 RTT; on loopback the ping RTT is
   ~0.1 ms, shorter than Python takes to drain a window, so it stays at 256 KiB.
   :func:`widen_receive_window` grants a bulk stream's peer a larger window up front, with
   an ordinary WINDOW_UPDATE frame (the yamux spec's only way to do it; go-yamux and
   js-libp2p grow windows with the same frame).
2. **A writer with no window polls** every 10 ms (``trio.sleep(0.01)`` in
   ``YamuxStream.write``): one missed update costs a whole window's worth of time. Here it
   waits for the window to grow instead (``send_window`` becomes a property that wakes it).
3. **One small frame per write, two Noise messages per frame.** ``YamuxStream.write``
   sends a 64 KiB frame at a time, each through its own lock, Noise and socket call; a
   64 KiB frame (12-byte header + 65 524 bytes) is over Noise's 65 519-byte plaintext
   limit, so it leaves as one full and one 17-byte Noise message. Here a write takes as
   much of the window as it may (up to :data:`WRITE_BATCH`), cut into frames of at most
   :data:`FRAME_PAYLOAD` (256 KiB, fewer frames for the receiver to parse), and hands them
   to Noise in one call, which encrypts them into full-size messages and writes them
   with one ``send_all``.
4. **Two socket reads per Noise message** (its 2-byte length, then its body). Here the
   transport reader takes what the socket has (up to :data:`READ_CHUNK`) and cuts messages
   out of it.

The bytes on the wire are what the protocols allow (yamux frames no larger than the window
the peer granted nor than 256 KiB, Noise messages of at most 65 535 bytes, each
authenticated and decrypted as before): only how many are sent at once changes, so
js-libp2p and go-libp2p peers see nothing new.
:func:`install` applies all of it once; ``tests/net/test_fastpath.py`` pins the source of
every function replaced, so an upgrade of py-libp2p fails there instead of silently
running an old copy.
"""

from __future__ import annotations

import ctypes
import struct
from typing import Any, Final

import trio
from libp2p.io import utils as io_utils
from libp2p.io.exceptions import ConnectionClosedError, IncompleteReadError
from libp2p.security import secure_session
from libp2p.security.noise import io as noise_io
from libp2p.stream_muxer.exceptions import MuxedStreamError
from libp2p.stream_muxer.yamux import yamux

__all__ = [
    "FRAME_PAYLOAD",
    "READ_CHUNK",
    "RECEIVE_WINDOW",
    "WRITE_BATCH",
    "install",
    "keep_freed_memory",
    "upstream_functions",
    "widen_receive_window",
]

#: The most of the send window one ``write`` turns into frames before the socket sees it.
WRITE_BATCH: Final = 1024 * 1024
#: Bytes the Noise transport reader asks the socket for at once.
READ_CHUNK: Final = 256 * 1024
#: The receive window a bulk stream grants its peer (go-yamux's maximum, 16 MiB).
RECEIVE_WINDOW: Final = yamux.MAX_WINDOW_SIZE
#: Seconds a writer waits for the peer to open its window (py-libp2p's own limit).
WINDOW_WAIT_S: Final = 5.0

#: A DATA frame's largest payload: a frame of 256 KiB, the spec's initial window, so any
#: receiver that honours its own initial window accepts it (go-yamux and js-libp2p check
#: a frame only against the window; py-libp2p's 64 KiB is its own sending choice).
FRAME_PAYLOAD: Final = yamux.DEFAULT_WINDOW_SIZE - yamux.HEADER_SIZE
#: malloc: buffers below this come from the heap, not from mmap (glibc's default: 128 KiB,
#: rising only after such a buffer is freed).
MMAP_THRESHOLD: Final = 4 * 1024 * 1024
#: malloc: free memory at the heap's top kept for reuse (glibc's default: 128 KiB).
TRIM_THRESHOLD: Final = 16 * 1024 * 1024
_M_TRIM_THRESHOLD: Final = -1  # glibc's malloc.h
_M_MMAP_THRESHOLD: Final = -3
_NOISE_LEN: Final = noise_io.SIZE_NOISE_MESSAGE_LEN
_MAX_PLAINTEXT: Final = noise_io.MAX_PLAINTEXT_LENGTH

#: What :func:`install` replaced, by qualified name: the originals, for the shape test.
ORIGINALS: dict[str, Any] = {}


def install() -> None:
    """Apply the patches, once per process (every :class:`~.host.MeshHost` calls it)."""
    if ORIGINALS:
        return
    keep_freed_memory()
    stream_cls = yamux.YamuxStream
    noise_cls = noise_io.NoiseTransportReadWriter
    ORIGINALS["YamuxStream.write"] = stream_cls.write
    ORIGINALS["BaseNoiseMsgReadWriter.write_msg"] = noise_io.BaseNoiseMsgReadWriter.write_msg
    ORIGINALS["BaseNoiseMsgReadWriter.read_msg"] = noise_io.BaseNoiseMsgReadWriter.read_msg
    ORIGINALS["YamuxStream._auto_tune_and_send_window_update"] = (
        stream_cls._auto_tune_and_send_window_update
    )
    ORIGINALS["SecureSession.read"] = secure_session.SecureSession.read
    ORIGINALS["read_exactly"] = io_utils.read_exactly
    stream_cls._auto_tune_and_send_window_update = _release_window  # type: ignore[method-assign]
    secure_session.SecureSession.read = _session_read  # type: ignore[method-assign]
    yamux.read_exactly = _read_exactly  # only yamux's name for it: its header and frame reads
    stream_cls.write = _yamux_write  # type: ignore[method-assign]
    stream_cls.send_window = property(_get_send_window, _set_send_window)  # type: ignore[assignment]
    noise_cls.write_msg = _noise_write_msg  # type: ignore[method-assign]
    noise_cls.read_msg = _noise_read_msg  # type: ignore[method-assign]


def upstream_functions() -> dict[str, Any]:
    """Every py-libp2p function this module replaces or relies on the inside of, by name
    (the replaced ones as they were): ``tests/net/test_fastpath.py`` pins their source."""
    install()
    return {
        **ORIGINALS,
        # relied on: send_window is assigned (the property wakes writers), frames are read
        # through the module's name read_exactly, window updates go out this way
        "YamuxStream.__init__": yamux.YamuxStream.__init__,
        "YamuxStream.send_window_update": yamux.YamuxStream.send_window_update,
        "Yamux.handle_incoming": yamux.Yamux.handle_incoming,
        "Yamux._read_data_body": yamux.Yamux._read_data_body,
        "Yamux._write_frame": yamux.Yamux._write_frame,
        "SecureSession._drain": secure_session.SecureSession._drain,
        "BaseNoiseMsgReadWriter.__init__": noise_io.BaseNoiseMsgReadWriter.__init__,
    }


def keep_freed_memory() -> bool:
    """Stop glibc's malloc handing large freed buffers back to the kernel (glibc only).

    Every chunk on the bulk path (a socket read, a Noise message, a batch of frames) is a
    fresh buffer of 64 KiB to 1 MiB. With glibc's defaults a freed buffer that size is
    unmapped or trimmed off the heap, and the next one faults in and zeroes new pages:
    measured, that tripled the CPU cost of encrypting a megabyte into Noise messages (1.6
    against 0.4 ms). Buffers up to MMAP_THRESHOLD now come from the heap, which keeps up
    to TRIM_THRESHOLD free at its top for reuse. Returns whether it applied.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to tune
        return False
    return bool(
        mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )


async def widen_receive_window(stream: Any, size: int = RECEIVE_WINDOW) -> int:
    """Let the peer send ``size`` bytes ahead on ``stream`` (a libp2p stream we read in bulk).

    Sends one WINDOW_UPDATE and returns the bytes granted (0 on a muxer without windows,
    such as Mplex, or when the window is already that wide).
    """
    muxed = getattr(stream, "muxed_stream", stream)
    if not isinstance(muxed, yamux.YamuxStream):
        return 0
    size = min(size, yamux.MAX_WINDOW_SIZE)  # a peer refuses frames over its maximum
    async with muxed.window_lock:
        grant = size - muxed.recv_window
        if grant <= 0:
            return 0
        muxed.target_recv_window = max(muxed.target_recv_window, size)
        muxed.recv_window += grant
        muxed.__dict__["_mb_bulk"] = True
    await muxed.send_window_update(grant, skip_lock=True)
    return grant


async def _release_window(self: Any, *, bytes_read: int = 0) -> None:
    """After a read: on a widened stream, give the peer back a quarter window at a time.

    py-libp2p sends a WINDOW_UPDATE after nearly every read (a 64 KiB frame, as trio
    wakes the reader per frame), which the writer must then read and apply: a few per
    megabyte each way. A stream that :func:`widen_receive_window` opened releases what
    was read once it adds up to a quarter of the window (go-yamux waits for half); any
    other stream keeps py-libp2p's own rule.
    """
    if not self.__dict__.get("_mb_bulk"):
        await ORIGINALS["YamuxStream._auto_tune_and_send_window_update"](
            self, bytes_read=bytes_read
        )
        return
    async with self.window_lock:
        buffered = len(self.conn.stream_buffers.get(self.stream_id, b""))
        grant = self.target_recv_window - (self.recv_window + buffered)
        if grant < self.target_recv_window // 4:
            return
        self.recv_window += grant
    await self.send_window_update(grant, skip_lock=True)


# --- yamux: batched frames, and a writer that waits for the window instead of polling -------
def _get_send_window(stream: Any) -> int:
    return stream.__dict__["_mb_send_window"]  # type: ignore[no-any-return]


def _set_send_window(stream: Any, value: int) -> None:
    grew = value > stream.__dict__.get("_mb_send_window", 0)
    stream.__dict__["_mb_send_window"] = value
    waiting = stream.__dict__.get("_mb_window_opened")
    if grew and waiting is not None:
        waiting.set()


async def _wait_for_window(stream: Any) -> None:
    """Until the peer opens the window or the stream closes, at most WINDOW_WAIT_S."""
    with trio.move_on_after(WINDOW_WAIT_S) as scope:
        while stream.send_window <= 0 and not stream.closed:
            opened = stream.__dict__["_mb_window_opened"] = trio.Event()
            # a close sets no event: look again now and then, as py-libp2p does
            with trio.move_on_after(0.05):
                await opened.wait()
    stream.__dict__["_mb_window_opened"] = None
    if scope.cancelled_caught:
        raise MuxedStreamError(f"Timed out waiting for window update after {WINDOW_WAIT_S} s.")


def _frames(stream_id: int, data: memoryview) -> bytes:
    """``data`` as consecutive DATA frames of at most FRAME_PAYLOAD bytes, in one buffer."""
    parts: list[bytes | memoryview] = []
    pack = struct.Struct(yamux.YAMUX_HEADER_FORMAT).pack
    for start in range(0, len(data), FRAME_PAYLOAD):
        chunk = data[start : start + FRAME_PAYLOAD]
        parts.append(pack(0, yamux.TYPE_DATA, 0, stream_id, len(chunk)))
        parts.append(chunk)
    return b"".join(parts)


async def _yamux_write(self: Any, data: bytes) -> None:
    """``YamuxStream.write``, sending up to WRITE_BATCH of the window in one muxer write."""
    if self.send_closed:
        raise MuxedStreamError("Stream is closed for sending")
    view = memoryview(data)
    sent = 0
    while sent < len(view):
        batch: bytes | None = None
        async with self.rw_lock.write_lock():
            if self.send_closed:
                raise MuxedStreamError("Stream is closed for sending")
            async with self.window_lock:
                if self.closed:
                    raise MuxedStreamError("Stream is closed")
                take = min(self.send_window, len(view) - sent, WRITE_BATCH)
                if take > 0:
                    self.send_window -= take
                    batch = _frames(self.stream_id, view[sent : sent + take])
        if batch is None:
            self._zero_window_waits += 1
            await _wait_for_window(self)
            continue
        await self.conn._write_frame(batch)
        sent += take


# --- noise: full-size messages in one socket write, messages cut from large reads -----------
async def _noise_write_msg(self: Any, msg: bytes, prefix_encoded: bool = False) -> None:
    """``write_msg`` of the transport phase: every message encrypted, then one write."""
    if prefix_encoded or len(msg) <= _MAX_PLAINTEXT:
        await ORIGINALS["BaseNoiseMsgReadWriter.write_msg"](self, msg, prefix_encoded)
        return
    parts: list[bytes] = []
    for start in range(0, len(msg), _MAX_PLAINTEXT):
        sealed = self.encrypt(bytes(msg[start : start + _MAX_PLAINTEXT]))
        parts.append(len(sealed).to_bytes(_NOISE_LEN, "big"))
        parts.append(sealed)
    await self.read_writer.read_write_closer.write(b"".join(parts))


async def _noise_read_msg(self: Any, prefix_encoded: bool = False) -> bytes:
    """``read_msg`` of the transport phase, reading the socket in READ_CHUNK pieces.

    Only the transport reader buffers: the handshake's reader must not read past its own
    messages, and after the handshake nothing else reads this connection.
    """
    if prefix_encoded:
        return await ORIGINALS["BaseNoiseMsgReadWriter.read_msg"](self, prefix_encoded)
    buf: bytearray = self.__dict__.setdefault("_mb_read_buf", bytearray())
    raw = self.read_writer.read_write_closer
    while (sealed := _next_sealed(buf)) is None:
        await _read_more(raw, buf)
    return self.decrypt(sealed)  # type: ignore[no-any-return]


def _next_sealed(buf: bytearray) -> bytes | None:
    """Cut the first whole Noise message (still encrypted) off ``buf``, if there is one."""
    if len(buf) < _NOISE_LEN:
        return None
    end = _NOISE_LEN + int.from_bytes(buf[:_NOISE_LEN], "big")
    if len(buf) < end:
        return None
    return _cut(buf, _NOISE_LEN, end)


def _cut(buf: bytearray, start: int, end: int) -> bytes:
    """``bytes(buf[start:end])`` in one copy (slicing a bytearray copies twice), then drop
    ``buf[:end]``."""
    with memoryview(buf) as view:
        out = bytes(view[start:end])
    del buf[:end]
    return out


def _buffered_messages(conn: Any) -> list[bytes]:
    """Decrypt the Noise messages already whole in ``conn``'s read buffer (no socket read)."""
    buf: bytearray | None = conn.__dict__.get("_mb_read_buf")
    out: list[bytes] = []
    while buf and (sealed := _next_sealed(buf)) is not None:
        out.append(conn.decrypt(sealed))
    return out


async def _session_read(self: Any, n: int | None = None) -> bytes:
    """``SecureSession.read`` over one plaintext buffer, topped up with every message that
    has already arrived whole, so a frame's header and body usually take one wait.

    Same contract as py-libp2p's: ``n`` bytes (fewer only if the connection ends after
    some), or with ``n=None`` what is buffered or else the next message.
    """
    if n == 0:
        return b""
    plain: bytearray | None = self.__dict__.get("_mb_plain")
    if plain is None:  # first read: take over what py-libp2p's own buffer holds
        plain = self.__dict__["_mb_plain"] = bytearray(self._drain(None))
    if n is None and not plain:
        msg = await self.conn.read_msg()
        if msg == b"":
            raise ConnectionClosedError("Connection closed")
        return msg  # type: ignore[no-any-return]
    while n is not None and len(plain) < n:
        msg = await self.conn.read_msg()
        if msg == b"":
            if plain:
                break
            raise ConnectionClosedError("Connection closed")
        plain += msg
        for more in _buffered_messages(self.conn):
            plain += more
    return _cut(plain, 0, len(plain) if n is None else min(n, len(plain)))


async def _read_exactly(reader: Any, n: int, retry_count: int = 100) -> bytes:
    """``read_exactly`` without its copy into a bytearray and out again when one read
    gives all ``n`` bytes (as :func:`_session_read` does unless the connection ends)."""
    data = await reader.read(n)
    if len(data) == n:
        return data  # type: ignore[no-any-return]
    try:
        rest = await ORIGINALS["read_exactly"](reader, n - len(data), retry_count)
    except IncompleteReadError as exc:
        got = len(data) + exc.received_bytes
        raise IncompleteReadError(
            f"Connection closed during read operation: expected {n} bytes but received {got} bytes",
            expected_bytes=n,
            received_bytes=got,
        ) from None
    return data + rest  # type: ignore[no-any-return]


async def _read_more(raw: Any, buf: bytearray) -> None:
    data = await raw.read(READ_CHUNK)
    if not data:  # as py-libp2p's read_exactly reports it (received 0: a clean close)
        want = _NOISE_LEN + (int.from_bytes(buf[:_NOISE_LEN], "big") if len(buf) > 1 else 0)
        raise IncompleteReadError(
            f"Connection closed during read operation: expected {want} bytes but "
            f"received {len(buf)} bytes",
            expected_bytes=want,
            received_bytes=len(buf),
        )
    buf += data
