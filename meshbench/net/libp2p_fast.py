"""Throughput fixes for py-libp2p 0.8.1's TCP + Noise + Yamux path, applied at import.

They belong upstream (py-libp2p, pinned ``libp2p==0.8.1``); each is carried here as a small
patch of one named method or constant, applied once by :func:`apply` (``meshbench.net.host``
calls it). None changes a byte on the wire that a peer could tell from stock behaviour other
than frame sizes within the spec's limits, so js-libp2p and go-libp2p peers interoperate
(``tests/net/test_js_interop.py``). Measured with ``meshbench bench net`` (``stream_MBps``);
see the figures in the module's test and the README.

1. ``libp2p/io/trio.py`` ``TrioTCPStream.read``: every Noise message was read with at least
   two ``recv`` calls (its 2-byte length, then the body, often in pieces). The patched read
   takes up to 256 KiB per ``recv`` into a buffer and serves reads from it.
2. ``libp2p/stream_muxer/yamux/yamux.py`` ``MAX_MESSAGE_SIZE``: a full Yamux DATA frame
   (64 KiB) is 17 bytes over Noise's largest plaintext (65519), so every frame went out as
   two Noise messages (two encryptions, two length prefixes, two sends). Frames are now
   sized so that header and payload fit one Noise message.
3. ``libp2p/stream_muxer/yamux/yamux.py`` ``YamuxStream.write``: a writer whose send window
   was used up polled it every 10 ms (``trio.sleep(0.01)``), idling the stream for most of
   each window round trip. The patched write waits on an event that the window's increase
   sets, with the same 5 s timeout and error.
4. ``Yamux._write_frame``: built a debug line (header unpack, flag names, an f-string) for
   every frame even with debug logging off; the patched one formats it only when enabled.
5. ``YamuxStream.write`` again, and ``libp2p/security/noise/io.py``
   ``BaseNoiseMsgReadWriter.write_msg``: each 64 KiB frame took its own trip through four
   trio locks (each a scheduler pass) and its own ``send``. A write now takes as much of
   the window as it may (up to ``WRITE_BATCH``) as consecutive frames in one
   ``_write_frame``, and Noise encrypts the chunks of a large write and sends them in one
   ``send_all``. The bytes on the wire are the same frames and the same Noise messages.
6. Patch 1's read returns bytes already buffered without taking the read lock (no await,
   so no scheduler pass): the connection has one reader, the muxer's loop.
"""

from __future__ import annotations

import logging
import struct
from typing import Any, Final

import trio
from libp2p.io import trio as libp2p_trio
from libp2p.io.exceptions import ConnectionClosedError
from libp2p.security.noise import io as noise_io
from libp2p.stream_muxer.exceptions import MuxedStreamError
from libp2p.stream_muxer.yamux import yamux

__all__ = ["READ_BUFFER", "applied", "apply"]

#: Bytes taken from the socket per ``recv`` (patch 1).
READ_BUFFER: Final = 256 * 1024
#: Largest Yamux frame (header included) that fits one Noise transport message (patch 2).
_FRAME: Final = noise_io.MAX_PLAINTEXT_LENGTH
_WINDOW_WAIT_S: Final = 5.0
#: Most bytes one Yamux write call frames and hands to Noise at once (patch 5).
WRITE_BATCH: Final = 1024 * 1024

_applied = False
_stock: dict[str, Any] = {}


def applied() -> bool:
    return _applied


def apply() -> None:
    """Install the patches (idempotent)."""
    global _applied
    if _applied:
        return
    if not hasattr(libp2p_trio.TrioTCPStream, "read") or not hasattr(yamux, "MAX_MESSAGE_SIZE"):
        raise RuntimeError("py-libp2p changed: review meshbench/net/libp2p_fast.py")
    _stock["read"] = libp2p_trio.TrioTCPStream.read
    libp2p_trio.TrioTCPStream.read = _buffered_read  # type: ignore[method-assign]
    yamux.MAX_MESSAGE_SIZE = min(yamux.MAX_MESSAGE_SIZE, _FRAME)
    yamux.YamuxStream.send_window = property(_get_send_window, _set_send_window)  # type: ignore[assignment]
    yamux.YamuxStream.write = _yamux_write  # type: ignore[method-assign]
    yamux.Yamux._write_frame = _write_frame  # type: ignore[method-assign]
    _stock["write_msg"] = noise_io.BaseNoiseMsgReadWriter.write_msg
    noise_io.BaseNoiseMsgReadWriter.write_msg = _noise_write_msg  # type: ignore[method-assign]
    _applied = True


# --- 1. buffered TCP reads -------------------------------------------------------------
async def _buffered_read(self: libp2p_trio.TrioTCPStream, n: int | None = None) -> bytes:
    """Up to ``n`` bytes (any amount when None), from the buffer first, like ``receive_some``."""
    if n == 0:
        return b""
    buf: bytearray | None = getattr(self, "_mb_buf", None)
    if buf:  # already here: no lock, no await (patch 6)
        return _take(buf, n)
    async with self.read_lock:
        if buf is None:
            buf = self._mb_buf = bytearray()  # type: ignore[attr-defined]
        if not buf:
            try:
                data = await self.stream.receive_some(max(READ_BUFFER, n or 0))
            except trio.BrokenResourceError as error:
                raise ConnectionClosedError(
                    f"TCP connection reset by remote peer: {error}", transport="tcp"
                ) from error
            except trio.ClosedResourceError:
                return b""  # closed locally: EOF, as the stock read says
            if n is None or len(data) <= n:
                return data
            buf += data
        return _take(buf, n)


def _take(buf: bytearray, n: int | None) -> bytes:
    if n is None or n >= len(buf):
        out = bytes(buf)
        buf.clear()
        return out
    out = bytes(buf[:n])
    del buf[:n]
    return out


# --- 3. window waits on an event -----------------------------------------------------------
def _get_send_window(self: yamux.YamuxStream) -> int:
    return self.__dict__["_mb_send_window"]


def _set_send_window(self: yamux.YamuxStream, value: int) -> None:
    old = self.__dict__.get("_mb_send_window", 0)
    self.__dict__["_mb_send_window"] = value
    if value > old:
        event: trio.Event | None = self.__dict__.get("_mb_window_event")
        if event is not None:
            event.set()


async def _yamux_write(self: yamux.YamuxStream, data: bytes) -> None:
    """``YamuxStream.write`` of 0.8.1, waiting for window on an event instead of polling,
    and framing as much as the window allows in one go (patches 3 and 5)."""
    if self.send_closed:
        raise MuxedStreamError("Stream is closed for sending")
    total = len(data)
    view = memoryview(data)
    payload = yamux.MAX_MESSAGE_SIZE - yamux.HEADER_SIZE
    sent = 0
    while sent < total:
        frames: list[bytes] = []
        while not frames:
            async with self.rw_lock.write_lock():
                if self.send_closed:
                    raise MuxedStreamError("Stream is closed for sending")
                async with self.window_lock:
                    if self.closed:
                        raise MuxedStreamError("Stream is closed")
                    window = self.send_window
                    if window > 0:
                        n = min(window, total - sent, WRITE_BATCH)
                        self.send_window = window - n
                        for start in range(sent, sent + n, payload):
                            size = min(payload, sent + n - start)
                            frames.append(
                                struct.pack(
                                    yamux.YAMUX_HEADER_FORMAT,
                                    0,
                                    yamux.TYPE_DATA,
                                    0,
                                    self.stream_id,
                                    size,
                                )
                            )
                            frames.append(view[start : start + size])
                        sent += n
                    else:
                        event = self.__dict__["_mb_window_event"] = trio.Event()
            if frames:
                break
            self._zero_window_waits += 1
            with trio.move_on_after(_WINDOW_WAIT_S) as scope:
                while not (self.send_window > 0 or self.closed):
                    await event.wait()
                    event = self.__dict__["_mb_window_event"] = trio.Event()
            if scope.cancelled_caught:
                raise MuxedStreamError("Timed out waiting for window update after 5 seconds.")
        await self.conn._write_frame(b"".join(frames))


# --- 4. no per-frame debug formatting when debug is off -------------------------------------
async def _write_frame(self: yamux.Yamux, data: bytes) -> None:
    if yamux.logger.isEnabledFor(logging.DEBUG) and len(data) >= yamux.HEADER_SIZE:
        _, typ, flags, sid, length = struct.unpack(yamux.YAMUX_HEADER_FORMAT, data[:12])
        yamux.logger.debug(
            "YAMUX TX: type=%s flags=%s stream=%s length=%s", typ, flags, sid, length
        )
    async with self._write_lock:
        await self.secured_conn.write(data)
    await trio.lowlevel.checkpoint()


# --- 5. a large Noise write: encrypt every chunk, one send ------------------------------------
async def _noise_write_msg(
    self: noise_io.BaseNoiseMsgReadWriter, msg: bytes, prefix_encoded: bool = False
) -> None:
    limit = noise_io.MAX_PLAINTEXT_LENGTH
    if len(msg) <= limit or prefix_encoded:  # handshake and small writes: the stock path
        await _stock["write_msg"](self, msg, prefix_encoded)
        return
    view = memoryview(msg)
    parts: list[bytes] = []
    for start in range(0, len(msg), limit):
        sealed = self.encrypt(bytes(view[start : start + limit]))
        parts.append(len(sealed).to_bytes(noise_io.SIZE_NOISE_MESSAGE_LEN, "big"))
        parts.append(sealed)
    await self.read_writer.read_write_closer.write(b"".join(parts))
