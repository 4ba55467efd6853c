"""Canonical encoding and content addressing: strict DAG-CBOR and CIDv1.

The one place where bytes become objects and objects become CIDs:

* protocol objects: DAG-CBOR (codec ``dag-cbor``, 0x71), CIDv1, sha2-256, base32 (``bafyrei...``);
* blobs (modules, inputs, outputs): codec ``raw`` (0x55), CIDv1, sha2-256 (``bafkrei...``).

Encoding and decoding use :mod:`meshbench.core.dagcbor`, which is strict: map keys sorted
length-first then bytewise, no duplicates, minimal integer heads, 64-bit floats only, no
NaN or infinities, no indefinite lengths, only tag 42 (CIDs), one top-level item. Failures
are :class:`EncodingError`, or :class:`NonCanonicalEncoding` for valid CBOR that is not
canonical DAG-CBOR.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any, Final

from meshbench.core import dagcbor
from meshbench.core.cid import CID
from meshbench.core.errors import CIDMismatch, EncodingError, InvalidCID

__all__ = [
    "CID",
    "DAG_CBOR",
    "MAX_OBJECT_BYTES",
    "RAW",
    "blob_cid",
    "check_blob",
    "decode",
    "encode",
    "encode_with_and_without",
    "object_cid",
    "parse_cid",
    "sha256_cid",
]

RAW: Final = "raw"
DAG_CBOR: Final = "dag-cbor"
#: Protocol objects larger than this are refused before decoding (blobs have no such limit).
MAX_OBJECT_BYTES: Final = 4 * 1024 * 1024


def encode(value: Any) -> bytes:
    """Encode an IPLD value (dict, list, str, bytes, int, float, bool, None, CID) as DAG-CBOR."""
    return dagcbor.dumps(value)


def encode_with_and_without(value: dict[str, Any], key: str) -> tuple[bytes, bytes]:
    """The DAG-CBOR of the map ``value`` and of ``value`` less ``key`` (a signed object's
    bytes and its signing payload)."""
    return dagcbor.dumps_with_and_without(value, key)


def decode(data: bytes | bytearray | memoryview, *, max_bytes: int = MAX_OBJECT_BYTES) -> Any:
    """Decode one strict DAG-CBOR item; anything else raises :class:`EncodingError`.

    ``max_bytes`` bounds the input before any parsing, and the decoder never allocates more
    than the input holds (a header claiming gigabytes fails as a truncated item).
    """
    raw = bytes(data)
    if len(raw) > max_bytes:
        raise EncodingError(
            f"object of {len(raw)} bytes is over the {max_bytes}-byte limit for protocol objects"
        )
    if not raw:
        raise EncodingError("empty input: expected one DAG-CBOR item")
    return dagcbor.loads(raw)


def sha256_cid(digest: bytes, codec: str) -> CID:
    """The CIDv1 (base32) of a sha2-256 ``digest`` under ``codec``."""
    return CID(codec, digest)


def blob_cid(data: bytes | bytearray | memoryview) -> CID:
    """The ``raw`` CID of a blob held in memory (see the blob store for streams)."""
    return sha256_cid(hashlib.sha256(data).digest(), RAW)


def object_cid(encoded: bytes) -> CID:
    """The ``dag-cbor`` CID of an already encoded object."""
    return sha256_cid(hashlib.sha256(encoded).digest(), DAG_CBOR)


def check_blob(data: bytes, expected: CID) -> None:
    """Raise :class:`CIDMismatch` unless ``data`` hashes to the ``raw`` CID ``expected``."""
    actual = blob_cid(data)
    if actual != expected:
        raise CIDMismatch(f"content hashes to {actual}, not to the expected {expected}")


def parse_cid(value: str | bytes | CID, *, codec: str | Iterable[str] | None = None) -> CID:
    """Parse a CIDv1 (sha2-256) from text or binary form, checking its codec."""
    cid = value if isinstance(value, CID) else CID.decode(value)
    if codec is not None:
        allowed = (codec,) if isinstance(codec, str) else tuple(codec)
        if cid.codec not in allowed:
            raise InvalidCID(f"{cid} has codec {cid.codec!r}; expected {' or '.join(allowed)}")
    return cid
