"""The driver of a Python task: this file's *text* runs inside the guest CPython.

The host never imports it. Its source travels in every task's input blob (so the task's
CID covers it), and a short bootstrap passed as ``-c`` executes it. It decodes the bundle,
runs the task's source in a fresh namespace, calls the entry point, and writes one canonical
DAG-CBOR record to ``/out/result``: ``{"ok": value}``, or ``{"error": {"type", "message",
"traceback"}}`` with exit status 1. Values use the same tree as the host
(:mod:`meshbench.exec.python_values`): IPLD kinds, plus single-key maps ``$float`` (NaN and
infinities), ``$ndarray`` (dtype, shape, little-endian C-order bytes), ``$frame`` and
``$series`` (pandas, one typed column each), ``$dict`` (a user map whose only key starts
with ``$``).

It must run on the guest's Python (3.15) and import nothing the guest lacks; it imports
numpy or pandas only when a value needs them.
"""

# ruff: noqa: ANN001, ANN201
import math
import struct
import sys

RESULT_PATH = "/out/result"
_F64 = struct.Struct(">d")
MAX_DEPTH = 128


def _head(major, n, out):
    m = major << 5
    if n < 24:
        out.append(m | n)
    elif n < 0x100:
        out += bytes((m | 24, n))
    elif n < 0x10000:
        out.append(m | 25)
        out += n.to_bytes(2, "big")
    elif n < 0x100000000:
        out.append(m | 26)
        out += n.to_bytes(4, "big")
    else:
        out.append(m | 27)
        out += n.to_bytes(8, "big")


def _enc(v, out, depth):
    if depth > MAX_DEPTH:
        raise ValueError(f"the value nests deeper than {MAX_DEPTH} levels")
    t = type(v)
    if t is str:
        raw = v.encode("utf-8")
        _head(3, len(raw), out)
        out += raw
    elif t is bool:
        out.append(0xF5 if v else 0xF4)
    elif t is int:
        if 0 <= v < 2**64:
            _head(0, v, out)
        elif -(2**64) <= v < 0:
            _head(1, -1 - v, out)
        else:
            raise ValueError(f"the integer {v} does not fit in 64 bits")
    elif v is None:
        out.append(0xF6)
    elif t is float:
        out.append(0xFB)
        out += _F64.pack(v)
    elif t is bytes:
        _head(2, len(v), out)
        out += v
    elif t is list:
        _head(4, len(v), out)
        for x in v:
            _enc(x, out, depth + 1)
    elif t is dict:
        items = sorted(
            ((k.encode("utf-8"), x) for k, x in v.items()), key=lambda i: (len(i[0]), i[0])
        )
        _head(5, len(items), out)
        for kb, x in items:
            _head(3, len(kb), out)
            out += kb
            _enc(x, out, depth + 1)
    else:
        raise TypeError(f"internal: {t.__name__} reached the encoder")


def encode(tree):
    out = bytearray()
    _enc(tree, out, 0)
    return bytes(out)


class _Reader:
    def __init__(self, data, pos):
        self.data = data
        self.pos = pos

    def take(self, n):
        start = self.pos
        self.pos += n
        return self.data[start : self.pos]

    def item(self):
        first = self.data[self.pos]
        self.pos += 1
        major, info = first >> 5, first & 31
        if major == 7:
            if info == 27:
                return _F64.unpack(self.take(8))[0]
            return {20: False, 21: True, 22: None}[info]
        n = info if info < 24 else int.from_bytes(self.take(1 << (info - 24)), "big")
        if major == 0:
            return n
        if major == 1:
            return -1 - n
        if major == 2:
            return bytes(self.take(n))
        if major == 3:
            return self.take(n).decode("utf-8")
        if major == 4:
            return [self.item() for _ in range(n)]
        if major == 5:
            return {self.item(): self.item() for _ in range(n)}
        if major == 6 and n == 42:  # a CID: its bytes
            return self.item()
        raise ValueError(f"unexpected CBOR major type {major}")


# --- values <-> trees ------------------------------------------------------------------
def to_tree(v, depth=0):
    if depth > MAX_DEPTH:
        raise ValueError(f"the value nests deeper than {MAX_DEPTH} levels")
    t = type(v)
    if v is None or t in (bool, int, str, bytes):
        return v
    if t is float:
        if math.isfinite(v):
            return v
        return {"$float": "nan" if v != v else ("inf" if v > 0 else "-inf")}
    if t in (list, tuple):
        return [to_tree(x, depth + 1) for x in v]
    if t is bytearray or t is memoryview:
        return bytes(v)
    if t is dict:
        for k in v:
            if type(k) is not str:
                raise TypeError(f"map keys must be str, not {type(k).__name__} ({k!r})")
        tree = {k: to_tree(x, depth + 1) for k, x in v.items()}
        if len(tree) == 1 and next(iter(tree)).startswith("$"):
            return {"$dict": tree}
        return tree
    module = t.__module__ or ""
    if module.startswith("numpy"):
        return _numpy_tree(v, depth)
    if module.startswith("pandas"):
        return _pandas_tree(v, depth)
    raise TypeError(
        f"a {module}.{t.__name__} cannot leave a Python task; return None, bool, int, float, "
        "str, bytes, lists, dicts with str keys, numpy arrays or pandas frames"
    )


def _numpy_tree(v, depth):
    import numpy as np

    if isinstance(v, np.ndarray):
        if v.dtype.kind not in "biuf":
            return {"$list": to_tree(v.tolist(), depth + 1)}
        a = np.ascontiguousarray(v, dtype=v.dtype.newbyteorder("<"))
        return {"$ndarray": {"dtype": a.dtype.str, "shape": list(a.shape), "data": a.tobytes()}}
    if isinstance(v, np.generic):
        return to_tree(v.item(), depth + 1)
    raise TypeError(f"a numpy {type(v).__name__} cannot leave a Python task")


def _column(s, depth):
    import numpy as np

    kind = s.dtype.kind
    if kind in "biuf":
        a = np.ascontiguousarray(s.to_numpy(), dtype=s.dtype.newbyteorder("<"))
        return {"dtype": a.dtype.str, "data": a.tobytes()}
    values = [None if _missing(x) else x for x in s.tolist()]
    return {"dtype": "object", "data": to_tree(values, depth + 1)}


def _missing(x):
    try:
        return x is None or (type(x) is float and x != x) or str(x) in ("NaT", "<NA>")
    except Exception:
        return False


def _pandas_tree(v, depth):
    import pandas as pd

    if isinstance(v, pd.DataFrame):
        if not isinstance(v.index, pd.RangeIndex):  # keep a meaningful index as columns
            v = v.reset_index()
        names = [str(c) for c in v.columns]
        if len(set(names)) != len(names):
            raise ValueError("a frame leaving a Python task needs distinct column names")
        columns = [_column(v.iloc[:, i], depth) for i in range(v.shape[1])]
        return {"$frame": {"names": names, "columns": columns}}
    if isinstance(v, pd.Series):
        return {"$series": {"name": str(v.name), "column": _column(v, depth)}}
    raise TypeError(f"a pandas {type(v).__name__} cannot leave a Python task")


def from_tree(t):
    if type(t) is list:
        return [from_tree(x) for x in t]
    if type(t) is not dict:
        return t
    if len(t) == 1:
        ((key, body),) = t.items()
        if key == "$float":
            return float(body)
        if key == "$dict":
            return {k: from_tree(x) for k, x in body.items()}
        if key == "$list":
            return from_tree(body)
        if key == "$ndarray":
            import numpy as np

            return np.frombuffer(body["data"], dtype=body["dtype"]).reshape(body["shape"]).copy()
        if key == "$frame":
            import pandas as pd

            cols = {n: _from_column(c) for n, c in zip(body["names"], body["columns"], strict=True)}
            return pd.DataFrame(cols)
        if key == "$series":
            import pandas as pd

            return pd.Series(_from_column(body["column"]), name=body["name"])
    return {k: from_tree(x) for k, x in t.items()}


def _from_column(c):
    if c["dtype"] == "object":
        return from_tree(c["data"])
    import numpy as np

    return np.frombuffer(c["data"], dtype=c["dtype"]).copy()


# --- the task ------------------------------------------------------------------------------
def _error(e):
    import traceback  # only on failure: its imports cost a task that succeeds ~1e8 fuel

    return {
        "error": {
            "type": type(e).__name__,
            "message": str(e),
            "traceback": "".join(traceback.format_exception(e)),
        }
    }


def main(data, start):
    status = 0
    try:
        bundle = _Reader(data, start).item()
        # not "__main__": a file's `if __name__ == "__main__":` block must not run in a task
        namespace = {"__name__": "__task__", "__builtins__": __builtins__}
        code = compile(bundle["source"], bundle["filename"], "exec")
        exec(code, namespace)
        fn = namespace.get(bundle["entry"])
        if not callable(fn):
            raise NameError(f"the task's source defines no function {bundle['entry']!r}")
        args = [from_tree(a) for a in bundle["args"]]
        kwargs = {k: from_tree(x) for k, x in bundle["kwargs"].items()}
        record = {"ok": to_tree(fn(*args, **kwargs))}
        blob = encode(record)
    except BaseException as e:  # the task's failure is its result
        status = 1
        record = _error(e)
        sys.stderr.write(record["error"]["traceback"])
        blob = encode(record)
    sys.stdout.flush()
    with open(RESULT_PATH, "wb") as f:
        f.write(blob)
    return status


if __name__ == "meshbench_driver":  # run by the bootstrap, never by an import
    sys.exit(main(INPUT, START))  # noqa: F821 (both given by the bootstrap)
