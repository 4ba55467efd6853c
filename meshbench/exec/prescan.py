"""A cheap look at a module's sections before anything compiles it.

Compiling is the expensive step (a 99 MB module took 74 s), so whatever can refuse a module
from its bytes alone does so first: its size, its imports (each must be a function this
executor provides, with the same signature), the size of each function body and of all code,
the number of globals and the initial size of its tables. This reads only section headers,
the type and import sections and the body sizes of the code section (a few microseconds for a
small module, milliseconds for a large one); everything else is left to wasmtime's validator.

Limits (:data:`MAX_MODULE_BYTES` and friends) are far above what real toolchains emit (CPython
for WASI is ~25 MB with functions under 1 MB) and below what makes compiling slow or large.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from meshbench.core.errors import InvalidModule
from meshbench.exec.engine import MAX_TABLE_ELEMENTS

__all__ = [
    "MAX_CODE_BYTES",
    "MAX_FUNCTION_BYTES",
    "MAX_GLOBALS",
    "MAX_MODULE_BYTES",
    "MAX_TABLE_ELEMENTS",
    "prescan",
]

MAX_MODULE_BYTES: Final = 64 * 1024 * 1024
MAX_CODE_BYTES: Final = 32 * 1024 * 1024
MAX_FUNCTION_BYTES: Final = 2 * 1024 * 1024
MAX_GLOBALS: Final = 100_000

_TYPE, _IMPORT, _TABLE, _GLOBAL, _CODE = 1, 2, 4, 6, 10
_FUNC_FORM: Final = 0x60
_VALTYPES: Final = {0x7F: "i", 0x7E: "l", 0x7D: "f", 0x7C: "d", 0x7B: "v", 0x70: "r", 0x6F: "x"}
_KINDS: Final = {0: "function", 1: "table", 2: "memory", 3: "global", 4: "tag"}


class _Malformed(Exception):
    """Bytes this scan cannot read: wasmtime's validator says precisely what is wrong."""


class _Reader:
    __slots__ = ("data", "end", "pos")

    def __init__(self, data: bytes, pos: int, end: int) -> None:
        self.data = data
        self.pos = pos
        self.end = end

    def byte(self) -> int:
        if self.pos >= self.end:
            raise _Malformed("a section ends early")
        b = self.data[self.pos]
        self.pos += 1
        return b

    def u32(self) -> int:
        result = shift = 0
        while True:
            b = self.byte()
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                break
            shift += 7
            if shift > 28:
                raise _Malformed("an integer is longer than 5 bytes")
        if result > 0xFFFFFFFF:
            raise _Malformed("an integer does not fit 32 bits")
        return result

    def name(self) -> str:
        n = self.u32()
        if self.pos + n > self.end:
            raise _Malformed("a name runs past its section")
        raw = self.data[self.pos : self.pos + n]
        self.pos += n
        try:
            return raw.decode()
        except UnicodeDecodeError:
            raise _Malformed("a name is not UTF-8") from None


def _types(r: _Reader) -> list[tuple[str, str]] | None:
    """Function types as (params, results) kind strings; None if one is not a plain one."""
    out = []
    for _ in range(r.u32()):
        if r.byte() != _FUNC_FORM:
            return None  # a form this scan does not read (the validator will judge it)
        sides = []
        for _side in range(2):
            kinds = []
            for _ in range(r.u32()):
                kind = _VALTYPES.get(r.byte())
                if kind is None:
                    return None
                kinds.append(kind)
            sides.append("".join(kinds))
        out.append((sides[0], sides[1]))
    return out


def prescan(wasm: bytes, provided: Mapping[tuple[str, str], tuple[str, str]]) -> None:
    """Refuse ``wasm`` with InvalidModule if its bytes alone show it cannot or must not run.

    ``provided`` maps each (module, name) the executor offers to its (params, results)
    kinds ("i" i32, "l" i64). The magic and version are assumed checked. Bytes that are
    not well-formed are left to the validator (its message is the precise one).
    """
    try:
        _scan(wasm, provided)
    except _Malformed:
        return


def _scan(wasm: bytes, provided: Mapping[tuple[str, str], tuple[str, str]]) -> None:
    if len(wasm) > MAX_MODULE_BYTES:
        raise InvalidModule(
            f"the module is {len(wasm)} bytes; this executor compiles at most "
            f"{MAX_MODULE_BYTES} (refused before compiling)"
        )
    pos, size = 8, len(wasm)
    types: list[tuple[str, str]] | None = []
    code_bytes = 0
    while pos < size:
        section = wasm[pos]
        r = _Reader(wasm, pos + 1, size)
        length = r.u32()
        end = r.pos + length
        if end > size:
            raise _Malformed("a section runs past the end of the module")
        r.end = end
        if section == _TYPE:
            types = _types(r)
        elif section == _IMPORT:
            _check_imports(r, types, provided)
        elif section == _TABLE:
            for _ in range(r.u32()):
                r.byte()  # reference type
                flags = r.byte()
                minimum = r.u32()
                if flags & 1:
                    r.u32()
                if minimum > MAX_TABLE_ELEMENTS:
                    raise InvalidModule(
                        f"a table starts with {minimum} elements; at most "
                        f"{MAX_TABLE_ELEMENTS} (refused before compiling)"
                    )
        elif section == _GLOBAL:
            count = r.u32()
            if count > MAX_GLOBALS:
                raise InvalidModule(
                    f"the module declares {count} globals; at most {MAX_GLOBALS} "
                    "(refused before compiling)"
                )
        elif section == _CODE:
            code_bytes += length
            if code_bytes > MAX_CODE_BYTES:
                raise InvalidModule(
                    f"the module has {length} bytes of code; at most {MAX_CODE_BYTES} "
                    "(refused before compiling)"
                )
            for index in range(r.u32()):
                body = r.u32()
                if body > MAX_FUNCTION_BYTES:
                    raise InvalidModule(
                        f"function body {index} is {body} bytes; at most {MAX_FUNCTION_BYTES} "
                        "(refused before compiling: such a function is slow to compile)"
                    )
                r.pos += body
                if r.pos > end:
                    raise _Malformed("a function body runs past its section")
        pos = end


def _check_imports(
    r: _Reader,
    types: list[tuple[str, str]] | None,
    provided: Mapping[tuple[str, str], tuple[str, str]],
) -> None:
    unknown: list[str] = []
    mistyped: list[str] = []
    for _ in range(r.u32()):
        module, name = r.name(), r.name()
        kind = r.byte()
        if kind != 0:
            unknown.append(f"{module}.{name} (a {_KINDS.get(kind, 'unknown')})")
            break  # the rest of this import is not read: its kind is refused anyway
        index = r.u32()
        want = provided.get((module, name))
        if want is None:
            unknown.append(f"{module}.{name}")
        elif types is not None and index < len(types) and types[index] != want:
            params, results = types[index]
            mistyped.append(
                f"{module}.{name} has type ({params}) -> ({results}), "
                f"not ({want[0]}) -> ({want[1]})"
            )
        if len(unknown) + len(mistyped) >= 8:
            break
    if unknown:
        raise InvalidModule(
            f"the module imports {', '.join(unknown)}, which this executor does not provide "
            "(it offers wasi_snapshot_preview1 and the ICN ABI: env.input_load, "
            "env.output_store, env.log); refused before compiling"
        )
    if mistyped:
        raise InvalidModule(
            f"the module's imports do not link: {'; '.join(mistyped)} "
            "(i: i32, l: i64; refused before compiling)"
        )
