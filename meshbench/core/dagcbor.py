"""A strict DAG-CBOR codec (the IPLD spec's canonical subset of CBOR, RFC 8949).

Rules enforced when decoding (each a :class:`NonCanonicalEncoding`): map keys are strings,
sorted length-first then bytewise, without duplicates; integer and length heads are minimal;
floats are 64-bit and finite; no indefinite lengths; the only tag is 42 (a CID, as bytes
with a 0x00 prefix); the only simple values are false, true and null. Malformed input
(truncation, trailing bytes, bad UTF-8, absurd lengths, too deep) raises
:class:`EncodingError`. A length header is checked against the bytes actually left before
anything is allocated.

Two codecs, one rule. :func:`reference_dumps` and :func:`reference_loads` are ours, in
Python: the rule of record, tested against the published IPLD vectors and, differentially,
against the ``dag-cbor`` package on random and mutated inputs (``tests/core/test_dagcbor.py``).
:func:`dumps` and :func:`loads`, which every message in the mesh goes through, run ``cbrrr``
(a strict DAG-CBOR codec in C that enforces the same rules, 3-5x faster) and hand anything
it refuses to the reference codec, so that every error is ours, typed and worded as ours;
where they could differ (depth, which cbrrr does not bound; cycles, on which its encoder
would allocate without end) the reference decides. The two are tested to agree, value for
value and refusal for refusal, on the same random, mutated and hostile inputs.
"""

from __future__ import annotations

import math
import operator
import struct
from typing import Any, Final

import msgspec
from cbrrr import _cbrrr

from meshbench.core.cid import CID
from meshbench.core.errors import EncodingError, InvalidCID, NonCanonicalEncoding

__all__ = [
    "MAX_DEPTH",
    "dumps",
    "dumps_with_and_without",
    "loads",
    "reference_dumps",
    "reference_loads",
]

MAX_DEPTH: Final = 128
_F64: Final = struct.Struct(">d")
_U16: Final = struct.Struct(">H")
_U32: Final = struct.Struct(">I")
_U64: Final = struct.Struct(">Q")
_MINIMUM: Final = {24: 24, 25: 0x100, 26: 0x10000, 27: 0x100000000}


# --- the fast path -------------------------------------------------------------------------
_native_encode = _cbrrr.encode_dag_cbor
_native_decode = _cbrrr.decode_dag_cbor
_cid_from_binary = CID._from_binary

#: A cycle guard for the native encoder: msgspec's encoder walks lists and dicts in C under
#: the interpreter's recursion limit, so a value that contains itself raises RecursionError
#: in about a microsecond (cbrrr's encoder is not recursive and would grow its output until
#: memory ran out). What it writes is thrown away; what it cannot encode, cbrrr refuses too.
_cycle_guard = msgspec.msgpack.Encoder(enc_hook=lambda _: None).encode

#: Every array or map head is one of these bytes (major types 4 and 5): an item deeper than
#: MAX_DEPTH needs MAX_DEPTH + 1 of them, so fewer rule the depth walk out at C speed.
_CONTAINER_HEADS: Final = bytes(range(0x80, 0xC0))
_CONTAINERS: Final = (dict, list, tuple)


def _may_be_too_deep(encoded: bytes) -> bool:
    n = len(encoded)
    return n > MAX_DEPTH and n - len(encoded.translate(None, _CONTAINER_HEADS)) > MAX_DEPTH


def _too_deep(value: Any) -> bool:
    """Whether ``value`` holds an item deeper than MAX_DEPTH (the top level is depth 0), as
    the reference codec counts: level by level, without recursion."""
    level = [value]
    for _ in range(MAX_DEPTH):
        below: list[Any] = []
        for x in level:
            t = type(x)
            if t is dict:
                below += [v for v in x.values() if type(v) in _CONTAINERS]
            elif t is list or t is tuple:
                below += [v for v in x if type(v) in _CONTAINERS]
        if not below:
            return False
        level = below
    return any(len(x) for x in level)  # the containers at MAX_DEPTH: is any not empty?


def _native_dumps(value: Any) -> bytes | None:
    """The native encoding of ``value``, or None where the reference codec must decide."""
    try:
        _cycle_guard(value)
        out: bytes = _native_encode(value, CID, False)
    except Exception:  # cbrrr's own refusals, RecursionError from the guard
        return None
    if _may_be_too_deep(out) and _too_deep(value):
        return None
    return out


def dumps(value: Any) -> bytes:
    """Encode an IPLD value as canonical DAG-CBOR."""
    out = _native_dumps(value)
    return reference_dumps(value) if out is None else out


def dumps_with_and_without(value: dict[str, Any], key: str) -> tuple[bytes, bytes]:
    """The canonical encodings of the map ``value`` and of ``value`` without ``key`` (a
    signed object and its signing payload)."""
    if type(value) is not dict:
        raise EncodingError(f"expected a map, not {type(value).__name__}")
    full = dumps(value)  # checks every value once; the map less one key holds no new one
    rest = {k: v for k, v in value.items() if k != key}
    try:
        return full, _native_encode(rest, CID, False)
    except Exception:
        return full, reference_dumps(rest)


def loads(data: bytes) -> Any:
    """Decode exactly one strict DAG-CBOR item from ``data``."""
    data = bytes(data)
    try:
        value, end = _native_decode(data, _cid_from_binary, False)
    except Exception:  # cbrrr's refusals, and InvalidCID from a CID in tag 42
        return reference_loads(data)
    if end != len(data) or (_may_be_too_deep(data) and _too_deep(value)):
        return reference_loads(data)
    return value


# --- the reference codec: encoding ---------------------------------------------------------
def _head(major: int, n: int, out: bytearray) -> None:
    m = major << 5
    if n < 24:
        out.append(m | n)
    elif n < 0x100:
        out.append(m | 24)
        out.append(n)
    elif n < 0x10000:
        out.append(m | 25)
        out += _U16.pack(n)
    elif n < 0x100000000:
        out.append(m | 26)
        out += _U32.pack(n)
    else:
        out.append(m | 27)
        out += _U64.pack(n)


_FIRST: Final = operator.itemgetter(0)


#: Encoded map keys (head and UTF-8), by key: the protocol's field names recur in every
#: object. Bounded, so that arbitrary maps cannot grow it without limit.
_KEYS: dict[str, bytes] = {}
_MAX_KEYS: Final = 4096


def _encoded_key(k: Any) -> bytes:
    if type(k) is not str:
        raise EncodingError(f"map keys must be strings, not {type(k).__name__}")
    kb = _KEYS.get(k)
    if kb is None:
        raw = k.encode("utf-8")
        head = bytearray()
        _head(3, len(raw), head)
        kb = bytes(head) + raw
        if len(_KEYS) < _MAX_KEYS:
            _KEYS[k] = kb
    return kb


def _sorted_items(value: dict[Any, Any]) -> list[tuple[bytes, Any]]:
    """A map's entries as (encoded key, value), in canonical order: the encoded keys sort
    length-first then bytewise exactly as their UTF-8 does (same head for the same length)."""
    items = [(_encoded_key(k), v) for k, v in value.items()]
    # bytewise order of the encoded keys is the canonical order: a key's head grows with
    # its length (0x60 + n below 24 bytes, then 0x78 n, 0x79 n n, ...), so it sorts first
    items.sort(key=_FIRST)
    return items


def _enc(value: Any, out: bytearray, depth: int) -> None:
    # heads whose argument fits in their first byte are written inline (most of them)
    if depth > MAX_DEPTH:
        raise EncodingError(f"value nests deeper than {MAX_DEPTH} levels")
    t = type(value)
    if t is str:
        raw = value.encode("utf-8")
        n = len(raw)
        if n < 24:
            out.append(0x60 | n)
        else:
            _head(3, n, out)
        out += raw
    elif t is int:
        if 0 <= value < 24:
            out.append(value)
        elif 0 <= value < 2**64:
            _head(0, value, out)
        elif -(2**64) <= value < 0:
            _head(1, -1 - value, out)
        else:
            raise EncodingError(f"integer {value} does not fit in 64 bits")
    elif t is dict:
        items = _sorted_items(value)
        n = len(items)
        if n < 24:
            out.append(0xA0 | n)
        else:
            _head(5, n, out)
        for kb, v in items:
            out += kb
            _enc(v, out, depth + 1)
    elif t is list or t is tuple:
        n = len(value)
        if n < 24:
            out.append(0x80 | n)
        else:
            _head(4, n, out)
        for v in value:
            _enc(v, out, depth + 1)
    elif t is bytes or t is bytearray or t is memoryview:
        _head(2, len(value), out)
        out += value
    elif value is None:
        out.append(0xF6)
    elif value is True:
        out.append(0xF5)
    elif value is False:
        out.append(0xF4)
    elif t is float:
        if not math.isfinite(value):
            raise EncodingError("DAG-CBOR has no NaN or infinities")
        out.append(0xFB)
        out += _F64.pack(value)
    elif isinstance(value, CID):
        raw = b"\x00" + bytes(value)
        out += b"\xd8\x2a"
        _head(2, len(raw), out)
        out += raw
    else:
        raise EncodingError(f"{type(value).__name__} is not an IPLD data model kind")


def reference_dumps(value: Any) -> bytes:
    """Encode an IPLD value as canonical DAG-CBOR (the reference codec)."""
    out = bytearray()
    _enc(value, out, 0)
    return bytes(out)


# --- the reference codec: decoding ---------------------------------------------------------
class _Reader:
    __slots__ = ("data", "n", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0
        self.n = len(data)

    def take(self, k: int) -> bytes:
        end = self.pos + k
        if end > self.n:
            raise EncodingError(
                f"truncated: item at byte {self.pos} needs {k} bytes, only {self.n - self.pos} left"
            )
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def head(self) -> tuple[int, int, int]:
        """(major type, additional info, argument)."""
        if self.pos >= self.n:
            raise EncodingError(f"truncated: expected an item at byte {self.pos}")
        ib = self.data[self.pos]
        self.pos += 1
        major, info = ib >> 5, ib & 0x1F
        if info < 24:
            return major, info, info
        if major == 7 and info in (25, 26):
            raise NonCanonicalEncoding("floats must be 64-bit in DAG-CBOR")
        if info == 31:
            raise NonCanonicalEncoding("indefinite lengths are not allowed in DAG-CBOR")
        if info > 27:
            raise EncodingError(f"reserved additional info {info} at byte {self.pos - 1}")
        if major == 7:  # float64: the argument is the raw bits
            return major, info, 0
        size = 1 << (info - 24)
        arg = int.from_bytes(self.take(size), "big")
        if arg < _MINIMUM[info]:
            raise NonCanonicalEncoding(
                f"integer {arg} at byte {self.pos - size - 1} is not in its shortest form"
            )
        return major, info, arg


def _dec(r: _Reader, depth: int) -> Any:
    # The common cases (a head whose argument is in its first byte, a string or bytes that
    # fit) are read inline: this runs for every item of every object that enters a node.
    # Anything else goes through _Reader.head/take, which say what is wrong.
    if depth > MAX_DEPTH:
        raise EncodingError(f"input nests deeper than {MAX_DEPTH} levels")
    data, pos = r.data, r.pos
    if pos < r.n and (data[pos] & 0x1F) < 24:
        ib = data[pos]
        r.pos = pos + 1
        major, info, arg = ib >> 5, ib & 0x1F, ib & 0x1F
    else:
        major, info, arg = r.head()
    if major == 0:
        return arg
    if major == 1:
        return -1 - arg
    if major == 2 or major == 3:
        pos = r.pos
        end = pos + arg
        if end > r.n:
            r.take(arg)  # raises: truncated
        r.pos = end
        if major == 2:
            return data[pos:end]
        try:
            return data[pos:end].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise EncodingError(f"string is not valid UTF-8: {exc.reason}") from None
    if major == 4:
        if arg > r.n - r.pos:
            raise EncodingError(f"truncated: array of {arg} items in {r.n - r.pos} bytes")
        return [_dec(r, depth + 1) for _ in range(arg)]
    if major == 5:
        if arg * 2 > r.n - r.pos:
            raise EncodingError(f"truncated: map of {arg} entries in {r.n - r.pos} bytes")
        out: dict[str, Any] = {}
        prev = b""
        n = r.n
        for i in range(arg):
            pos = r.pos
            if pos < n and 0x60 <= data[pos] < 0x78:  # a text string shorter than 24 bytes
                klen = data[pos] - 0x60
                pos += 1
            else:
                kmajor, _, klen = r.head()
                if kmajor != 3:
                    raise NonCanonicalEncoding("map keys must be strings in DAG-CBOR")
                pos = r.pos
            end = pos + klen
            if end > n:
                r.pos = pos
                r.take(klen)  # raises: truncated
            kb = data[pos:end]
            r.pos = end
            if i:
                lp = len(prev)
                if klen < lp or (klen == lp and kb <= prev):
                    if kb == prev:
                        raise NonCanonicalEncoding(f"duplicate map key {kb!r}")
                    raise NonCanonicalEncoding(
                        f"map keys not in canonical order ({prev!r} before {kb!r})"
                    )
            prev = kb
            try:
                key = kb.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise EncodingError(f"map key is not valid UTF-8: {exc.reason}") from None
            out[key] = _dec(r, depth + 1)
        return out
    if major == 6:
        if arg != 42:
            raise NonCanonicalEncoding(f"tag {arg} is not allowed; DAG-CBOR has only tag 42")
        bmajor, _, blen = r.head()
        if bmajor != 2:
            raise EncodingError("tag 42 must wrap a byte string")
        raw = r.take(blen)
        if not raw or raw[0] != 0:
            raise EncodingError("a CID in DAG-CBOR starts with the 0x00 multibase prefix")
        try:
            return CID.decode(raw[1:])
        except InvalidCID as exc:
            raise EncodingError(f"tag 42 holds an invalid CID: {exc}") from None
    # major 7
    if info == 20:
        return False
    if info == 21:
        return True
    if info == 22:
        return None
    if info == 27:
        value = _F64.unpack(r.take(8))[0]
        if not math.isfinite(value):
            raise NonCanonicalEncoding("NaN and infinities are not allowed in DAG-CBOR")
        return value
    raise NonCanonicalEncoding(f"simple value {info} is not allowed (only false, true, null)")


def reference_loads(data: bytes) -> Any:
    """Decode exactly one strict DAG-CBOR item from ``data`` (the reference codec)."""
    r = _Reader(bytes(data))
    value = _dec(r, 0)
    if r.pos != r.n:
        raise EncodingError(f"{r.n - r.pos} trailing bytes after the item")
    return value
