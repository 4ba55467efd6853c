"""CIDv1 with sha2-256: the only content identifiers meshbench makes or accepts.

A small immutable value type instead of ``multiformats.CID``: that class validates its
arguments at run time on every operation (about 150 us for ``str(cid)``, 60 us to build
one), and CIDs are in every message, every ledger row and every data frame. This type
supports exactly what the mesh uses (CIDv1, sha2-256, codecs ``raw`` 0x55 and ``dag-cbor``
0x71, text in multibase base32 lower-case, ``b...``), and refuses the rest with
:class:`InvalidCID`. Tests check it against published vectors and against ``multiformats``.
"""

from __future__ import annotations

import base64
import binascii
from collections import OrderedDict
from typing import Final

from meshbench.core.errors import InvalidCID

__all__ = ["CID", "CODECS"]

#: multicodec name <-> code for the codecs meshbench uses
CODECS: Final = {"raw": 0x55, "dag-cbor": 0x71}
_NAMES: Final = {code: name for name, code in CODECS.items()}
_SHA2_256: Final = b"\x12\x20"
#: The text of CIDs spelled lately, by their bytes: the same CID arrives as a new object in
#: every message that names it, and base32 costs (~5 us a CID with base64's; the authority
#: spelled ~34 a task, of a few CIDs each named again and again while the task is live).
#: Bounded, the oldest going first (about 100 KB: held flat from the first few dozen tasks on,
#: where emptying it when full made the heap jump by its size between two measurements).
TEXTS_KEPT: Final = 512
_TEXTS: OrderedDict[bytes, str] = OrderedDict()


#: base32 (RFC 4648, lower case, unpadded) of the 36 bytes of a CID, without a loop: the 288
#: bits, shifted left by 2, are 58 groups of 5; six mask-and-shift steps of one big integer
#: move group i from bit 5i to bit 8i (group i moves 3i bits: by 3 * 2**k where bit k of i
#: is set), and one translate spells each byte. ~1.7 us against ~6 for base64.b32encode
#: (tests check it against base64 on random CIDs).
_GROUPS: Final = 58
_B32_SPELL: Final = bytes(b"abcdefghijklmnopqrstuvwxyz234567"[i % 32] for i in range(256))


def _spread_steps() -> tuple[tuple[int, int, int], ...]:
    steps = []
    for k in reversed(range(6)):  # 64 >= 58 groups: six bits of the group index
        moving = staying = 0
        for i in range(64):
            at = 5 * i + 3 * (i & ~((1 << (k + 1)) - 1))  # where the higher steps put it
            if i >> k & 1:
                moving |= 31 << at
            else:
                staying |= 31 << at
        steps.append((3 << k, moving, staying))
    return tuple(steps)


_SPREAD: Final = _spread_steps()


def _base32(raw: bytes) -> str:
    x = int.from_bytes(raw, "big") << 2
    for shift, moving, staying in _SPREAD:
        x = (x & staying) | ((x & moving) << shift)
    return x.to_bytes(64, "big")[64 - _GROUPS :].translate(_B32_SPELL).decode()


_set = object.__setattr__


def _fill(cid: CID, code: int, raw: bytes) -> None:
    # past CID.__setattr__, which refuses every write once the object is made
    _set(cid, "_code", code)
    _set(cid, "_bytes", raw)
    _set(cid, "_str", None)
    _set(cid, "_hash", hash(raw))


class CID:
    """An immutable CIDv1 (sha2-256). Build with :meth:`from_digest` or :meth:`decode`."""

    __slots__ = ("_bytes", "_code", "_hash", "_str")
    version: Final = 1  # type: ignore[misc]

    def __init__(self, codec: str, digest: bytes) -> None:
        code = CODECS.get(codec)
        if code is None:
            raise InvalidCID(f"unsupported codec {codec!r}; meshbench uses {sorted(CODECS)}")
        if len(digest) != 32:
            raise InvalidCID(f"a sha2-256 digest is 32 bytes, not {len(digest)}")
        _fill(self, code, bytes((1, code)) + _SHA2_256 + bytes(digest))

    @classmethod
    def _checked(cls, code: int, raw: bytes) -> CID:
        """The CID of ``raw``, its 36 bytes already checked (by :meth:`_from_binary`)."""
        cid = object.__new__(cls)
        _fill(cid, code, raw)
        return cid

    @classmethod
    def from_digest(cls, codec: str, digest: bytes) -> CID:
        return cls(codec, digest)

    @classmethod
    def decode(cls, value: str | bytes | bytearray | memoryview) -> CID:
        """Parse the text (base32 ``b...``) or binary form; anything else is InvalidCID."""
        if isinstance(value, str):
            return cls._from_text(value)
        if isinstance(value, bytes | bytearray | memoryview):
            return cls._from_binary(bytes(value))
        raise InvalidCID(f"a CID is text or bytes, not {type(value).__name__}")

    @classmethod
    def _from_text(cls, text: str) -> CID:
        if not text:
            raise InvalidCID("empty string is not a CID")
        if text.startswith("Qm") and len(text) == 46:
            raise InvalidCID(f"{text} is a CIDv0; meshbench uses CIDv1 only")
        if text[0] != "b":
            raise InvalidCID(
                f"{text[:60]!r} is not base32 lower-case multibase (CIDv1 text starts with 'b')"
            )
        body = text[1:]
        if body != body.lower():
            raise InvalidCID(f"{text[:60]!r} is not lower-case base32")
        padded = body.upper() + "=" * (-len(body) % 8)
        try:
            raw = base64.b32decode(padded)
        except (binascii.Error, ValueError) as exc:
            raise InvalidCID(f"{text[:60]!r} is not valid base32: {exc}") from None
        cid = cls._from_binary(raw)
        if str(cid) != text:  # non-zero padding bits, or another spelling of the same bytes
            raise InvalidCID(f"{text[:60]!r} is not the canonical spelling of {cid}")
        return cid

    @classmethod
    def _from_binary(cls, raw: bytes) -> CID:
        if len(raw) < 4:
            raise InvalidCID(f"a CID of {len(raw)} bytes is truncated")
        if raw[0] != 1:
            if raw[:2] == _SHA2_256:
                raise InvalidCID("a CIDv0 (bare multihash); meshbench uses CIDv1 only")
            raise InvalidCID(f"CID version {raw[0]} is not supported; meshbench uses CIDv1")
        code = raw[1]
        if code & 0x80 or code not in _NAMES:
            raise InvalidCID(f"codec 0x{code:x} is not supported; meshbench uses raw and dag-cbor")
        if raw[2:4] != _SHA2_256:
            raise InvalidCID(f"multihash 0x{raw[2:4].hex()} is not sha2-256 (0x1220)")
        if len(raw) != 36:
            raise InvalidCID(f"a sha2-256 CID is 36 bytes, not {len(raw)} (truncated or padded)")
        return cls._checked(code, raw)

    @property
    def codec(self) -> str:
        """``raw`` or ``dag-cbor``."""
        return _NAMES[self._code]

    @property
    def digest(self) -> bytes:
        """The 32-byte sha2-256 digest."""
        return self._bytes[4:]

    def __bytes__(self) -> bytes:
        return self._bytes

    def __str__(self) -> str:
        text = self._str
        if text is None:
            text = _TEXTS.get(self._bytes)
            if text is None:
                text = "b" + _base32(self._bytes)  # a CID is always 36 bytes
                if len(_TEXTS) >= TEXTS_KEPT:
                    _TEXTS.popitem(last=False)
                _TEXTS[self._bytes] = text
            object.__setattr__(self, "_str", text)
        return text

    def __repr__(self) -> str:
        return f"CID({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CID) and other._bytes == self._bytes

    def __hash__(self) -> int:
        return self._hash

    def __lt__(self, other: CID) -> bool:  # a total order, for deterministic sorting
        return self._bytes < other._bytes

    def __reduce__(self) -> tuple[type[CID], tuple[str, bytes]]:  # pickling (Dask)
        return (CID, (self.codec, self.digest))

    def __setattr__(self, name: str, value: object) -> None:
        if hasattr(self, "_hash"):
            raise AttributeError("CID is immutable")
        object.__setattr__(self, name, value)
