"""The array bundle format: canonical, checked, never unpickled."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from meshbench.core import encoding
from meshbench.core.errors import ArrayFormatError, MeshError
from meshbench_cuda.arrays import DTYPES, decode_arrays, encode_arrays

dtypes = st.sampled_from(sorted(DTYPES)).map(lambda n: DTYPES[n])


@settings(max_examples=40, deadline=None)
@given(
    st.dictionaries(
        st.from_regex(r"^[a-z][a-z0-9_]{0,5}$", fullmatch=True),
        hnp.arrays(dtypes, hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4)),
        max_size=4,
    )
)
def test_round_trip_is_exact_and_canonical(arrays):
    data = encode_arrays(arrays)
    back = decode_arrays(data)
    assert sorted(back) == sorted(arrays)
    for name, arr in arrays.items():
        assert back[name].dtype == arr.dtype.newbyteorder("<")
        np.testing.assert_array_equal(back[name], arr)  # NaN == NaN here
    assert encode_arrays(back) == data
    assert encode_arrays(dict(reversed(list(arrays.items())))) == data  # key order is canonical


def test_nan_payloads_are_canonical():
    quiet = np.array([np.nan])
    payload = np.array([0x7FF8_0000_0000_0001], dtype=np.uint64).view(np.float64)
    assert np.isnan(payload[0])
    assert encode_arrays({"x": payload}) == encode_arrays({"x": quiet})


def test_big_endian_input_is_stored_little_endian():
    be = np.arange(3, dtype=">f8")
    assert encode_arrays({"x": be}) == encode_arrays({"x": np.arange(3, dtype="<f8")})


@pytest.mark.parametrize(
    ("arrays", "match"),
    [
        ({"x": np.zeros(2, dtype=np.float16)}, "dtype"),
        ({"x": np.zeros(2, dtype=object)}, "dtype"),
        ({"X": np.zeros(2)}, "name"),
        ({"x": np.float64(1.0)}, "shape"),
        ({"x": np.zeros((1, 1, 1, 1, 1))}, "shape"),
        ({"x": np.zeros(0)}, "shape"),
        ({f"a{i}": np.zeros(1) for i in range(17)}, "at most"),
    ],
)
def test_bad_arrays_are_refused_when_encoding(arrays, match):
    with pytest.raises(ArrayFormatError, match=match):
        encode_arrays(arrays)


def _raw(arrays: dict, **top) -> bytes:
    return encoding.encode({"@type": "meshbench.ArrayBundle", "v": 1, "arrays": arrays, **top})


GOOD = {"dtype": "float64", "shape": [2], "data": bytes(16)}


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"\x00\x01garbage", "DAG-CBOR"),
        (encoding.encode([1, 2]), "version 1"),
        (encoding.encode({"@type": "meshbench.ArrayBundle", "v": 2, "arrays": {}}), "version 1"),
        (_raw({"x": GOOD}, extra=1), "exactly the keys"),
        (_raw({"x": {**GOOD, "data": bytes(15)}}), "data bytes"),
        (_raw({"x": {**GOOD, "shape": [3]}}), "data bytes"),
        (_raw({"x": {**GOOD, "shape": [0]}}), "shape"),
        (_raw({"x": {**GOOD, "shape": [-2]}}), "shape"),
        (_raw({"x": {**GOOD, "shape": []}}), "shape"),
        (_raw({"x": {**GOOD, "shape": [2.0]}}), "shape"),
        (_raw({"x": {**GOOD, "dtype": "object"}}), "dtype"),
        (_raw({"x": {**GOOD, "dtype": "<f8"}}), "dtype"),
        (_raw({"x": {**GOOD, "pickle": b""}}), "exactly dtype"),
        (_raw({"Bad": GOOD}), "name"),
        (_raw({"x": {**GOOD, "data": "text"}}), "data bytes"),
    ],
)
def test_bad_bundles_are_refused_with_a_typed_error(data, match):
    with pytest.raises(ArrayFormatError, match=match) as info:
        decode_arrays(data)
    assert isinstance(info.value, MeshError)


def test_decoded_arrays_are_read_only_views():
    arr = decode_arrays(encode_arrays({"x": np.arange(4.0)}))["x"]
    assert not arr.flags.writeable
