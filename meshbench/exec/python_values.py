"""Canonical, pickle-free values for Python tasks: arguments in, results out.

A value crosses the sandbox as an IPLD tree encoded as DAG-CBOR (one encoder,
:mod:`meshbench.core.encoding`), so a verifier compares bytes. The tree is the IPLD data
model plus single-key maps for what it lacks:

- ``{"$float": "nan" | "inf" | "-inf"}``: floats DAG-CBOR cannot hold;
- ``{"$ndarray": {"dtype", "shape", "data"}}``: a numeric array, little-endian, C order;
- ``{"$frame": {"names", "columns"}}`` and ``{"$series": {"name", "column"}}``: a table, one
  typed column each (numeric columns as little-endian bytes, others as lists);
- ``{"$dict": {...}}``: a map whose only key starts with ``$`` (so it is not read as one of
  the above); ``{"$list": [...]}``: a non-numeric array.

On the host a ``$frame`` becomes a Polars DataFrame, a ``$series`` a Polars Series and an
``$ndarray`` a numpy array (numpy is optional: without it, a list of the flat values with
the shape). The guest side of this format is :mod:`meshbench.exec.python_guest`.
"""

from __future__ import annotations

import math
import sys
from typing import Any, Final

import polars as pl

from meshbench.core import encoding
from meshbench.core.errors import EncodingError

__all__ = ["MAX_DEPTH", "decode_record", "from_tree", "to_tree"]

MAX_DEPTH: Final = 120
_NUMERIC_POLARS: Final = {
    "<f8": pl.Float64, "<f4": pl.Float32, "<i8": pl.Int64, "<i4": pl.Int32, "<i2": pl.Int16,
    "|i1": pl.Int8, "<u8": pl.UInt64, "<u4": pl.UInt32, "<u2": pl.UInt16, "|u1": pl.UInt8,
    "|b1": pl.Boolean,
}  # fmt: skip
_ARRAY_CODES: Final = {
    "<f8": "d", "<f4": "f", "<i8": "q", "<i4": "i", "<i2": "h", "|i1": "b",
    "<u8": "Q", "<u4": "I", "<u2": "H", "|u1": "B", "|b1": "B",
}  # fmt: skip


def to_tree(value: Any, depth: int = 0) -> Any:
    """An argument as a tree (EncodingError for a value that cannot cross the sandbox)."""
    if depth > MAX_DEPTH:
        raise EncodingError(f"the value nests deeper than {MAX_DEPTH} levels")
    t = type(value)
    if value is None or t in (bool, int, str, bytes):
        return value
    if t is float:
        if math.isfinite(value):
            return value
        return {"$float": "nan" if value != value else ("inf" if value > 0 else "-inf")}
    if t in (list, tuple):
        return [to_tree(x, depth + 1) for x in value]
    if t in (bytearray, memoryview):
        return bytes(value)
    if t is dict:
        bad = [k for k in value if type(k) is not str]
        if bad:
            raise EncodingError(f"map keys must be str, not {type(bad[0]).__name__}")
        tree = {k: to_tree(x, depth + 1) for k, x in value.items()}
        if len(tree) == 1 and next(iter(tree)).startswith("$"):
            return {"$dict": tree}
        return tree
    if isinstance(value, pl.DataFrame):
        return {
            "$frame": {
                "names": list(value.columns),
                "columns": [_column(value.get_column(c), depth) for c in value.columns],
            }
        }
    if isinstance(value, pl.Series):
        return {"$series": {"name": value.name, "column": _column(value, depth)}}
    np = sys.modules.get("numpy")
    if np is not None and isinstance(value, np.ndarray):
        if value.dtype.kind not in "biuf":
            return {"$list": to_tree(value.tolist(), depth + 1)}
        a = np.ascontiguousarray(value, dtype=value.dtype.newbyteorder("<"))
        return {"$ndarray": {"dtype": a.dtype.str, "shape": list(a.shape), "data": a.tobytes()}}
    if np is not None and isinstance(value, np.generic):
        return to_tree(value.item(), depth + 1)
    raise EncodingError(
        f"a {t.__module__}.{t.__name__} cannot be a Python task's argument; use None, bool, "
        "int, float, str, bytes, lists, dicts with str keys, numpy arrays or Polars frames"
    )


def _column(s: pl.Series, depth: int) -> dict[str, Any]:
    for code, dtype in _NUMERIC_POLARS.items():
        if s.dtype == dtype and s.null_count() == 0:
            values = s.to_list()
            if dtype == pl.Boolean:
                return {"dtype": code, "data": bytes(int(v) for v in values)}
            import array

            return {"dtype": code, "data": array.array(_ARRAY_CODES[code], values).tobytes()}
    return {"dtype": "object", "data": to_tree(s.to_list(), depth + 1)}


def from_tree(tree: Any, depth: int = 0) -> Any:
    """A result tree as host values (Polars for frames, numpy for arrays when installed)."""
    if depth > MAX_DEPTH:
        raise EncodingError(f"the value nests deeper than {MAX_DEPTH} levels")
    if isinstance(tree, list):
        return [from_tree(x, depth + 1) for x in tree]
    if not isinstance(tree, dict):
        return tree
    if len(tree) == 1:
        ((key, body),) = tree.items()
        try:
            if key == "$float":
                return float(body)
            if key == "$dict":
                return {k: from_tree(x, depth + 1) for k, x in body.items()}
            if key == "$list":
                return from_tree(body, depth + 1)
            if key == "$ndarray":
                return _array(body)
            if key == "$frame":
                cols = [_series(n, c) for n, c in zip(body["names"], body["columns"], strict=True)]
                return pl.DataFrame(cols)
            if key == "$series":
                return _series(body["name"], body["column"])
        except (KeyError, TypeError, ValueError) as exc:
            raise EncodingError(
                f"a malformed {key} value in a Python task's result: {exc}"
            ) from None
    return {k: from_tree(x, depth + 1) for k, x in tree.items()}


def _flat(dtype: str, data: bytes) -> list[Any]:
    import array

    code = _ARRAY_CODES.get(dtype)
    if code is None:
        raise ValueError(f"unknown dtype {dtype!r}")
    values = array.array(code)
    values.frombytes(data)
    if sys.byteorder != "little":  # pragma: no cover (every supported host is little-endian)
        values.byteswap()
    return [bool(v) for v in values] if dtype == "|b1" else values.tolist()


def _array(body: dict[str, Any]) -> Any:
    try:
        import numpy as np
    except ModuleNotFoundError:  # pragma: no cover (numpy is installed with the dev extras)
        return {"shape": body["shape"], "values": _flat(body["dtype"], body["data"])}
    return np.frombuffer(body["data"], dtype=body["dtype"]).reshape(body["shape"]).copy()


def _series(name: str, column: dict[str, Any]) -> pl.Series:
    dtype = column["dtype"]
    if dtype == "object":
        return pl.Series(name, from_tree(column["data"]), strict=False)
    return pl.Series(name, _flat(dtype, column["data"]), dtype=_NUMERIC_POLARS[dtype])


def decode_record(output: bytes, *, max_bytes: int) -> dict[str, Any]:
    """The driver's record (``{"ok": tree}`` or ``{"error": {...}}``), strictly decoded."""
    record = encoding.decode(output, max_bytes=max(max_bytes, 1))
    if not isinstance(record, dict) or len(record) != 1 or not ({"ok", "error"} & set(record)):
        raise EncodingError("a Python task's output is not an {'ok': ...} or {'error': ...} record")
    return record
