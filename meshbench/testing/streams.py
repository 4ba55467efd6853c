"""An in-memory byte stream for tests of stream protocols (libp2p streams, raw wires)."""

from __future__ import annotations

import trio

__all__ = ["Pipe"]


class Pipe:
    """One direction of bytes each way, like a libp2p stream or a raw connection: reads of
    at most ``chunk`` bytes from ``incoming`` (b"" at the end), and what was written (and in
    how many writes)."""

    def __init__(self, incoming: bytes = b"", chunk: int = 7919) -> None:
        self.incoming = bytearray(incoming)
        self.written = bytearray()
        self.chunk = chunk
        self.writes = 0

    async def read(self, n: int | None = None) -> bytes:
        await trio.sleep(0)
        take = min(n or self.chunk, self.chunk)
        out = bytes(self.incoming[:take])
        del self.incoming[:take]
        return out

    async def write(self, data: bytes) -> None:
        self.written += data
        self.writes += 1
