"""The array bundle: how GPU task inputs and outputs are stored as blobs (addressed by CID).

A bundle is one strict DAG-CBOR map (the project's codec, so the bytes of a bundle are
canonical and two equal bundles have the same CID)::

    {"@type": "meshbench.ArrayBundle", "v": 1,
     "arrays": {NAME: {"dtype": DTYPE, "shape": [d0, d1, ...], "data": BYTES}, ...}}

- ``NAME``: ``[a-z][a-z0-9_]{0,31}``, at most :data:`MAX_ARRAYS` arrays;
- ``DTYPE``: one of :data:`DTYPES` (``float32``, ``float64``, ``int32``, ``int64``,
  ``uint32``), always little-endian;
- ``shape``: 1 to :data:`MAX_NDIM` dimensions, each 1 to 2**31 - 1;
- ``data``: the elements in C (row-major) order, exactly ``prod(shape) * itemsize`` bytes.

Floating point outputs are written with every NaN replaced by the canonical quiet NaN, so
NaN payloads (which differ between devices) never change a CID. Anything else raises
:class:`~meshbench.core.errors.ArrayFormatError`; arrays are never unpickled.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any, Final

import numpy as np

from meshbench.core import encoding
from meshbench.core.errors import ArrayFormatError, EncodingError

__all__ = ["DTYPES", "MAX_ARRAYS", "MAX_NDIM", "decode_arrays", "encode_arrays"]

TYPE: Final = "meshbench.ArrayBundle"
DTYPES: Final = {
    "float32": np.dtype("<f4"),
    "float64": np.dtype("<f8"),
    "int32": np.dtype("<i4"),
    "int64": np.dtype("<i8"),
    "uint32": np.dtype("<u4"),
}
MAX_ARRAYS: Final = 16
MAX_NDIM: Final = 4
MAX_DIM: Final = 2**31 - 1
NAME: Final = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
#: Largest bundle decoded (the task's ``io_mb`` is usually smaller and is checked first).
MAX_BUNDLE_BYTES: Final = 1 << 30


def _dtype_name(dtype: np.dtype) -> str:
    for name, dt in DTYPES.items():
        if dt == dtype.newbyteorder("<"):
            return name
    raise ArrayFormatError(f"dtype {dtype} is not one of {', '.join(DTYPES)}")


def encode_arrays(arrays: Mapping[str, Any]) -> bytes:
    """The canonical bundle bytes of ``arrays`` (name -> array-like)."""
    if len(arrays) > MAX_ARRAYS:
        raise ArrayFormatError(f"{len(arrays)} arrays; a bundle holds at most {MAX_ARRAYS}")
    out: dict[str, Any] = {}
    for name, value in arrays.items():
        if not isinstance(name, str) or not NAME.match(name):
            raise ArrayFormatError(f"array name {name!r} must match {NAME.pattern}")
        arr = np.asarray(value)
        dtype = DTYPES[_dtype_name(arr.dtype)]
        if not 1 <= arr.ndim <= MAX_NDIM or arr.size == 0:
            raise ArrayFormatError(f"array {name!r} has shape {arr.shape}; 1 to {MAX_NDIM} dims")
        arr = np.ascontiguousarray(arr, dtype=dtype)
        if arr.dtype.kind == "f":
            arr = np.where(np.isnan(arr), dtype.type(np.nan), arr).astype(dtype)
        out[name] = {"dtype": _dtype_name(dtype), "shape": list(arr.shape), "data": arr.tobytes()}
    return encoding.encode({"@type": TYPE, "v": 1, "arrays": out})


def decode_arrays(data: bytes, *, max_bytes: int = MAX_BUNDLE_BYTES) -> dict[str, np.ndarray]:
    """The arrays of a bundle (read-only views of ``data``), checked field by field."""
    if len(data) > max_bytes:
        raise ArrayFormatError(f"the bundle is {len(data)} bytes; at most {max_bytes}")
    try:
        value = encoding.decode(data, max_bytes=max(len(data), 1))
    except EncodingError as exc:
        raise ArrayFormatError(f"not an array bundle (DAG-CBOR): {exc}") from None
    if not isinstance(value, dict) or value.get("@type") != TYPE or value.get("v") != 1:
        raise ArrayFormatError(f"not a version 1 {TYPE}")
    if set(value) != {"@type", "v", "arrays"} or not isinstance(value["arrays"], dict):
        raise ArrayFormatError("a bundle has exactly the keys @type, v and arrays")
    arrays = value["arrays"]
    if len(arrays) > MAX_ARRAYS:
        raise ArrayFormatError(f"{len(arrays)} arrays; a bundle holds at most {MAX_ARRAYS}")
    return {name: _array(name, entry) for name, entry in arrays.items()}


def _array(name: str, entry: Any) -> np.ndarray:
    if not NAME.match(name):
        raise ArrayFormatError(f"array name {name!r} must match {NAME.pattern}")
    if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data"}:
        raise ArrayFormatError(f"array {name!r} must have exactly dtype, shape and data")
    dtype = DTYPES.get(entry["dtype"]) if isinstance(entry["dtype"], str) else None
    if dtype is None:
        raise ArrayFormatError(f"array {name!r}: dtype {entry['dtype']!r} is not supported")
    shape = entry["shape"]
    if (
        not isinstance(shape, list)
        or not 1 <= len(shape) <= MAX_NDIM
        or not all(type(d) is int and 1 <= d <= MAX_DIM for d in shape)
    ):
        raise ArrayFormatError(f"array {name!r}: shape {shape!r} is not 1-{MAX_NDIM} dims >= 1")
    raw = entry["data"]
    if not isinstance(raw, bytes) or len(raw) != math.prod(shape) * dtype.itemsize:
        size = len(raw) if isinstance(raw, bytes) else type(raw).__name__
        raise ArrayFormatError(
            f"array {name!r}: {size} data bytes for shape {shape} of {entry['dtype']}"
        )
    return np.frombuffer(raw, dtype=dtype).reshape(shape)
