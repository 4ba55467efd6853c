"""A deterministic ``wasi_snapshot_preview1`` and the ICN guest ABI, as wasmtime host functions.

wasmtime's built-in WASI reads the host's clocks, entropy and directories; a verifier could
never reproduce that. So every import a guest may use is implemented here, over a
:class:`GuestContext` that holds all the state of one run:

- **argv** as given (``argv[0]`` is always ``main.wasm``); an **empty environment**;
- **stdin** is the task input; **stdout** and **stderr** are captured;
- **files**: read-only input directories mapped to guest paths, a private writable ``/tmp``
  (plus the output file's directory) that lives in memory and is dropped after the run;
  directory listings are sorted by name, inode numbers are assigned in creation order, and
  every timestamp is :data:`EPOCH_NS`;
- **clocks** are virtual: every ``clock_time_get`` advances a counter by
  :data:`CLOCK_STEP_NS`; ``realtime = EPOCH_NS + counter``; ``poll_oneoff`` sleeps advance the
  counter instead of waiting;
- **random** bytes come from SHA-256 in counter mode over the task seed
  (:class:`SeededRandom`), which no Python or OS version can change;
- **host calls cost fuel**: :data:`~meshbench.exec.engine.HOST_CALL_FUEL` per call plus
  one per :data:`~meshbench.exec.engine.IO_BYTES_PER_FUEL` bytes it moved;
- **I/O budget**: every byte read from stdin/files/``input_load`` and written to
  stdout/stderr/files/``output_store``/``log``, and every random byte, is charged against
  ``io_mb``; going over raises :class:`~meshbench.core.errors.IOLimitExceeded` at once, so a
  guest writing gigabytes never makes the host hold them;
- sockets, links and signals answer ``ENOTSUP``/``ENOSYS``; a path that climbs out of its
  preopened directory answers ``ENOTCAPABLE``.

ICN guest ABI (module ``env``): ``input_load(ptr, max_len) -> len`` copies up to ``max_len``
bytes of the input to ``ptr`` and returns the input's full length (call it with
``max_len = 0`` to learn the size); ``output_store(ptr, len)`` appends to the output (when a
guest calls it, its output is what it stored); ``log(level, ptr, len)`` records a log line.

The linker's host functions are defined once per process; each call finds its run's context
through a thread-local (a store runs on one thread at a time), so linking costs nothing per
task.

Layers: the files, descriptors and I/O budget are :mod:`meshbench.exec.vfs` (pure, tested
without wasm); the callbacks, guest memory access and fuel charging on wasmtime's C API are
:mod:`meshbench.exec.hostcall`; this module is the thin part between them: it decodes each
call's arguments from guest memory, asks the file system, and encodes the answer.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Mapping
from typing import Final

import wasmtime

from meshbench.exec import hostcall
from meshbench.exec.hostcall import GuestMemory, Signature, bind
from meshbench.exec.vfs import (
    EBADF,
    EINVAL,
    EISDIR,
    ESPIPE,
    Directory,
    File,
    IOBudget,
    OpenFile,
    Tree,
    VirtualFS,
    fs_error,
)

__all__ = [
    "CLOCK_STEP_NS",
    "EPOCH_NS",
    "ICN_MODULE",
    "WASI_MODULE",
    "GuestContext",
    "ProcExit",
    "SeededRandom",
    "Tree",
    "bind",
    "define_host_functions",
    "provided_imports",
    "provided_signatures",
]

WASI_MODULE: Final = "wasi_snapshot_preview1"
ICN_MODULE: Final = "env"
#: 2024-01-01T00:00:00Z: the virtual realtime clock starts here, and every file is this old.
EPOCH_NS: Final = 1_704_067_200 * 10**9
#: Each clock read advances virtual time by one microsecond.
CLOCK_STEP_NS: Final = 1_000
ARGV0: Final = "main.wasm"
HOST_TRAP_MESSAGE: Final = hostcall.HOST_TRAP_MESSAGE

# errno values of wasi_snapshot_preview1 not answered by the file system
ESUCCESS, ENOSYS, ENOTSUP = 0, 52, 58
# file types
FT_UNKNOWN, FT_DIR, FT_FILE = 0, 3, 4
ALL_RIGHTS: Final = (1 << 30) - 1
RIGHT_FD_WRITE: Final = 1 << 6
O_CREAT, O_DIRECTORY, O_EXCL, O_TRUNC = 1, 2, 4, 8
FDFLAG_APPEND: Final = 1
#: Most buffers one fd_read/fd_write may name, and the longest path.
MAX_IOVS: Final = 1024
MAX_PATH: Final = 4096


class ProcExit(Exception):
    """Raised by ``proc_exit`` to unwind the guest; carries the exit status."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


class SeededRandom:
    """SHA-256 in counter mode: block ``i`` is ``sha256(domain || seed || i as u64 be)``."""

    _DOMAIN: Final = b"meshbench/random/v1\0"

    def __init__(self, seed: bytes) -> None:
        if len(seed) != 32:
            raise ValueError("the seed is 32 bytes")
        self._prefix = hashlib.sha256(self._DOMAIN + seed)
        self._counter = 0
        self._buffer = b""

    def read(self, n: int) -> bytes:
        out = [self._buffer[:n]]
        have = len(out[0])
        self._buffer = self._buffer[n:]
        while have < n:
            h = self._prefix.copy()
            h.update(self._counter.to_bytes(8, "big"))
            self._counter += 1
            block = h.digest()
            take = min(32, n - have)
            out.append(block[:take])
            self._buffer = block[take:]
            have += take
        return b"".join(out)


_IOV = struct.Struct("<II")
_DIRENT = struct.Struct("<QQIB3x")
_FILESTAT = struct.Struct("<QQB7xQQQQQ")
_FDSTAT = struct.Struct("<BxHxxxxQQ")
_PRESTAT = struct.Struct("<BxxxI")
_EVENT = struct.Struct("<QHBxxxxxQH6x")
_SUB_HEAD = struct.Struct("<QB7x")
_SUB_CLOCK = struct.Struct("<I4xQQH6x")
_SUB_FD = struct.Struct("<I")
_STDIO_STAT: Final = _FILESTAT.pack(0, 0, FT_UNKNOWN, 1, 0, 0, 0, 0)


def _filestat(node: File | Directory) -> bytes:
    if isinstance(node, File):
        return _FILESTAT.pack(0, node.ino, FT_FILE, 1, len(node.data), *(EPOCH_NS,) * 3)
    return _FILESTAT.pack(0, node.ino, FT_DIR, 1, 0, *(EPOCH_NS,) * 3)


class GuestContext:
    """Everything one run can see and everything it produced.

    The WASI and ICN calls are its methods (arguments as the guest passed them, pointers
    unsigned); :attr:`fs` holds the files and descriptors, :attr:`memory_window` the guest's
    memory. ``GuestContext(..., memory=GuestMemory(bytearray(n)))`` runs calls without wasm.
    """

    def __init__(
        self,
        *,
        args: tuple[str, ...] = (),
        stdin: bytes = b"",
        seed: bytes = bytes(32),
        io_limit: int,
        dirs: Mapping[str, Tree] | None = None,
        scratch: tuple[str, ...] = ("/tmp",),
        memory: GuestMemory | None = None,
        free_reads: tuple[str, ...] = (),
        env: Mapping[str, str] | None = None,
    ) -> None:
        """``free_reads``: input dirs whose file reads are not charged to the I/O budget (a
        runtime's own read-only files, such as the python executor's stdlib zip). ``env``:
        the environment (empty by default; sorted by name)."""
        self.argv = [a.encode() for a in (ARGV0, *args)]
        self.environ = [f"{k}={v}".encode() for k, v in sorted((env or {}).items())]
        self.output: bytearray | None = None  # set by the first output_store
        self.logs: list[tuple[int, str]] = []
        self.random = SeededRandom(seed)
        self.clock_ns = 0
        self.budget = IOBudget(io_limit)
        self.fs = VirtualFS(
            budget=self.budget, stdin=stdin, dirs=dirs, scratch=scratch, free_reads=free_reads
        )
        self.memory_window = memory if memory is not None else GuestMemory()
        #: The exception a host function unwound the guest with (re-raised by the executor).
        self.pending: BaseException | None = None

    # -- what the run produced, and its budget (views of the parts) --
    @property
    def stdin(self) -> bytes:
        return self.fs.stdin

    @property
    def stdout(self) -> bytearray:
        return self.fs.stdout

    @property
    def stderr(self) -> bytearray:
        return self.fs.stderr

    @property
    def fds(self) -> dict[int, OpenFile]:
        return self.fs.fds

    @property
    def mounts(self) -> dict[str, Directory]:
        return self.fs.mounts

    @property
    def io_used(self) -> int:
        return self.budget.used

    @property
    def io_limit(self) -> int:
        return self.budget.limit

    def charge(self, n: int) -> None:
        self.budget.charge(n)

    def read_guest_file(self, guest_path: str) -> bytes | None:
        """The content of a file the guest left at an absolute path, or None."""
        return self.fs.read_file(guest_path)

    # -- decoding arguments --
    def _iovs(self, iovs: int, n: int) -> list[tuple[int, int]]:
        if n > MAX_IOVS:
            raise fs_error(EINVAL)
        if n == 1:
            return [self.memory_window.unpack(_IOV, iovs)]
        return list(_IOV.iter_unpack(self.memory_window.read(iovs, 8 * n)))

    def _gather(self, iovs: int, n: int) -> bytes:
        read = self.memory_window.read
        vecs = self._iovs(iovs, n)
        if len(vecs) == 1:
            return read(*vecs[0])
        return b"".join(read(p, ln) for p, ln in vecs)

    def _path(self, ptr: int, n: int) -> str:
        if n > MAX_PATH:
            raise fs_error(EINVAL)
        try:
            return self.memory_window.read(ptr, n).decode()
        except UnicodeDecodeError:
            raise fs_error(EINVAL) from None

    # -- args and environment --
    def args_sizes_get(self, argc_ptr: int, size_ptr: int) -> int:
        self.memory_window.u32(argc_ptr, len(self.argv))
        self.memory_window.u32(size_ptr, sum(len(a) + 1 for a in self.argv))
        return ESUCCESS

    def args_get(self, argv_ptr: int, buf_ptr: int) -> int:
        pointers, offset = [], buf_ptr
        for a in self.argv:
            pointers.append(offset)
            offset += len(a) + 1
        self.memory_window.write(buf_ptr, b"".join(a + b"\0" for a in self.argv))
        self.memory_window.write(argv_ptr, struct.pack(f"<{len(pointers)}I", *pointers))
        return ESUCCESS

    def environ_sizes_get(self, count_ptr: int, size_ptr: int) -> int:
        self.memory_window.u32(count_ptr, len(self.environ))
        self.memory_window.u32(size_ptr, sum(len(e) + 1 for e in self.environ))
        return ESUCCESS

    def environ_get(self, environ_ptr: int, buf_ptr: int) -> int:
        if not self.environ:
            return ESUCCESS
        pointers, offset = [], buf_ptr
        for e in self.environ:
            pointers.append(offset)
            offset += len(e) + 1
        self.memory_window.write(buf_ptr, b"".join(e + b"\0" for e in self.environ))
        self.memory_window.write(environ_ptr, struct.pack(f"<{len(pointers)}I", *pointers))
        return ESUCCESS

    # -- clocks, random, scheduling --
    def clock_res_get(self, clock_id: int, res_ptr: int) -> int:
        if clock_id not in (0, 1, 2, 3):
            return EINVAL
        self.memory_window.u64(res_ptr, CLOCK_STEP_NS)
        return ESUCCESS

    def clock_time_get(self, clock_id: int, precision: int, time_ptr: int) -> int:
        if clock_id not in (0, 1, 2, 3):
            return EINVAL
        self.clock_ns += CLOCK_STEP_NS
        self.memory_window.u64(time_ptr, self.clock_ns + (EPOCH_NS if clock_id == 0 else 0))
        return ESUCCESS

    def random_get(self, buf: int, n: int) -> int:
        self.memory_window.check(buf, n)  # bounds check before spending the budget
        self.budget.charge(n)
        self.memory_window.write(buf, self.random.read(n))
        return ESUCCESS

    def sched_yield(self) -> int:
        return ESUCCESS

    def proc_exit(self, code: int) -> None:
        raise ProcExit(code)

    def proc_raise(self, sig: int) -> int:
        return ENOSYS

    def poll_oneoff(self, in_ptr: int, out_ptr: int, nsubs: int, nevents_ptr: int) -> int:
        if nsubs <= 0 or nsubs > 4096:
            return EINVAL
        raw = self.memory_window.read(in_ptr, 48 * nsubs)
        clocks: list[tuple[int, int]] = []  # (wake time, userdata)
        ready: list[bytes] = []
        fs = self.fs
        for i in range(nsubs):
            userdata, tag = _SUB_HEAD.unpack_from(raw, 48 * i)
            if tag == 0:
                clock_id, timeout, _precision, flags = _SUB_CLOCK.unpack_from(raw, 48 * i + 16)
                if flags & 1:  # absolute
                    wake = timeout - (EPOCH_NS if clock_id == 0 else 0)
                else:
                    wake = self.clock_ns + timeout
                clocks.append((wake, userdata))
            elif tag in (1, 2):
                (fd,) = _SUB_FD.unpack_from(raw, 48 * i + 16)
                h = fs.fds.get(fd)
                err = ESUCCESS if h is not None else EBADF
                nbytes = len(fs.stdin) - fs.stdin_pos if h and h.kind == "stdin" else 0
                ready.append(_EVENT.pack(userdata, err, tag, nbytes, 0))
            else:
                return EINVAL
        if not ready and clocks:  # nothing else can happen: sleep until the first timer
            wake = min(w for w, _ in clocks)
            self.clock_ns = max(self.clock_ns, wake)
            ready = [_EVENT.pack(u, ESUCCESS, 0, 0, 0) for w, u in clocks if w <= self.clock_ns]
        self.memory_window.write(out_ptr, b"".join(ready))
        self.memory_window.u32(nevents_ptr, len(ready))
        return ESUCCESS

    # -- file descriptors --
    def fd_write(self, fd: int, iovs: int, n: int, nwritten_ptr: int) -> int:
        h = self.fs.handle(fd)
        if not h.writable:
            return EBADF
        data = self._gather(iovs, n)
        self.fs.write(h, data)
        self.memory_window.u32(nwritten_ptr, len(data))
        return ESUCCESS

    def fd_pwrite(self, fd: int, iovs: int, n: int, offset: int, nwritten_ptr: int) -> int:
        h = self.fs.handle(fd)
        if h.kind != "file":
            return ESPIPE if h.kind != "dir" else EISDIR
        if not h.writable:
            return EBADF
        if offset < 0:
            return EINVAL
        data = b"".join(self.memory_window.read(p, ln) for p, ln in self._iovs(iovs, n))
        self.fs.write(h, data, offset)
        self.memory_window.u32(nwritten_ptr, len(data))
        return ESUCCESS

    def fd_read(self, fd: int, iovs: int, n: int, nread_ptr: int) -> int:
        return self._read_into(self.fs.handle(fd), iovs, n, None, nread_ptr)

    def fd_pread(self, fd: int, iovs: int, n: int, offset: int, nread_ptr: int) -> int:
        h = self.fs.handle(fd)
        if h.kind != "file":
            return ESPIPE if h.kind != "dir" else EISDIR
        return self._read_into(h, iovs, n, offset, nread_ptr)

    def _read_into(self, h: OpenFile, iovs: int, n: int, offset: int | None, nread_ptr: int) -> int:
        fs = self.fs
        if not h.readable:
            return EBADF
        if offset is not None and offset < 0:
            return EINVAL
        if h.kind not in ("stdin", "file"):
            return EISDIR if h.kind == "dir" else EBADF
        total = fs.read_into(h, self._iovs(iovs, n), self.memory_window.write, offset)
        self.memory_window.u32(nread_ptr, total)
        return ESUCCESS

    def fd_seek(self, fd: int, offset: int, whence: int, newoffset_ptr: int) -> int:
        pos = self.fs.seek(self.fs.handle(fd), offset, whence)
        self.memory_window.u64(newoffset_ptr, pos)
        return ESUCCESS

    def fd_tell(self, fd: int, offset_ptr: int) -> int:
        h = self.fs.handle(fd)
        if h.kind != "file":
            return ESPIPE
        self.memory_window.u64(offset_ptr, h.pos)
        return ESUCCESS

    def fd_close(self, fd: int) -> int:
        self.fs.close(fd)
        return ESUCCESS

    def fd_renumber(self, fd: int, to: int) -> int:
        self.fs.renumber(fd, to)
        return ESUCCESS

    def fd_fdstat_get(self, fd: int, buf: int) -> int:
        h = self.fs.handle(fd)
        ftype = {"dir": FT_DIR, "file": FT_FILE}.get(h.kind, FT_UNKNOWN)
        flags = FDFLAG_APPEND if h.append else 0
        self.memory_window.write(buf, _FDSTAT.pack(ftype, flags, ALL_RIGHTS, ALL_RIGHTS))
        return ESUCCESS

    def fd_fdstat_set_flags(self, fd: int, flags: int) -> int:
        self.fs.set_append(fd, bool(flags & FDFLAG_APPEND))
        return ESUCCESS

    def fd_fdstat_set_rights(self, fd: int, base: int, inh: int) -> int:
        self.fs.handle(fd)
        return ESUCCESS

    def fd_prestat_get(self, fd: int, buf: int) -> int:
        h = self.fs.handle(fd)
        if h.preopen is None:
            return EBADF
        self.memory_window.write(buf, _PRESTAT.pack(0, len(h.preopen.encode())))
        return ESUCCESS

    def fd_prestat_dir_name(self, fd: int, path: int, n: int) -> int:
        h = self.fs.handle(fd)
        if h.preopen is None:
            return EBADF
        name = h.preopen.encode()
        if n < len(name):
            return EINVAL
        self.memory_window.write(path, name)
        return ESUCCESS

    def fd_filestat_get(self, fd: int, buf: int) -> int:
        h = self.fs.handle(fd)
        self.memory_window.write(buf, _STDIO_STAT if h.node is None else _filestat(h.node))
        return ESUCCESS

    def fd_filestat_set_size(self, fd: int, size: int) -> int:
        self.fs.truncate(self.fs.handle(fd), size)
        return ESUCCESS

    def fd_filestat_set_times(self, fd: int, atim: int, mtim: int, flags: int) -> int:
        self.fs.handle(fd)
        return ESUCCESS  # timestamps are fixed, so setting them is a no-op

    def fd_noop(self, fd: int, *rest: int) -> int:
        self.fs.handle(fd)
        return ESUCCESS

    def fd_readdir(self, fd: int, buf: int, n: int, cookie: int, used_ptr: int) -> int:
        entries = self.fs.listing(self.fs.handle(fd))
        out = bytearray()
        for i in range(max(cookie, 0), len(entries)):
            name, node = entries[i]
            raw = name.encode()
            ftype = FT_DIR if isinstance(node, Directory) else FT_FILE
            out += _DIRENT.pack(i + 1, node.ino, len(raw), ftype) + raw
            if len(out) >= n:
                break
        out = out[:n]
        self.memory_window.write(buf, bytes(out))
        self.memory_window.u32(used_ptr, len(out))
        return ESUCCESS

    # -- paths --
    def path_open(
        self,
        fd: int,
        dirflags: int,
        path_ptr: int,
        path_len: int,
        oflags: int,
        rights: int,
        inheriting: int,
        fdflags: int,
        fd_ptr: int,
    ) -> int:
        new_fd = self.fs.open(
            fd,
            self._path(path_ptr, path_len),
            create=bool(oflags & O_CREAT),
            exclusive=bool(oflags & O_EXCL),
            truncate=bool(oflags & O_TRUNC),
            directory=bool(oflags & O_DIRECTORY),
            write=bool(rights & RIGHT_FD_WRITE),
            append=bool(fdflags & FDFLAG_APPEND),
        )
        self.memory_window.u32(fd_ptr, new_fd)
        return ESUCCESS

    def path_filestat_get(self, fd: int, flags: int, path_ptr: int, n: int, buf: int) -> int:
        node = self.fs.stat_path(fd, self._path(path_ptr, n))
        self.memory_window.write(buf, _filestat(node))
        return ESUCCESS

    def path_filestat_set_times(
        self, fd: int, flags: int, path_ptr: int, n: int, atim: int, mtim: int, fst_flags: int
    ) -> int:
        self.fs.stat_path(fd, self._path(path_ptr, n))
        return ESUCCESS

    def path_create_directory(self, fd: int, ptr: int, n: int) -> int:
        self.fs.mkdir(fd, self._path(ptr, n))
        return ESUCCESS

    def path_unlink_file(self, fd: int, ptr: int, n: int) -> int:
        self.fs.unlink(fd, self._path(ptr, n))
        return ESUCCESS

    def path_remove_directory(self, fd: int, ptr: int, n: int) -> int:
        self.fs.rmdir(fd, self._path(ptr, n))
        return ESUCCESS

    def path_rename(
        self, fd: int, old_ptr: int, old_len: int, new_fd: int, new_ptr: int, new_len: int
    ) -> int:
        old = self._path(old_ptr, old_len)
        # the old path is resolved before the new one is read, as the guest named them
        self.fs.resolve(fd, old)
        self.fs.rename(fd, old, new_fd, self._path(new_ptr, new_len))
        return ESUCCESS

    def path_readlink(
        self, fd: int, ptr: int, n: int, buf: int, buf_len: int, used_ptr: int
    ) -> int:
        self.fs.readlink(fd, self._path(ptr, n))
        return ESUCCESS  # pragma: no cover (readlink always refuses: there are no links)

    def unsupported(self, *args: int) -> int:
        return ENOTSUP

    # -- the ICN guest ABI --
    def input_load(self, ptr: int, max_len: int) -> int:
        stdin = self.fs.stdin
        data = stdin[:max_len]
        self.budget.charge(len(data))
        self.memory_window.write(ptr, data)
        return min(len(stdin), 2**31 - 1)

    def output_store(self, ptr: int, n: int) -> None:
        self.budget.charge(n)
        data = self.memory_window.read(ptr, n)
        if self.output is None:
            self.output = bytearray()
        self.output += data

    def log(self, level: int, ptr: int, n: int) -> None:
        self.budget.charge(n)
        self.logs.append((level, self.memory_window.read(ptr, n).decode("utf-8", "replace")))


# --- linking ----------------------------------------------------------------------------
#: (module, name) -> (param kinds, result kinds, method); "i" = i32, "l" = i64.
_SIGNATURES: Final[dict[tuple[str, str], Signature]] = {}

G = GuestContext
for _name, _params, _method in [
    ("args_get", "ii", G.args_get),
    ("args_sizes_get", "ii", G.args_sizes_get),
    ("environ_get", "ii", G.environ_get),
    ("environ_sizes_get", "ii", G.environ_sizes_get),
    ("clock_res_get", "ii", G.clock_res_get),
    ("clock_time_get", "ili", G.clock_time_get),
    ("fd_advise", "illi", G.fd_noop),
    ("fd_allocate", "ill", G.fd_noop),
    ("fd_close", "i", G.fd_close),
    ("fd_datasync", "i", G.fd_noop),
    ("fd_fdstat_get", "ii", G.fd_fdstat_get),
    ("fd_fdstat_set_flags", "ii", G.fd_fdstat_set_flags),
    ("fd_fdstat_set_rights", "ill", G.fd_fdstat_set_rights),
    ("fd_filestat_get", "ii", G.fd_filestat_get),
    ("fd_filestat_set_size", "il", G.fd_filestat_set_size),
    ("fd_filestat_set_times", "illi", G.fd_filestat_set_times),
    ("fd_pread", "iiili", G.fd_pread),
    ("fd_prestat_get", "ii", G.fd_prestat_get),
    ("fd_prestat_dir_name", "iii", G.fd_prestat_dir_name),
    ("fd_pwrite", "iiili", G.fd_pwrite),
    ("fd_read", "iiii", G.fd_read),
    ("fd_readdir", "iiili", G.fd_readdir),
    ("fd_renumber", "ii", G.fd_renumber),
    ("fd_seek", "ilii", G.fd_seek),
    ("fd_sync", "i", G.fd_noop),
    ("fd_tell", "ii", G.fd_tell),
    ("fd_write", "iiii", G.fd_write),
    ("path_create_directory", "iii", G.path_create_directory),
    ("path_filestat_get", "iiiii", G.path_filestat_get),
    ("path_filestat_set_times", "iiiilli", G.path_filestat_set_times),
    ("path_link", "iiiiiii", G.unsupported),
    ("path_open", "iiiiillii", G.path_open),
    ("path_readlink", "iiiiii", G.path_readlink),
    ("path_remove_directory", "iii", G.path_remove_directory),
    ("path_rename", "iiiiii", G.path_rename),
    ("path_symlink", "iiiii", G.unsupported),
    ("path_unlink_file", "iii", G.path_unlink_file),
    ("poll_oneoff", "iiii", G.poll_oneoff),
    ("proc_raise", "i", G.proc_raise),
    ("sched_yield", "", G.sched_yield),
    ("random_get", "ii", G.random_get),
    ("sock_accept", "iii", G.unsupported),
    ("sock_recv", "iiiiii", G.unsupported),
    ("sock_send", "iiiii", G.unsupported),
    ("sock_shutdown", "ii", G.unsupported),
]:
    _SIGNATURES[(WASI_MODULE, _name)] = (_params, "i", _method)
_SIGNATURES[(WASI_MODULE, "proc_exit")] = ("i", "", G.proc_exit)
_SIGNATURES[(ICN_MODULE, "input_load")] = ("ii", "i", G.input_load)
_SIGNATURES[(ICN_MODULE, "output_store")] = ("ii", "", G.output_store)
_SIGNATURES[(ICN_MODULE, "log")] = ("iii", "", G.log)
del G


def define_host_functions(linker: wasmtime.Linker) -> None:
    """Define every provided import on ``linker`` (once per linker)."""
    hostcall.define(linker, _SIGNATURES, frozenset({WASI_MODULE}))


def provided_imports() -> frozenset[tuple[str, str]]:
    """The (module, name) pairs a guest may import."""
    return frozenset(_SIGNATURES)


def provided_signatures() -> dict[tuple[str, str], tuple[str, str]]:
    """Each import a guest may use, with its (param kinds, result kinds): "i" i32, "l" i64."""
    return {key: (params, results) for key, (params, results, _m) in _SIGNATURES.items()}
