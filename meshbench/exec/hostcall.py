"""Host functions on wasmtime's C API: the one module that touches wasmtime's private FFI.

wasmtime-py's own host-function trampoline builds a ``Caller`` and a ``Val`` per argument
and per result, which costs more than a small WASI call itself. Here every host function is
an *unchecked* callback with plain-integer arguments: its arguments are unpacked from the
raw value array in one ``struct`` call, the guest's memory is a bounds-checked
``memoryview`` over linear memory (:class:`GuestMemory`), fuel is charged with two direct
C calls, and a Python exception unwinds the guest as a trap that the executor re-raises.

Each call finds its run's context through a thread-local (:func:`bind`): a store runs on one
thread at a time, so the linker's host functions are defined once per process.
"""

from __future__ import annotations

import ctypes
import struct
import threading
from collections.abc import Callable, Mapping
from typing import Any, Final, Protocol

import wasmtime
from wasmtime import _ffi
from wasmtime import _func as _wasmtime_func
from wasmtime._extern import wrap_extern

from meshbench.core.errors import ExecutionError, GuestTrap, OutOfFuel, WasiError
from meshbench.exec.engine import HOST_CALL_FUEL, IO_BYTES_PER_FUEL
from meshbench.exec.vfs import EFAULT, IOBudget, fs_error

__all__ = [
    "HOST_TRAP_MESSAGE",
    "GuestMemory",
    "GuestStore",
    "HostContext",
    "Signature",
    "bind",
    "define",
]

#: The trap message of a host function that unwound the guest (see HostContext.pending).
HOST_TRAP_MESSAGE: Final = "meshbench host function raised"

_dll = _ffi.dll
_P = ctypes.c_void_p


def _c(name: str, restype: Any, *argtypes: Any) -> Any:
    """A C function of libwasmtime with plain-integer (pointer) arguments."""
    return ctypes.CFUNCTYPE(restype, *argtypes)((name, _dll))


_caller_context = _c("wasmtime_caller_context", _P, _P)
_caller_export_get = _c(
    "wasmtime_caller_export_get", ctypes.c_bool, _P, ctypes.c_char_p, ctypes.c_size_t, _P
)
_get_fuel = _c("wasmtime_context_get_fuel", _P, _P, _P)
_set_fuel = _c("wasmtime_context_set_fuel", _P, _P, ctypes.c_uint64)
_memory_data = _c("wasmtime_memory_data", _P, _P, _P)
_memory_data_size = _c("wasmtime_memory_data_size", ctypes.c_size_t, _P, _P)
_trap_new = _c("wasmtime_trap_new", _P, ctypes.c_char_p, ctypes.c_size_t)
_callback_t = ctypes.CFUNCTYPE(ctypes.c_size_t, _P, _P, _P, ctypes.c_size_t)
_I64, _SIZE = ctypes.c_int64, ctypes.c_size_t
_store_new = _c("wasmtime_store_new", _P, _P, _P, _P)
_store_context = _c("wasmtime_store_context", _P, _P)
_store_limiter = _c("wasmtime_store_limiter", None, _P, _I64, _I64, _I64, _I64, _I64)
_store_delete = _c("wasmtime_store_delete", None, _P)
_set_epoch_deadline = _c("wasmtime_context_set_epoch_deadline", None, _P, ctypes.c_uint64)
_pre_instantiate = _c("wasmtime_instance_pre_instantiate", _P, _P, _P, _P, _P)
_instance_export_get = _c(
    "wasmtime_instance_export_get", ctypes.c_bool, _P, _P, ctypes.c_char_p, _SIZE, _P
)
_func_call = _c("wasmtime_func_call", _P, _P, _P, _P, _SIZE, _P, _SIZE, _P)
_MEMORY_KIND: Final = _ffi.WASMTIME_EXTERN_MEMORY.value
_FUNC_KIND: Final = _ffi.WASMTIME_EXTERN_FUNC.value

_memory_view = ctypes.pythonapi.PyMemoryView_FromMemory
_memory_view.restype = ctypes.py_object
_memory_view.argtypes = [ctypes.c_void_p, ctypes.c_ssize_t, ctypes.c_int]
_PyBUF_WRITE: Final = 0x200
_I32 = ctypes.c_int32
_string_at = ctypes.string_at
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")


class GuestMemory:
    """The guest's linear memory as a bounds-checked byte window.

    Over wasmtime (``GuestMemory()``) the window is a ``memoryview`` of the memory export,
    found on the first access (through the calling instance, so host calls made by a start
    function work too). Its base never moves (the engine sets ``memory_may_move`` off) and
    memory only grows, so the view is rebuilt only when an access reaches past the size
    last seen. ``GuestMemory(bytearray(...))`` is a plain buffer, for code that runs WASI
    calls without wasm (tests, tools). Every access out of bounds raises ``EFAULT``.
    """

    __slots__ = ("_buffer", "_extern", "caller", "context", "fuel", "size", "view")

    def __init__(self, buffer: bytearray | None = None) -> None:
        self._buffer = buffer
        self.view = memoryview(buffer) if buffer is not None else memoryview(b"")
        # -1 until the wasm memory is found: every access, even an empty one, looks it up
        self.size = len(self.view) if buffer is not None else -1
        self._extern: Any = None
        #: The calling store's context and the current call's caller (raw pointers).
        self.context: int | None = None
        self.caller: int | None = None
        self.fuel = ctypes.c_uint64(0)

    def attach(self, context: int, memory: Any) -> None:
        """Use the store ``context`` and its memory (a ``wasmtime_extern_t`` of kind memory)."""
        self.context = context
        self._extern = memory

    def release(self) -> None:
        """Forget the memory (call when the store is gone: the view would dangle)."""
        self.view.release()
        self.view = memoryview(b"")
        self.size = -1
        self._extern = None
        self.context = self.caller = None

    def length(self) -> int:
        """The memory's current size in bytes (0 when there is none)."""
        if self._buffer is not None:
            return len(self._buffer)
        if self._extern is None or self.context is None:
            return 0
        return int(_memory_data_size(self.context, ctypes.addressof(self._extern.of.memory)))

    def _grow(self, end: int) -> memoryview:
        if self._buffer is None:
            if self._extern is None:
                self._find()
            mem = ctypes.addressof(self._extern.of.memory)
            size = int(_memory_data_size(self.context, mem))
            if size != self.size:
                self.view = _memory_view(_memory_data(self.context, mem), size, _PyBUF_WRITE)
                self.size = size
        if end > self.size:
            raise fs_error(EFAULT)
        return self.view

    def _find(self) -> None:
        if self.caller is None:
            raise GuestTrap("the guest calls an I/O import outside of a call")
        if self.context is None:
            self.context = _caller_context(self.caller)
        item = _ffi.wasmtime_extern_t()
        if (
            not _caller_export_get(self.caller, b"memory", 6, ctypes.addressof(item))
            or item.kind != _ffi.WASMTIME_EXTERN_MEMORY.value
        ):
            raise GuestTrap("the guest calls an I/O import but exports no 'memory'")
        self._extern = item

    def read(self, ptr: int, n: int) -> bytes:
        end = ptr + n
        view = self.view if end <= self.size else self._grow(end)
        return view[ptr:end].tobytes()

    def check(self, ptr: int, n: int) -> None:
        """EFAULT unless ``n`` bytes at ``ptr`` are inside memory."""
        if ptr + n > self.size:
            self._grow(ptr + n)

    def write(self, ptr: int, data: bytes) -> None:
        end = ptr + len(data)
        view = self.view if end <= self.size else self._grow(end)
        view[ptr:end] = data

    def unpack(self, layout: struct.Struct, ptr: int) -> tuple[Any, ...]:
        end = ptr + layout.size
        return layout.unpack_from(self.view if end <= self.size else self._grow(end), ptr)

    def u32(self, ptr: int, value: int) -> None:
        end = ptr + 4
        _U32.pack_into(self.view if end <= self.size else self._grow(end), ptr, value & 0xFFFFFFFF)

    def u64(self, ptr: int, value: int) -> None:
        end = ptr + 8
        _U64.pack_into(self.view if end <= self.size else self._grow(end), ptr, value & (2**64 - 1))


def _address(pointer: Any) -> int:
    return ctypes.cast(pointer, ctypes.c_void_p).value or 0


def _raise_error(error: int) -> None:
    raise wasmtime.WasmtimeError._from_ptr(
        ctypes.cast(error, ctypes.POINTER(_ffi.wasmtime_error_t))
    )


def _raise_trap(trap: ctypes.c_void_p) -> None:
    raise wasmtime.Trap._from_ptr(ctypes.cast(trap, ctypes.POINTER(_ffi.wasm_trap_t)))


class GuestStore:
    """One run's wasmtime store, instance and ``_start`` call, straight through the C API.

    ``wasmtime.Store`` and ``Instance`` wrap every step (and every export) in Python objects,
    which for a short task cost more than the task; this does the same calls bare. It is also
    a "storelike" (``_context()``), so wasmtime-py objects (a ``Global``) can read from it.
    Call :meth:`close` when done (the context pointer dies with it).
    """

    __slots__ = ("_instance", "_ptr", "_typed", "context")

    def __init__(
        self,
        engine: wasmtime.Engine,
        *,
        fuel: int,
        epoch_deadline: int,
        limits: tuple[int, int, int, int, int],
    ) -> None:
        """``limits``: memory bytes, table elements, instances, tables, memories."""
        self._ptr = _store_new(_address(engine.ptr()), None, None)
        self.context: int = _store_context(self._ptr)
        self._typed: Any = None
        self._instance = _ffi.wasmtime_instance_t()
        error = _set_fuel(self.context, fuel)
        if error:
            self.close()
            _raise_error(error)
        _store_limiter(self._ptr, *limits)
        _set_epoch_deadline(self.context, epoch_deadline)

    def _context(self) -> Any:
        if self._typed is None:
            self._typed = ctypes.cast(self.context, ctypes.POINTER(_ffi.wasmtime_context_t))
        return self._typed

    def get_fuel(self) -> int:
        left = ctypes.c_uint64(0)
        error = _get_fuel(self.context, ctypes.addressof(left))
        if error:
            _raise_error(error)
        return left.value

    def instantiate(self, pre: wasmtime.InstancePre) -> None:
        """Instantiate ``pre`` (running its start function, if any); Trap or WasmtimeError."""
        trap = ctypes.c_void_p()
        error = _pre_instantiate(
            _address(pre.ptr()),
            self.context,
            ctypes.addressof(self._instance),
            ctypes.addressof(trap),
        )
        if error:
            _raise_error(error)
        if trap.value:
            _raise_trap(trap)

    def export(self, name: bytes) -> Any:
        """The instance's export ``name`` as a raw ``wasmtime_extern_t``, or None."""
        item = _ffi.wasmtime_extern_t()
        found = _instance_export_get(
            self.context, ctypes.addressof(self._instance), name, len(name), ctypes.addressof(item)
        )
        return item if found else None

    def memory(self) -> Any:
        """The ``memory`` export, or None when the instance exports no memory by that name."""
        item = self.export(b"memory")
        return item if item is not None and item.kind == _MEMORY_KIND else None

    def function(self, name: bytes) -> Any:
        """The function export ``name`` (raw), or None."""
        item = self.export(name)
        return item if item is not None and item.kind == _FUNC_KIND else None

    def global_value(self, name: bytes) -> Any:
        """The value of the global export ``name``, or None when there is no such global."""
        item = self.export(name)
        found = wrap_extern(item) if item is not None else None
        return found.value(self) if isinstance(found, wasmtime.Global) else None

    def call(self, func: Any) -> None:
        """Call a ``() -> ()`` function export (a raw extern of kind func)."""
        if func.kind != _FUNC_KIND:
            raise TypeError("not a function export")
        trap = ctypes.c_void_p()
        error = _func_call(
            self.context, ctypes.addressof(func.of.func), None, 0, None, 0, ctypes.addressof(trap)
        )
        if error:
            _raise_error(error)
        if trap.value:
            _raise_trap(trap)

    def call_entry(self, func: Any) -> int:
        """Call a ``() -> ()`` or ``() -> i32`` function export (a reactor's ``run``); its
        i32, if any, is the exit status."""
        wrapped = wrap_extern(func)
        value = wrapped(self)
        return value if isinstance(value, int) else 0

    def close(self) -> None:
        if self._ptr:
            _store_delete(self._ptr)
            self._ptr = None
            self._typed = None

    def __del__(self) -> None:
        self.close()


class HostContext(Protocol):
    """What the trampoline needs of a run's context."""

    memory_window: GuestMemory
    budget: IOBudget
    #: The exception a host function unwound the guest with (re-raised by the executor).
    pending: BaseException | None


#: (param kinds, result kinds, method): kinds are "i" (i32) and "l" (i64); a method takes the
#: context and the arguments (i32 as unsigned) and returns the i32 result, if any.
Signature = tuple[str, str, Callable[..., Any]]

_local = threading.local()


class bind:
    """Make ``ctx`` the context of host calls made on this thread while the body runs."""

    __slots__ = ("_ctx", "_previous")

    def __init__(self, ctx: HostContext) -> None:
        self._ctx = ctx

    def __enter__(self) -> Any:
        self._previous = getattr(_local, "ctx", None)
        _local.ctx = self._ctx
        return self._ctx

    def __exit__(self, *exc: object) -> None:
        _local.ctx = self._previous


def _trap(ctx: HostContext | None, exc: BaseException) -> int:
    """Unwind the guest with a trap; the executor re-raises ``exc`` when the call returns.

    The exception waits on the run's own context (thread-safe), not in wasmtime-py's
    process-wide ``LAST_EXCEPTION``, which is used only outside of any run.
    """
    if ctx is not None and ctx.pending is None:
        ctx.pending = exc
    elif ctx is None:
        _wasmtime_func.LAST_EXCEPTION = exc
    msg = HOST_TRAP_MESSAGE.encode()
    return _trap_new(msg, len(msg)) or 0


def _charge_fuel(mem: GuestMemory, caller: int, cost: int) -> None:
    """Take ``cost`` fuel from the calling store; OutOfFuel when it has less."""
    context = mem.context
    if context is None:
        context = mem.context = _caller_context(caller)
    left = mem.fuel
    _get_fuel(context, ctypes.addressof(left))
    if left.value < cost:
        _set_fuel(context, 0)
        raise OutOfFuel(
            "the guest used all the fuel its scope allows (cpu_cycles); raise cpu_cycles"
        )
    _set_fuel(context, left.value - cost)


def _host_function(name: str, signature: Signature, returns_errno: bool) -> Any:
    """One host function as a raw wasmtime unchecked callback (see the module docstring).

    i32 arguments are unsigned (guest pointers and sizes are); a :class:`WasiError` is the
    call's errno for WASI calls and a trap for the ICN ABI.
    """
    params, results, method = signature
    layout = struct.Struct("<" + "".join("I12x" if p == "i" else "q8x" for p in params))
    width = layout.size
    unpack = layout.unpack
    has_result = bool(results)
    call_fuel, per_fuel = HOST_CALL_FUEL, IO_BYTES_PER_FUEL

    def trampoline(env: int, caller: int, values: int, n: int) -> int:
        ctx = getattr(_local, "ctx", None)
        try:
            if ctx is None:
                raise ExecutionError("a host function was called outside of a meshbench run")
            args = unpack(_string_at(values, width)) if width else ()
            mem = ctx.memory_window
            mem.caller = caller
            budget = ctx.budget
            io_before = budget.used
            try:
                result = method(ctx, *args)
            except WasiError as e:
                if not returns_errno:
                    raise GuestTrap(f"the guest passed a bad pointer to {name}") from None
                result = e.errno
            _charge_fuel(mem, caller, call_fuel + (budget.used - io_before) // per_fuel)
            if has_result:
                _I32.from_address(values).value = result
            return 0
        except BaseException as e:
            return _trap(ctx, e)

    return _callback_t(trampoline)


#: ctypes callbacks must outlive the linker that points at them: the process.
_KEEP_ALIVE: list[Any] = []
_NO_FINALIZER = ctypes.cast(0, ctypes.CFUNCTYPE(None, ctypes.c_void_p))


def define(
    linker: wasmtime.Linker,
    signatures: Mapping[tuple[str, str], Signature],
    errno_modules: frozenset[str],
) -> None:
    """Define every ``(module, name) -> signature`` on ``linker``; functions of a module in
    ``errno_modules`` that return an i32 answer a refused call with its errno."""
    kinds = {"i": wasmtime.ValType.i32, "l": wasmtime.ValType.i64}
    for (module, name), signature in signatures.items():
        params, results, _method = signature
        ty = wasmtime.FuncType([kinds[p]() for p in params], [kinds[r]() for r in results])
        returns_errno = module in errno_modules and results == "i"
        callback = _host_function(_method.__name__, signature, returns_errno)
        raw = ctypes.cast(callback, _ffi.wasmtime_func_unchecked_callback_t)
        _KEEP_ALIVE.append((callback, raw, ty))
        m, n = module.encode(), name.encode()
        error = _ffi.wasmtime_linker_define_func_unchecked(
            linker.ptr(), m, len(m), n, len(n), ty.ptr(), raw, None, _NO_FINALIZER
        )
        if error:
            raise wasmtime.WasmtimeError._from_ptr(error)
