"""Canonical encoding and content addressing: strict DAG-CBOR and CIDv1.

The one place where bytes become objects and objects become CIDs:

* protocol objects: DAG-CBOR (codec ``dag-cbor``, 0x71), CIDv1, sha2-256, base32 (``bafyrei...``);
* blobs (modules, inputs, outputs): codec ``raw`` (0x55), CIDv1, sha2-256 (``bafkrei...``).

Encoding and decoding use the ``dag-cbor`` library, which is strict: map keys sorted
length-first then bytewise, no duplicates, minimal integer heads, 64-bit floats only, no
NaN or infinities, no indefinite lengths, only tag 42 (CIDs), one top-level item. Every
failure of the library is turned into :class:`EncodingError` (or
:class:`NonCanonicalEncoding` for valid CBOR that is not canonical) here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any, Final

import dag_cbor
from multiformats import CID

from meshbench.core.errors import CIDMismatch, EncodingError, InvalidCID, NonCanonicalEncoding

__all__ = [
    "CID",
    "DAG_CBOR",
    "MAX_OBJECT_BYTES",
    "RAW",
    "blob_cid",
    "check_blob",
    "decode",
    "encode",
    "object_cid",
    "parse_cid",
    "sha256_cid",
]

RAW: Final = "raw"
DAG_CBOR: Final = "dag-cbor"
#: Protocol objects larger than this are refused before decoding (blobs have no such limit).
MAX_OBJECT_BYTES: Final = 4 * 1024 * 1024

# Messages of the dag-cbor library that mean "valid CBOR, but not canonical DAG-CBOR".
_NON_CANONICAL_HINTS: Final = (
    "not in canonical order",
    "keys not in",
    "duplicate key",
    "would have been enough",
    "additional info 25",
    "additional info 26",
    "additional info 31",
    "only tag 42",
    "not an allowed float",
    "allowed simple values",
)


def encode(value: Any) -> bytes:
    """Encode an IPLD value (dict, list, str, bytes, int, float, bool, None, CID) as DAG-CBOR."""
    try:
        return dag_cbor.encode(value)
    except Exception as exc:  # the library raises several unrelated types
        raise EncodingError(f"cannot encode as DAG-CBOR: {_first_line(exc)}") from exc


def decode(data: bytes | bytearray | memoryview, *, max_bytes: int = MAX_OBJECT_BYTES) -> Any:
    """Decode one strict DAG-CBOR item; anything else raises :class:`EncodingError`.

    ``max_bytes`` bounds the input before any parsing, and the library never allocates more
    than the input holds (a header claiming gigabytes fails as a truncated item).
    """
    raw = bytes(data)
    if len(raw) > max_bytes:
        raise EncodingError(
            f"object of {len(raw)} bytes is over the {max_bytes}-byte limit for protocol objects"
        )
    if not raw:
        raise EncodingError("empty input: expected one DAG-CBOR item")
    try:
        return dag_cbor.decode(raw)
    except Exception as exc:
        message = _first_line(exc)
        lowered = str(exc).lower()
        if any(hint in lowered for hint in _NON_CANONICAL_HINTS):
            raise NonCanonicalEncoding(f"not canonical DAG-CBOR: {message}") from exc
        raise EncodingError(f"malformed DAG-CBOR: {message}") from exc


def sha256_cid(digest: bytes, codec: str) -> CID:
    """The CIDv1 (base32) of a sha2-256 ``digest`` under ``codec``."""
    return CID("base32", 1, codec, ("sha2-256", digest))


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
    """Parse a CIDv1 from text (multibase) or binary form, checking version, hash and codec."""
    if isinstance(value, CID):
        cid = value
    else:
        try:
            cid = CID.decode(value)
        except Exception as exc:
            shown = value if isinstance(value, str) else value.hex()
            raise InvalidCID(f"not a CID: {shown[:80]!r} ({_first_line(exc)})") from exc
    if cid.version != 1:
        raise InvalidCID(f"{cid} is a CIDv{cid.version}; meshbench uses CIDv1 only")
    if cid.hashfun.name != "sha2-256" or len(cid.raw_digest) != 32:
        raise InvalidCID(f"{cid} uses {cid.hashfun.name}; meshbench uses sha2-256 only")
    if codec is not None:
        allowed = (codec,) if isinstance(codec, str) else tuple(codec)
        if cid.codec.name not in allowed:
            raise InvalidCID(f"{cid} has codec {cid.codec.name!r}; expected {' or '.join(allowed)}")
    return cid


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return " ".join(line.strip() for line in text[:4])[:300] or type(exc).__name__
