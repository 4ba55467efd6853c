"""Strict DAG-CBOR and CIDv1: published vectors, canonical-form rejection, bounded fuzzing."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshbench.core import encoding
from meshbench.core.errors import CIDMismatch, EncodingError, InvalidCID, NonCanonicalEncoding

# Published vectors: multiformats raw CIDs and IPLD DAG-CBOR fixtures.
RAW_VECTORS = {
    b"": "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku",
    b"hello world": "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e",
}
DAG_CBOR_VECTORS = [
    ({}, "a0", "bafyreigbtj4x7ip5legnfznufuopl4sg4knzc2cof6duas4b3q2fy6swua"),
    ([], "80", "bafyreidwx2fvfdiaox32v2mnn6sxu3j4qoxeqcuenhtgrv5qv6litfnmoe"),
    (None, "f6", "bafyreifqwkmiw256ojf2zws6tzjeonw6bpd5vza4i22ccpcq4hjv2ts7cm"),
    ([None], "81f6", "bafyreigtpkiih7wr7wb7ts6j5aunnotxiff3yqkx33rs4k4xhskprx5tui"),
    (1.0, "fb3ff0000000000000", "bafyreihtx752fmf3zafbys5dtr4jxohb53yi3qtzfzf6wd5274jwtn5agu"),
]


@pytest.mark.parametrize(("data", "expected"), RAW_VECTORS.items())
def test_raw_cid_vectors(data: bytes, expected: str) -> None:
    assert str(encoding.blob_cid(data)) == expected
    assert encoding.parse_cid(expected, codec="raw").codec == "raw"


@pytest.mark.parametrize(("value", "hexbytes", "cid"), DAG_CBOR_VECTORS)
def test_dag_cbor_vectors(value: object, hexbytes: str, cid: str) -> None:
    data = encoding.encode(value)
    assert data.hex() == hexbytes
    assert str(encoding.object_cid(data)) == cid
    assert encoding.decode(data) == value


def test_map_keys_sorted_length_first() -> None:
    assert encoding.encode({"bb": 1, "a": 2, "c": 3}).hex() == "a3616102616303626262" + "01"


@pytest.mark.parametrize(
    ("name", "hexbytes"),
    [
        ("unsorted keys", "a2616202616101"),
        ("duplicate keys", "a2616101616102"),
        ("indefinite map", "bf616101ff"),
        ("indefinite bytes", "5f4101ff"),
        ("float32", "fa3fc00000"),
        ("float16", "f93e00"),
        ("NaN", "fb7ff8000000000000"),
        ("infinity", "fb7ff0000000000000"),
        ("non-minimal int", "1801"),
        ("tag other than 42", "c11a514b67b0"),
        ("undefined", "f7"),
    ],
)
def test_non_canonical_is_rejected(name: str, hexbytes: str) -> None:
    with pytest.raises(NonCanonicalEncoding):
        encoding.decode(bytes.fromhex(hexbytes))


@pytest.mark.parametrize(
    ("name", "hexbytes"),
    [
        ("trailing bytes", "0102"),
        ("truncated", "a16161"),
        ("4 GiB byte string header", "5affffffff00"),
        ("2^64 byte string header", "5bffffffffffffffff00"),
        ("4 G element array header", "9affffffff00"),
        ("4 G entry map header", "baffffffff00"),
        ("empty", ""),
        ("bad CID tag payload", "d82a4100"),
    ],
)
def test_malformed_is_rejected_without_allocating(name: str, hexbytes: str) -> None:
    with pytest.raises(EncodingError):
        encoding.decode(bytes.fromhex(hexbytes))


def test_object_size_limit() -> None:
    big = encoding.encode(b"x" * 1000)
    with pytest.raises(EncodingError, match="limit"):
        encoding.decode(big, max_bytes=100)


def test_cid_roundtrip_in_objects() -> None:
    cid = encoding.blob_cid(b"abc")
    assert encoding.decode(encoding.encode({"c": cid}))["c"] == cid


@pytest.mark.parametrize(
    "text",
    [
        "",
        "bafkrei",  # truncated
        "bafyreiabc",
        "zzz",
        "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG",  # CIDv0
        "not a cid at all",
    ],
)
def test_bad_cids(text: str) -> None:
    with pytest.raises(InvalidCID):
        encoding.parse_cid(text)


def test_wrong_codec() -> None:
    with pytest.raises(InvalidCID, match="codec"):
        encoding.parse_cid(str(encoding.blob_cid(b"x")), codec="dag-cbor")


def test_check_blob() -> None:
    encoding.check_blob(b"hello world", encoding.blob_cid(b"hello world"))
    with pytest.raises(CIDMismatch):
        encoding.check_blob(b"hello worle", encoding.blob_cid(b"hello world"))


ipld = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.binary(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@given(ipld)
def test_roundtrip_any_ipld(value: object) -> None:
    data = encoding.encode(value)
    assert encoding.decode(data) == value
    assert encoding.encode(encoding.decode(data)) == data


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=64))
def test_fuzz_random_bytes_only_typed_errors(data: bytes) -> None:
    try:
        value = encoding.decode(data)
    except EncodingError:
        return
    assert encoding.encode(value) == data  # anything accepted is canonical


@settings(max_examples=400, deadline=None)
@given(ipld, st.data())
def test_fuzz_mutated_encodings_only_typed_errors(value: object, data: st.DataObject) -> None:
    raw = bytearray(encoding.encode(value))
    i = data.draw(st.integers(0, len(raw) - 1))
    raw[i] = data.draw(st.integers(0, 255))
    try:
        decoded = encoding.decode(bytes(raw))
    except EncodingError:
        return
    assert encoding.encode(decoded) == bytes(raw)
