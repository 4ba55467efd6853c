"""Generated hostile modules: the ones too large to keep in ``datasets/wasm/hostile/``.

Each is a *valid* WebAssembly module (wasmtime would compile it, slowly and into a lot of
memory); the executor must refuse it from its bytes before compiling. They are written as
binary directly (a tiny encoder), since their text form would be larger still.
"""

from __future__ import annotations

__all__ = ["enormous_function", "huge_module", "many_globals", "module_bytes"]

_MAGIC = b"\0asm\x01\0\0\0"
#: ``i32.const 0; drop``: three bytes of code that every compiler must still translate.
_FILLER = b"\x41\x00\x1a"


def _leb(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _section(section_id: int, payload: bytes) -> bytes:
    return bytes([section_id]) + _leb(len(payload)) + payload


def _vec(items: list[bytes]) -> bytes:
    return _leb(len(items)) + b"".join(items)


def module_bytes(bodies: list[bytes], *, globals_: int = 0) -> bytes:
    """A module of ``() -> ()`` functions with these bodies (the first is ``_start``),
    a memory export, and ``globals_`` mutable i32 globals."""
    types = _section(1, _vec([b"\x60\x00\x00"]))
    funcs = _section(3, _vec([b"\x00"] * len(bodies)))
    memory = _section(5, _vec([b"\x00\x01"]))
    sections = [types, funcs, memory]
    if globals_:
        sections.append(_section(6, _leb(globals_) + b"\x7f\x01\x41\x00\x0b" * globals_))
    exports = _vec([b"\x06memory\x02\x00", b"\x06_start\x00\x00"])
    sections.append(_section(7, exports))
    code = [_leb(len(b"\x00" + body + b"\x0b")) + b"\x00" + body + b"\x0b" for body in bodies]
    sections.append(_section(10, _vec(code)))
    return _MAGIC + b"".join(sections)


def huge_module(total_bytes: int) -> bytes:
    """A valid module of at least ``total_bytes``: functions of 64 KiB of code each."""
    body = _FILLER * (64 * 1024 // len(_FILLER))
    count = total_bytes // len(body) + 1
    return module_bytes([b""] + [body] * count)


def enormous_function(body_bytes: int) -> bytes:
    """A valid module whose one function has a body of at least ``body_bytes``."""
    return module_bytes([_FILLER * (body_bytes // len(_FILLER) + 1)])


def many_globals(count: int) -> bytes:
    """A valid module with ``count`` mutable globals."""
    return module_bytes([b""], globals_=count)
