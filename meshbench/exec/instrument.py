"""Make refused ``memory.grow`` calls visible: a small, exact rewrite of the module.

wasmtime answers a ``memory.grow`` past the store's memory limit with -1 and nothing else:
no trap, no callback that the Python API exposes. The guest then fails in its own way (a C
program's ``malloc`` returns NULL and it exits with some status), and the worker could not
tell "out of memory" from any other failure. So before compiling, every ``memory.grow`` in
the code section is replaced by a call to one appended function::

    (func $grow (param $delta i32) (result i32) (local $old i32)
      (local.set $old (memory.grow (local.get $delta)))
      (if (i32.eq (local.get $old) (i32.const -1))
        (then (global.set $refused            ;; pages the refused grow asked for
          (i64.add (i64.extend_i32_u (memory.size)) (i64.extend_i32_u (local.get $delta))))))
      (local.get $old))

and the i64 global ``$refused`` is exported as :data:`REFUSED_EXPORT`. Only things are
appended (a type, a function, a global, an export), so no existing index moves; the guest's
own code cannot name the new global (its indices were validated before). A module with no
``memory.grow`` is left byte for byte as it was. The rewrite adds a dozen instructions per
grow to the fuel count, identically on every worker (it is part of the engine identity).

The decoder knows the instruction set the engine enables (MVP, bulk memory, reference types,
SIMD and relaxed SIMD, tail calls, exceptions, sign extension, saturating conversions); it
runs on modules that wasmtime has already validated.
"""

from __future__ import annotations

from typing import Final

from meshbench.core.errors import InvalidModule
from meshbench.core.varint import uvarint as _enc

__all__ = ["INSTRUMENT_VERSION", "REFUSED_EXPORT", "instrument_memory_grow"]

INSTRUMENT_VERSION: Final = 1
REFUSED_EXPORT: Final = "meshbench:memory_grow_refused_pages"

_SECTION_ORDER: Final = [1, 2, 3, 4, 5, 13, 6, 7, 8, 9, 12, 10, 11]  # wasm section order
_NO_IMMEDIATE: Final = frozenset(
    [0x00, 0x01, 0x05, 0x0A, 0x0B, 0x0F, 0x19, 0x1A, 0x1B, 0xD1, 0xD3, 0xD4, *range(0x45, 0xC5)]
)
_ONE_INDEX: Final = frozenset(
    [0x07, 0x08, 0x09, 0x0C, 0x0D, 0x10, 0x12, 0x14, 0x15, 0x18, 0x3F, 0xD0, 0xD2, 0xD5, 0xD6]
) | frozenset(range(0x20, 0x27))
_FC_ARGS: Final = {8: 2, 9: 1, 10: 2, 11: 1, 12: 2, 13: 1, 14: 2, 15: 1, 16: 1, 17: 1}


def _leb(b: bytes, i: int) -> tuple[int, int]:
    """Unsigned LEB128 at ``i`` -> (value, next index)."""
    result = shift = 0
    while True:
        byte = b[i]
        i += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, i
        shift += 7


def _skip_leb(b: bytes, i: int) -> int:
    while b[i] & 0x80:
        i += 1
    return i + 1


def _skip_valtype(b: bytes, i: int) -> int:
    if b[i] in (0x63, 0x64):  # (ref null ht) / (ref ht)
        return _skip_leb(b, i + 1)
    return i + 1


def _skip_blocktype(b: bytes, i: int) -> int:
    t = b[i]
    if 0x40 <= t <= 0x7F:  # empty or a one-byte value type (a negative s33)
        return _skip_valtype(b, i)
    return _skip_leb(b, i)  # a type index


def _skip_memarg(b: bytes, i: int) -> int:
    align, i = _leb(b, i)
    if align & 0x40:  # multi-memory: a memory index follows
        i = _skip_leb(b, i)
    return _skip_leb(b, i)


def _rewrite_body(b: bytes, start: int, end: int, call: bytes) -> bytes | None:
    """The function body ``b[start:end]`` with memory.grow replaced, or None if it has none."""
    i = start
    count, i = _leb(b, i)
    for _ in range(count):
        i = _skip_leb(b, i)
        i = _skip_valtype(b, i)
    pieces: list[bytes] = []
    last = start
    while i < end:
        op = b[i]
        at = i
        i += 1
        if op in _NO_IMMEDIATE:
            continue
        if op == 0x40:  # memory.grow memidx
            i = _skip_leb(b, i)
            pieces.append(b[last:at])
            pieces.append(call)
            last = i
        elif op in _ONE_INDEX:
            i = _skip_leb(b, i)
        elif op in (0x02, 0x03, 0x04, 0x06):
            i = _skip_blocktype(b, i)
        elif 0x28 <= op <= 0x3E:
            i = _skip_memarg(b, i)
        elif op in (0x41, 0x42):
            i = _skip_leb(b, i)
        elif op == 0x43:
            i += 4
        elif op == 0x44:
            i += 8
        elif op in (0x11, 0x13):
            i = _skip_leb(b, _skip_leb(b, i))
        elif op == 0x0E:
            n, i = _leb(b, i)
            for _ in range(n + 1):
                i = _skip_leb(b, i)
        elif op == 0x1C:
            n, i = _leb(b, i)
            for _ in range(n):
                i = _skip_valtype(b, i)
        elif op == 0x1F:  # try_table
            i = _skip_blocktype(b, i)
            n, i = _leb(b, i)
            for _ in range(n):
                kind = b[i]
                i += 1
                if kind in (0, 1):
                    i = _skip_leb(b, i)
                i = _skip_leb(b, i)
        elif op == 0xFC:
            sub, i = _leb(b, i)
            for _ in range(_FC_ARGS.get(sub, 0)):
                i = _skip_leb(b, i)
        elif op == 0xFD:
            sub, i = _leb(b, i)
            if sub <= 11 or sub in (92, 93):
                i = _skip_memarg(b, i)
            elif sub in (12, 13):
                i += 16
            elif 21 <= sub <= 34:
                i += 1
            elif 84 <= sub <= 91:
                i = _skip_memarg(b, i) + 1
        else:
            raise InvalidModule(f"cannot instrument opcode 0x{op:02x} at byte {at}")
    if not pieces:
        return None
    pieces.append(b[last:end])
    return b"".join(pieces)


def _sections(wasm: bytes) -> list[tuple[int, bytes]]:
    out = []
    i = 8
    while i < len(wasm):
        sid = wasm[i]
        size, j = _leb(wasm, i + 1)
        out.append((sid, wasm[j : j + size]))
        i = j + size
    return out


def _vec(payload: bytes) -> tuple[int, int]:
    """(count, index of the first item) of a vector section."""
    return _leb(payload, 0)


def _count_imports(payload: bytes) -> tuple[int, int]:
    """(imported functions, imported globals)."""
    n, i = _vec(payload)
    funcs = globals_ = 0
    for _ in range(n):
        for _ in range(2):  # module and field names
            length, i = _leb(payload, i)
            i += length
        kind = payload[i]
        i += 1
        if kind == 0x00:
            funcs += 1
            i = _skip_leb(payload, i)
        elif kind == 0x01:  # table: reftype, limits
            i = _skip_valtype(payload, i)
            i = _skip_limits(payload, i)
        elif kind == 0x02:
            i = _skip_limits(payload, i)
        elif kind == 0x03:
            globals_ += 1
            i = _skip_valtype(payload, i) + 1
        elif kind == 0x04:  # tag
            i = _skip_leb(payload, i + 1)
        else:
            raise InvalidModule(f"cannot instrument import kind {kind}")
    return funcs, globals_


def _skip_limits(b: bytes, i: int) -> int:
    flags = b[i]
    i = _skip_leb(b, i + 1)
    return _skip_leb(b, i) if flags & 1 else i


def _append(payload: bytes | None, item: bytes) -> bytes:
    if payload is None:
        return _enc(1) + item
    n, i = _vec(payload)
    return _enc(n + 1) + payload[i:] + item


def instrument_memory_grow(wasm: bytes) -> bytes:
    """``wasm`` with every ``memory.grow`` routed through the refusal-recording function."""
    sections = _sections(wasm)
    by_id = {sid: payload for sid, payload in sections if sid != 0}
    code = by_id.get(10)
    if code is None:
        return wasm
    imported_funcs, imported_globals = _count_imports(by_id[2]) if 2 in by_id else (0, 0)
    defined_funcs = _vec(by_id[3])[0] if 3 in by_id else 0
    hook = imported_funcs + defined_funcs
    call = b"\x10" + _enc(hook)
    n, i = _vec(code)
    bodies: list[bytes] = []
    changed = False
    for _ in range(n):
        entry = i
        size, i = _leb(code, i)
        new = _rewrite_body(code, i, i + size, call)
        if new is not None:
            changed = True
            bodies.append(_enc(len(new)) + new)
        else:
            bodies.append(code[entry : i + size])
        i += size
    if not changed:
        return wasm
    refused = imported_globals + (_vec(by_id[6])[0] if 6 in by_id else 0)
    type_index = _vec(by_id[1])[0] if 1 in by_id else 0
    body = (
        b"\x01\x01\x7f"  # one local i32
        b"\x20\x00\x40\x00\x22\x01\x41\x7f\x46\x04\x40"
        b"\x3f\x00\xad\x20\x00\xad\x7c\x24" + _enc(refused) + b"\x0b\x20\x01\x0b"
    )
    name = REFUSED_EXPORT.encode()
    new = {
        1: _append(by_id.get(1), b"\x60\x01\x7f\x01\x7f"),
        3: _append(by_id.get(3), _enc(type_index)),
        6: _append(by_id.get(6), b"\x7e\x01\x42\x00\x0b"),
        7: _append(by_id.get(7), _enc(len(name)) + name + b"\x03" + _enc(refused)),
        10: _enc(n + 1) + b"".join(bodies) + _enc(len(body)) + body,
    }
    out = bytearray(wasm[:8])
    pending = dict(new)
    for sid, payload in sections:
        if sid != 0:
            # emit any new section that must come before this one
            for missing in [s for s in list(pending) if s not in by_id]:
                if _SECTION_ORDER.index(missing) < _SECTION_ORDER.index(sid):
                    out += bytes([missing]) + _enc(len(pending[missing])) + pending.pop(missing)
            payload = pending.pop(sid, payload)
        out += bytes([sid]) + _enc(len(payload)) + payload
    for sid, payload in pending.items():  # pragma: no cover (code is always present here)
        out += bytes([sid]) + _enc(len(payload)) + payload
    return bytes(out)
