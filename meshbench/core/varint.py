"""Unsigned LEB128 ("uvarint"): multiformats varints, libp2p length prefixes, wasm indices."""

from __future__ import annotations

__all__ = ["uvarint"]


def uvarint(value: int) -> bytes:
    """The unsigned LEB128 encoding of ``value`` (>= 0)."""
    if value < 0:
        raise ValueError("uvarint of a negative number")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)
