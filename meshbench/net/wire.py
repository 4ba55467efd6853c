"""Framing for our request/response protocols: unsigned varints and exact reads on a stream."""

from __future__ import annotations

from typing import Protocol

from libp2p.network.stream.exceptions import StreamEOF

from meshbench.core.errors import NetworkError
from meshbench.core.varint import uvarint

__all__ = ["StreamReader", "uvarint"]


class ByteStream(Protocol):
    async def read(self, n: int | None = None) -> bytes: ...


class StreamReader:
    """Buffered reads of exact sizes and varints from a libp2p stream."""

    def __init__(self, stream: ByteStream, *, chunk: int = 1 << 20) -> None:
        self._stream = stream
        self._buf = bytearray()
        self._chunk = chunk
        self.eof = False

    async def _fill(self) -> bool:
        if self.eof:
            return False
        try:
            data = await self._stream.read(self._chunk)
        except StreamEOF:
            data = b""
        if not data:
            self.eof = True
            return False
        self._buf += data
        return True

    async def exactly(self, n: int) -> bytes:
        while len(self._buf) < n:
            if not await self._fill():
                raise NetworkError(f"stream ended after {len(self._buf)} of {n} bytes")
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out

    async def uvarint(self, max_bytes: int = 9) -> int:
        value = shift = 0
        for _ in range(max_bytes):
            byte = (await self.exactly(1))[0]
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7
        raise NetworkError("varint too long")

    async def some(self, limit: int) -> bytes:
        """Up to ``limit`` bytes (at least one), or b"" at the end of the stream."""
        if not self._buf:
            if self.eof:
                return b""
            try:
                data = await self._stream.read(min(self._chunk, limit))
            except StreamEOF:
                data = b""
            if not data:
                self.eof = True
            return data  # straight through: no copy into the buffer and out again
        out = bytes(self._buf[:limit])
        del self._buf[:limit]
        return out

    async def at_end(self) -> bool:
        return not self._buf and not await self._fill()
