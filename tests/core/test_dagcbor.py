"""Our strict DAG-CBOR codec and CID type, checked differentially against the reference
Python implementations (``dag-cbor`` and ``multiformats``) on random and mutated inputs."""

from __future__ import annotations

from collections.abc import Callable

import dag_cbor
import multiformats
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshbench.core import dagcbor, encoding
from meshbench.core.cid import CID
from meshbench.core.errors import EncodingError, InvalidCID

digests = st.binary(min_size=32, max_size=32)
cids = st.tuples(st.sampled_from(["raw", "dag-cbor"]), digests).map(lambda t: CID(*t))


def _to_reference(value: object) -> object:
    if isinstance(value, CID):
        return multiformats.CID.decode(bytes(value))
    if isinstance(value, list):
        return [_to_reference(v) for v in value]
    if isinstance(value, dict):
        return {k: _to_reference(v) for k, v in value.items()}
    return value


def _from_reference(value: object) -> object:
    if isinstance(value, multiformats.CID):
        return CID.decode(bytes(value))
    if isinstance(value, list):
        return [_from_reference(v) for v in value]
    if isinstance(value, dict):
        return {k: _from_reference(v) for k, v in value.items()}
    return value


ipld = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**64), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
    | st.binary(max_size=12)
    | cids,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=16,
)


@settings(max_examples=300, deadline=None)
@given(ipld)
def test_encoding_matches_reference(value: object) -> None:
    ours = dagcbor.dumps(value)
    assert ours == dag_cbor.encode(_to_reference(value))
    assert dagcbor.loads(ours) == value


@settings(max_examples=500, deadline=None)
@given(ipld, st.data())
def test_decoding_agrees_with_reference_on_mutations(value: object, data: st.DataObject) -> None:
    raw = bytearray(dagcbor.dumps(value))
    for _ in range(data.draw(st.integers(1, 3))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    try:
        ours = dagcbor.loads(bytes(raw))
    except EncodingError:
        ours = None
    try:
        ref = _from_reference(dag_cbor.decode(bytes(raw)))
    except Exception:
        ref = None
    if ours is not None:
        # everything we accept, the reference accepts identically (we may be stricter about
        # CIDs: only CIDv1 sha2-256 raw/dag-cbor)
        assert ref == ours


# Past the one-byte heads: strings, keys and collections of 24 items or more take the
# decoder's and encoder's general path (the common cases are read and written inline).
long_ipld = st.recursive(
    st.integers(-(2**64), 2**64 - 1) | st.text(min_size=20, max_size=300) | st.binary(max_size=300),
    lambda children: (
        st.lists(children, min_size=20, max_size=30)
        | st.dictionaries(st.text(min_size=0, max_size=40), children, min_size=18, max_size=30)
    ),
    max_leaves=40,
)


@settings(max_examples=60, deadline=None)
@given(long_ipld, st.data())
def test_long_items_agree_with_reference(value: object, data: st.DataObject) -> None:
    ours = dagcbor.dumps(value)
    assert ours == dag_cbor.encode(_to_reference(value))
    assert dagcbor.loads(ours) == value
    cut = data.draw(st.integers(0, len(ours) - 1))  # every truncation is a clean error
    with pytest.raises(EncodingError):
        dagcbor.loads(ours[:cut])
    raw = bytearray(ours)
    raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    try:
        mine = dagcbor.loads(bytes(raw))
    except EncodingError:
        return
    assert _from_reference(dag_cbor.decode(bytes(raw))) == mine


@settings(max_examples=200)
@given(cids)
def test_cid_matches_multiformats(cid: CID) -> None:
    ref = multiformats.CID.decode(bytes(cid))
    assert str(cid) == ref.encode("base32")
    assert CID.decode(ref.encode("base32")) == cid and CID.decode(bytes(ref)) == cid
    assert ref.codec.name == cid.codec and bytes(ref.raw_digest) == cid.digest


@pytest.mark.parametrize(
    "text",
    [
        "",
        "bafkrei",
        "BAFKREIHDWDCEFGH4DQKJV67UZCMW7OJEE6XEDZDETOJUZJEVTENXQUVYKU",  # upper-case
        "zb2rhe5P4gXftAwvA4eXQ5HJwsER2owDyS9sKaQRRVQPn93bA",  # base58 multibase
        "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG",  # CIDv0
        "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvykv",  # padding bits set
        "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi",  # dag-pb: unsupported
        "bafkr4ihkr4ld3m4gqkjf4reryxsy2s5tkbxprqkow6fin2iiyvreuzzab4",  # blake3
    ],
)
def test_refused_cids(text: str) -> None:
    with pytest.raises(InvalidCID):
        CID.decode(text)


def test_cid_value_semantics() -> None:
    a = encoding.blob_cid(b"a")
    b = CID.decode(str(a))
    assert a == b and hash(a) == hash(b) and a is not b
    assert {a: 1}[b] == 1
    with pytest.raises(AttributeError):
        a._bytes = b""  # type: ignore[misc]
    import pickle

    assert pickle.loads(pickle.dumps(a)) == a


def test_depth_limit() -> None:
    deep: list[object] = []
    cur = deep
    for _ in range(dagcbor.MAX_DEPTH + 5):
        nxt: list[object] = []
        cur.append(nxt)
        cur = nxt
    with pytest.raises(EncodingError, match="deeper"):
        dagcbor.dumps(deep)
    with pytest.raises(EncodingError, match="deeper"):
        dagcbor.loads(b"\x81" * 200 + b"\x80")


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(max_size=12), ipld, max_size=8), st.data())
def test_a_map_with_and_without_one_key(value: dict[str, object], data: st.DataObject) -> None:
    """The signed bytes and the signing payload equal two separate encodings."""
    key = data.draw(st.sampled_from([*value, "signature"]))
    full, rest = dagcbor.dumps_with_and_without(value, key)
    assert full == dagcbor.dumps(value) == dagcbor.reference_dumps(value)
    assert rest == dagcbor.dumps({k: v for k, v in value.items() if k != key})


def test_with_and_without_refuses_what_dumps_refuses() -> None:
    with pytest.raises(EncodingError, match="map keys must be strings"):
        dagcbor.dumps_with_and_without({1: "x"}, "signature")  # type: ignore[dict-item]
    with pytest.raises(EncodingError, match="expected a map"):
        dagcbor.dumps_with_and_without([1, 2], "signature")  # type: ignore[arg-type]
    # what only the reference codec encodes (a tuple), it encodes in both
    full, rest = dagcbor.dumps_with_and_without({"a": (1, 2), "b": 3}, "b")
    assert full == dagcbor.dumps({"a": [1, 2], "b": 3}) and rest == dagcbor.dumps({"a": [1, 2]})


# --- the native fast path and the reference codec agree -----------------------------------
def _decoded(fn: Callable[[bytes], object], raw: bytes) -> object:
    """What a decoder makes of ``raw``: its value, or its error's class and message."""
    try:
        return fn(raw)
    except EncodingError as exc:
        return (type(exc), str(exc))


def _encoded(fn: Callable[[object], bytes], value: object) -> object:
    try:
        return fn(value)
    except EncodingError as exc:
        return (type(exc), str(exc))


def _assert_decoders_agree(raw: bytes) -> None:
    assert _decoded(dagcbor.loads, raw) == _decoded(dagcbor.reference_loads, raw)


def _nested(depth: int, kind: str) -> bytes:
    """An empty array at ``depth``, inside arrays or single-entry maps."""
    wrap = b"\x81" if kind == "list" else b"\xa1\x61k"
    return wrap * depth + b"\x80"


@settings(max_examples=500, deadline=None)
@given(ipld | long_ipld, st.data())
def test_native_and_reference_decoders_agree_on_mutations(
    value: object, data: st.DataObject
) -> None:
    raw = bytearray(dagcbor.reference_dumps(value))
    _assert_decoders_agree(bytes(raw))
    for _ in range(data.draw(st.integers(1, 3))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    _assert_decoders_agree(bytes(raw))
    cut = data.draw(st.integers(0, len(raw)))
    _assert_decoders_agree(bytes(raw[:cut]))
    _assert_decoders_agree(bytes(raw) + data.draw(st.binary(min_size=1, max_size=3)))


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=64))
def test_native_and_reference_decoders_agree_on_noise(raw: bytes) -> None:
    _assert_decoders_agree(raw)


@pytest.mark.parametrize(
    "raw",
    [
        b"\xd8\x2a\x45\x00\x01\x55\x12\x20",  # tag 42: a truncated CID
        b"\xd8\x2a\x58\x25\x01" + bytes(36),  # tag 42 without the 0x00 prefix
        b"\xd8\x2a\x58\x25\x00\x01\x70\x12\x20" + bytes(32),  # dag-pb: not ours
        b"\xd8\x2a\x40",  # tag 42 around nothing
        b"\xd8\x2b\x40",  # tag 43
        b"\xa2\x61b\x01\x61a\x02",  # keys out of order
        b"\xa2\x61a\x01\x61a\x02",  # duplicate key
        b"\xa1\x01\x02",  # integer key
        b"\x18\x05",  # non-minimal integer
        b"\xf9\x3c\x00",  # half float
        b"\xfb\x7f\xf8\x00\x00\x00\x00\x00\x00",  # NaN
        b"\xf7",  # undefined
        b"\x9f\xff",  # indefinite array
        b"\x62\xc3\x28",  # bad UTF-8
        b"\x5b\xff\xff\xff\xff\xff\xff\xff\xff",  # a byte string claiming 2**64 bytes
        b"\x01\x02",  # trailing bytes
        b"",
    ],
)
def test_native_and_reference_decoders_agree_on_hostile_inputs(raw: bytes) -> None:
    assert isinstance(_decoded(dagcbor.loads, raw), tuple)  # refused, by either codec
    _assert_decoders_agree(raw)


@pytest.mark.parametrize("kind", ["list", "map"])
@pytest.mark.parametrize("depth", [dagcbor.MAX_DEPTH - 1, dagcbor.MAX_DEPTH, dagcbor.MAX_DEPTH + 1])
def test_depth_limit_is_the_same_on_both_paths(depth: int, kind: str) -> None:
    raw = _nested(depth, kind)
    _assert_decoders_agree(raw)
    accepted = depth <= dagcbor.MAX_DEPTH
    assert isinstance(_decoded(dagcbor.loads, raw), tuple) is not accepted
    if accepted:
        value = dagcbor.reference_loads(raw)
        assert dagcbor.dumps(value) == raw
        wrapped = [value] if kind == "list" else {"k": value}
        if depth < dagcbor.MAX_DEPTH:
            assert dagcbor.dumps(wrapped) == dagcbor.reference_dumps(wrapped)
        else:  # one level more is refused, encoding as decoding
            with pytest.raises(EncodingError, match="deeper"):
                dagcbor.dumps(wrapped)


def test_many_containers_are_not_depth() -> None:
    """The depth walk runs where the bytes hold enough container heads; it counts levels."""
    wide = [[[]] for _ in range(300)]
    assert dagcbor.loads(dagcbor.dumps(wide)) == wide
    noisy = {"b": bytes(range(0x80, 0xC0)) * 10, "l": [[1]] * 3}
    assert dagcbor.loads(dagcbor.dumps(noisy)) == noisy


def test_cycles_are_refused_not_followed() -> None:
    cyclic: list[object] = []
    cyclic.append(cyclic)
    looped: dict[str, object] = {}
    looped["self"] = [1, looped]
    for value in (cyclic, looped, {"a": (1, cyclic)}):
        with pytest.raises(EncodingError, match="deeper"):
            dagcbor.dumps(value)


class _Str(str):
    pass


@pytest.mark.parametrize(
    "value",
    [
        (1, [2, (3,)]),
        bytearray(b"ab"),
        memoryview(b"ab"),
        {"a": bytearray(b"x")},
        -(2**64),
        2**64,
        -(2**64) - 1,
        float("nan"),
        float("-inf"),
        -0.0,
        {1: 2},
        {"a": 1, _Str("b"): 2},
        _Str("x"),
        True,
        {1.5},
        object(),
        [CID("raw", bytes(32))],
    ],
)
def test_native_and_reference_encoders_agree(value: object) -> None:
    assert _encoded(dagcbor.dumps, value) == _encoded(dagcbor.reference_dumps, value)


@settings(max_examples=300, deadline=None)
@given(ipld | long_ipld)
def test_native_and_reference_encoders_agree_on_values(value: object) -> None:
    assert dagcbor.dumps(value) == dagcbor.reference_dumps(value)
    assert dagcbor.loads(dagcbor.reference_dumps(value)) == value


@settings(max_examples=500)
@given(st.sampled_from(["raw", "dag-cbor"]), digests | st.sampled_from([bytes(32), b"\xff" * 32]))
def test_cid_text_is_base32_of_its_bytes(codec: str, digest: bytes) -> None:
    import base64

    from meshbench.core import cid as cid_module

    raw = bytes(CID(codec, digest))
    spelled = base64.b32encode(raw).decode().lower().rstrip("=")
    assert cid_module._base32(raw) == spelled
    cid_module._TEXTS.clear()  # spelled afresh, not read from the cache
    assert str(CID(codec, digest)) == "b" + spelled
    assert CID.decode("b" + spelled) == CID(codec, digest)
