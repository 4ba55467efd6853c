"""File-system calls that keep the GIL, for the authority's driver thread.

``os.replace`` and ``os.mkdir`` let go of the GIL around their system call, as every
blocking call in CPython does. A rename or a mkdir takes ~10-20 us, but on the driver each
let-go cost a wait for the GIL (a busy thread of the node took it) and then for the CPU:
under ``bench mesh`` a revealed output's rename into the blob store took the driver 0.7 ms of
wall time, a new shard folder's mkdir 1.3 ms (cProfile, wall clock). Called through
:class:`ctypes.PyDLL` on the C library the GIL is held; errors are the same ``OSError``
subclasses (``FileNotFoundError``, ``FileExistsError``...). Where there is no C library to
call (not POSIX), they are ``os.replace`` and ``os.mkdir``.
"""

from __future__ import annotations

import ctypes
import os
from typing import Any

__all__ = ["mkdir", "rename"]


def _libc() -> Any:
    if os.name != "posix":
        return None
    try:
        lib = ctypes.PyDLL(None, use_errno=True)
        lib.rename.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
        lib.rename.restype = ctypes.c_int
        lib.mkdir.argtypes = [ctypes.c_char_p, ctypes.c_uint]
        lib.mkdir.restype = ctypes.c_int
    except (OSError, AttributeError):
        return None
    return lib


_LIBC = _libc()


def _raise(path: str | os.PathLike[str], other: str | os.PathLike[str] | None = None) -> None:
    err = ctypes.get_errno()
    second = None if other is None else os.fsdecode(other)
    raise OSError(err, os.strerror(err), os.fsdecode(path), None, second)


def rename(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    """``os.replace(src, dst)``, holding the GIL (one ``rename(2)``)."""
    if _LIBC is None:
        os.replace(src, dst)
        return
    if _LIBC.rename(os.fsencode(src), os.fsencode(dst)) != 0:
        _raise(src, dst)


def mkdir(path: str | os.PathLike[str], mode: int = 0o777) -> None:
    """``os.mkdir(path, mode)``, holding the GIL (one ``mkdir(2)``)."""
    if _LIBC is None:
        os.mkdir(path, mode)
        return
    if _LIBC.mkdir(os.fsencode(path), mode) != 0:
        _raise(path)
