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

import functools
import hashlib
import struct
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
    out: list[bytes] = []
    try:
        _fast_encode(value, out)
        return b"".join(out)
    except _NotFast:
        pass  # anything unusual (or invalid) is left to the library, which explains errors
    try:
        return dag_cbor.encode(value)
    except Exception as exc:  # the library raises several unrelated types
        raise EncodingError(f"cannot encode as DAG-CBOR: {_first_line(exc)}") from exc


class _NotFast(Exception):
    """The value needs the library encoder (unusual kinds, or errors to explain)."""


_pack_head = struct.Struct(">B").pack
_FLOAT = struct.Struct(">Bd").pack


def _head(major: int, arg: int) -> bytes:
    if arg < 24:
        return bytes(((major << 5) | arg,))
    if arg <= 0xFF:
        return bytes(((major << 5) | 24, arg))
    if arg <= 0xFFFF:
        return bytes(((major << 5) | 25,)) + arg.to_bytes(2, "big")
    if arg <= 0xFFFFFFFF:
        return bytes(((major << 5) | 26,)) + arg.to_bytes(4, "big")
    return bytes(((major << 5) | 27,)) + arg.to_bytes(8, "big")


def _fast_encode(v: Any, out: list[bytes]) -> None:
    """Canonical DAG-CBOR, byte for byte what ``dag_cbor.encode`` writes, for plain values.

    The library validates every value with ``typing_validation`` and builds a path object
    per item, which made encoding the hot spot of the protocol engine; this writer covers
    the kinds our models produce and defers everything else (tested equal in
    ``tests/core/test_encoding_fast.py``).
    """
    t = type(v)
    if t is str:
        b = v.encode("utf-8")  # lone surrogates raise: the library reports them
        out.append(_head(3, len(b)))
        out.append(b)
    elif t is dict:
        items = []
        for k, x in v.items():
            if type(k) is not str:
                raise _NotFast
            items.append((k.encode("utf-8"), x))
        items.sort(key=lambda kv: (len(kv[0]), kv[0]))
        out.append(_head(5, len(items)))
        for kb, x in items:
            out.append(_head(3, len(kb)))
            out.append(kb)
            _fast_encode(x, out)
    elif t is int:
        if 0 <= v < 2**64:
            out.append(_head(0, v))
        elif -(2**64) <= v < 0:
            out.append(_head(1, -1 - v))
        else:
            raise _NotFast
    elif t is bytes:
        out.append(_head(2, len(v)))
        out.append(v)
    elif t is bool:
        out.append(b"\xf5" if v else b"\xf4")
    elif v is None:
        out.append(b"\xf6")
    elif t is list:
        out.append(_head(4, len(v)))
        for x in v:
            _fast_encode(x, out)
    elif t is CID:
        raw = b"\x00" + _cid_bytes(v)
        out.append(b"\xd8\x2a")
        out.append(_head(2, len(raw)))
        out.append(raw)
    elif t is float:
        if v != v or v in (float("inf"), float("-inf")):
            raise _NotFast
        out.append(_FLOAT(0xFB, v))
    else:
        raise _NotFast


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
    fast = _FAST_CID.get(codec)
    if fast is not None and len(digest) == 32:
        return fast(digest)
    return CID("base32", 1, codec, ("sha2-256", digest))


def _fast_cid_maker(codec: str) -> Any:
    """A CID constructor for one codec that skips re-validating constant parts.

    ``multiformats`` validates base, codec and hash function names on every ``CID(...)``
    (most of the cost of content addressing); here they are validated once and the
    library's own instance factory builds the (interned) CID. Checked at import against the
    public constructor; on any difference the public constructor is used.
    """
    sample = CID("base32", 1, codec, ("sha2-256", bytes(32)))
    factory = getattr(CID, "_new_instance", None)
    if factory is None:
        return None
    base, codec_obj, hashfun = sample.base, sample.codec, sample.hashfun

    def make(digest: bytes) -> CID:
        return factory(CID, base, 1, codec_obj, hashfun, b"\x12\x20" + digest)

    try:
        probe = hashlib.sha256(codec.encode()).digest()
        if make(probe) != CID("base32", 1, codec, ("sha2-256", probe)):
            return None
        if str(make(probe)) != str(CID("base32", 1, codec, ("sha2-256", probe))):
            return None
    except Exception:
        return None
    return make


_FAST_CID: dict[str, Any] = {}


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
    version, hash_name, digest_len, codec_name = _cid_facts(cid)
    if version != 1:
        raise InvalidCID(f"{cid} is a CIDv{version}; meshbench uses CIDv1 only")
    if hash_name != "sha2-256" or digest_len != 32:
        raise InvalidCID(f"{cid} uses {hash_name}; meshbench uses sha2-256 only")
    if codec is not None:
        allowed = (codec,) if isinstance(codec, str) else tuple(codec)
        if codec_name not in allowed:
            raise InvalidCID(f"{cid} has codec {codec_name!r}; expected {' or '.join(allowed)}")
    return cid


@functools.lru_cache(maxsize=1 << 16)
def _cid_facts(cid: CID) -> tuple[int, str, int, str]:
    """(version, hash name, digest length, codec name); cached: the library recomputes them."""
    digest = cid.digest  # the multihash: code, length, bytes (sha2-256 is 0x12 0x20 ...)
    if digest[:2] == b"\x12\x20":
        return cid.version, "sha2-256", len(digest) - 2, cid.codec.name
    return cid.version, cid.hashfun.name, len(cid.raw_digest), cid.codec.name


@functools.lru_cache(maxsize=1 << 16)
def _cid_bytes(cid: CID) -> bytes:
    return bytes(cid)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return " ".join(line.strip() for line in text[:4])[:300] or type(exc).__name__


for _codec in (RAW, DAG_CBOR):
    _maker = _fast_cid_maker(_codec)
    if _maker is not None:
        _FAST_CID[_codec] = _maker
