"""The in-memory file system of one guest run: files, directories, descriptors, preopens.

Pure Python with no wasm in sight, so every rule here is tested directly
(``tests/exec/test_vfs.py``); :mod:`meshbench.exec.wasi` translates WASI calls into these
operations and the answers back into errno values.

- **Mounts**: read-only input directories (trees of bytes) and writable scratch directories,
  each preopened on a descriptor from 3 up, in path order.
- **Paths** resolve relative to a directory descriptor; an absolute path, or a ``..`` that
  climbs above the descriptor's directory, is :data:`ENOTCAPABLE`. There are no symbolic
  links (creating one is refused, reading one is ``EINVAL``), so nothing can point outside.
- **Determinism**: inode numbers are given in creation order, directory listings are sorted
  by name, the lowest free descriptor is used, and every timestamp is the same.
- **I/O budget**: every byte read or written (and every byte a file grows by) is charged to
  an :class:`IOBudget` before it moves; going over raises
  :class:`~meshbench.core.errors.IOLimitExceeded` at once.

Operations that fail raise :class:`~meshbench.core.errors.WasiError` carrying a WASI
errno and change nothing (except that bytes already moved stay charged).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Final

from meshbench.core.errors import ExecutionError, IOLimitExceeded, WasiError

__all__ = [
    "EBADF",
    "EBIG",
    "EEXIST",
    "EFAULT",
    "EINVAL",
    "EISDIR",
    "ENOENT",
    "ENOTCAPABLE",
    "ENOTDIR",
    "ENOTEMPTY",
    "EROFS",
    "ESPIPE",
    "MAX_OPEN_FILES",
    "Directory",
    "File",
    "IOBudget",
    "OpenFile",
    "Tree",
    "VirtualFS",
]

#: An input directory: names to file contents or to sub-directories.
Tree = Mapping[str, "bytes | Tree"]

# errno values of wasi_snapshot_preview1 (the ones the file system answers)
EBIG, EBADF, EEXIST, EFAULT, EINVAL, EISDIR = 1, 8, 20, 21, 28, 31
ENOENT, ENOTDIR, ENOTEMPTY, EROFS, ESPIPE, ENOTCAPABLE = 44, 54, 55, 69, 70, 76

#: Descriptors a guest may hold open (opening more answers ``EBIG``).
MAX_OPEN_FILES: Final = 1024

# what a descriptor refers to
STDIN, STDOUT, STDERR, FILE, DIR = "stdin", "stdout", "stderr", "file", "dir"

_MESSAGES: Final = {
    EBIG: "too many open files",
    EBADF: "bad file descriptor",
    EEXIST: "file exists",
    EFAULT: "bad address",
    EINVAL: "invalid argument",
    EISDIR: "is a directory",
    ENOENT: "no such file or directory",
    ENOTDIR: "not a directory",
    ENOTEMPTY: "directory not empty",
    EROFS: "read-only file system",
    ESPIPE: "not seekable",
    ENOTCAPABLE: "outside the preopened directory",
}


def fs_error(errno: int) -> WasiError:
    """The typed error for ``errno`` (a WASI errno value)."""
    return WasiError(errno, _MESSAGES.get(errno, f"errno {errno}"))


class IOBudget:
    """Bytes of I/O one run may still move; shared by the file system and the other calls."""

    __slots__ = ("limit", "used")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def charge(self, n: int) -> None:
        if self.used + n > self.limit:
            raise IOLimitExceeded(
                f"the guest's I/O passed its budget of {self.limit} bytes "
                f"({self.used} used, {n} more asked); raise io_mb"
            )
        self.used += n


class _Node:
    __slots__ = ("ino", "writable")

    def __init__(self, ino: int, writable: bool) -> None:
        self.ino = ino
        self.writable = writable


class File(_Node):
    """A regular file: its bytes live in memory."""

    __slots__ = ("data",)

    def __init__(self, ino: int, writable: bool, data: bytes = b"") -> None:
        super().__init__(ino, writable)
        # read-only files share the caller's bytes (a 54 MB stdlib zip is not copied per run)
        self.data: bytes | bytearray = bytearray(data) if writable else bytes(data)


class Directory(_Node):
    """A directory: names to files and sub-directories."""

    __slots__ = ("entries",)

    def __init__(self, ino: int, writable: bool) -> None:
        super().__init__(ino, writable)
        self.entries: dict[str, File | Directory] = {}


Node = File | Directory


class OpenFile:
    """What a descriptor refers to, and where it stands."""

    __slots__ = ("append", "kind", "node", "pos", "preopen", "readable", "writable")

    def __init__(
        self,
        kind: str,
        node: Node | None = None,
        *,
        readable: bool = True,
        writable: bool = False,
        append: bool = False,
        preopen: str | None = None,
    ) -> None:
        self.kind = kind  # STDIN | STDOUT | STDERR | FILE | DIR
        self.node = node
        self.pos = 0
        self.readable = readable
        self.writable = writable
        self.append = append
        self.preopen = preopen


def _inos(node: Node) -> list[int]:
    """The inode numbers of ``node`` and everything under it."""
    if not isinstance(node, Directory):
        return [node.ino]
    return [node.ino, *(i for child in node.entries.values() for i in _inos(child))]


class VirtualFS:
    """The files, directories and descriptors one run can see; stdin, stdout and stderr."""

    def __init__(
        self,
        *,
        budget: IOBudget,
        stdin: bytes = b"",
        dirs: Mapping[str, Tree] | None = None,
        scratch: tuple[str, ...] = ("/tmp",),
        free_reads: tuple[str, ...] = (),
    ) -> None:
        """``free_reads``: input dirs whose file reads are not charged to the I/O budget (a
        runtime's own read-only files, such as the python executor's stdlib zip)."""
        self.budget = budget
        self.stdin = stdin
        self.stdin_pos = 0
        self.stdout = bytearray()
        self.stderr = bytearray()
        self._next_ino = 1
        self.fds: dict[int, OpenFile] = {
            0: OpenFile(STDIN),
            1: OpenFile(STDOUT, readable=False, writable=True),
            2: OpenFile(STDERR, readable=False, writable=True),
        }
        self.mounts: dict[str, Directory] = {}
        inputs = dirs or {}
        for guest_path in sorted({*inputs, *scratch}):
            if guest_path in inputs and guest_path in scratch:
                raise ExecutionError(f"{guest_path} cannot be both an input and a scratch dir")
            root = self._new_dir(writable=guest_path in scratch)
            if guest_path in inputs:
                self._fill(root, inputs[guest_path])
            self.mounts[guest_path] = root
            self.fds[len(self.fds)] = OpenFile(
                DIR, root, writable=root.writable, preopen=guest_path
            )
        self._free_inos = frozenset(
            ino for p in free_reads if p in inputs for ino in _inos(self.mounts[p])
        )

    # -- construction --
    def _new_ino(self) -> int:
        self._next_ino += 1
        return self._next_ino

    def _new_dir(self, writable: bool) -> Directory:
        return Directory(self._new_ino(), writable)

    def _fill(self, root: Directory, tree: Tree) -> None:
        for name in sorted(tree):
            if not name or "/" in name or name in (".", ".."):
                raise ExecutionError(f"invalid file name {name!r} in an input directory")
            value = tree[name]
            if isinstance(value, bytes | bytearray | memoryview):
                root.entries[name] = File(self._new_ino(), root.writable, bytes(value))
            else:
                sub = self._new_dir(root.writable)
                self._fill(sub, value)
                root.entries[name] = sub

    # -- results --
    def read_file(self, guest_path: str) -> bytes | None:
        """The content of the file at an absolute guest path, or None."""
        for mount in sorted(self.mounts, key=len, reverse=True):
            if guest_path.startswith(mount.rstrip("/") + "/"):
                node: Node | None = self.mounts[mount]
                for part in guest_path[len(mount) :].strip("/").split("/"):
                    if not isinstance(node, Directory):
                        return None
                    node = node.entries.get(part)
                return bytes(node.data) if isinstance(node, File) else None
        return None

    def walk(self) -> Iterator[tuple[str, Node]]:
        """Every (absolute guest path, node) reachable from a mount, in path order."""
        stack = [(path, root) for path, root in sorted(self.mounts.items(), reverse=True)]
        while stack:
            path, node = stack.pop()
            yield path, node
            if isinstance(node, Directory):
                for name in sorted(node.entries, reverse=True):
                    stack.append((f"{path.rstrip('/')}/{name}", node.entries[name]))

    # -- descriptors --
    def handle(self, fd: int) -> OpenFile:
        h = self.fds.get(fd)
        if h is None:
            raise fs_error(EBADF)
        return h

    def close(self, fd: int) -> None:
        self.handle(fd)
        del self.fds[fd]

    def renumber(self, fd: int, to: int) -> None:
        h = self.handle(fd)
        self.handle(to)
        self.fds[to] = h
        del self.fds[fd]

    def set_append(self, fd: int, append: bool) -> None:
        self.handle(fd).append = append

    # -- paths --
    def resolve(self, fd: int, path: str) -> tuple[Directory, str | None, Node | None]:
        """(parent directory, final name or None for '.'/'..', the existing node or None).

        ``path`` is relative to the directory open on ``fd``; it may not start with ``/`` nor
        climb above that directory with ``..`` (both :data:`ENOTCAPABLE`). Every component but
        the last must be an existing directory (``ENOENT``, ``ENOTDIR``).
        """
        h = self.handle(fd)
        if not isinstance(h.node, Directory):
            raise fs_error(ENOTDIR)
        if path.startswith("/"):
            raise fs_error(ENOTCAPABLE)
        stack: list[Directory] = [h.node]
        parts = path.split("/")
        last = len(parts) - 1
        for i, part in enumerate(parts):
            if part in ("", "."):
                if i == last:
                    return stack[-1], None, stack[-1]
                continue
            if part == "..":
                if len(stack) == 1:
                    raise fs_error(ENOTCAPABLE)
                stack.pop()
                if i == last:
                    return stack[-1], None, stack[-1]
                continue
            node = stack[-1].entries.get(part)
            if i == last:
                return stack[-1], part, node
            if node is None:
                raise fs_error(ENOENT)
            if not isinstance(node, Directory):
                raise fs_error(ENOTDIR)
            stack.append(node)
        raise fs_error(EINVAL)  # pragma: no cover (split never returns an empty list)

    def open(
        self,
        fd: int,
        path: str,
        *,
        create: bool = False,
        exclusive: bool = False,
        truncate: bool = False,
        directory: bool = False,
        write: bool = False,
        append: bool = False,
    ) -> int:
        """Open ``path`` (relative to ``fd``) and return its new descriptor (the lowest free).

        ``write`` asks for write access (``create``, ``truncate`` and ``append`` imply it);
        a read-only file or directory answers ``EROFS``.
        """
        parent, name, node = self.resolve(fd, path)
        wants_write = write or create or truncate or append
        if node is None:
            if not create:
                raise fs_error(ENOENT)
            if not parent.writable:
                raise fs_error(EROFS)
            if len(self.fds) > MAX_OPEN_FILES:
                raise fs_error(EBIG)
            assert name is not None
            node = parent.entries[name] = File(self._new_ino(), True)
        elif create and exclusive:
            raise fs_error(EEXIST)
        if isinstance(node, Directory):
            if truncate:
                raise fs_error(EISDIR)
            handle = OpenFile(DIR, node, writable=node.writable)
        else:
            if directory:
                raise fs_error(ENOTDIR)
            if wants_write and not node.writable:
                raise fs_error(EROFS)
            if truncate:
                del node.data[:]
            handle = OpenFile(FILE, node, writable=wants_write, append=append)
        if len(self.fds) > MAX_OPEN_FILES:  # re-opening existing files counts too
            raise fs_error(EBIG)
        new_fd = next(i for i in range(3, len(self.fds) + 4) if i not in self.fds)
        self.fds[new_fd] = handle
        return new_fd

    def stat_path(self, fd: int, path: str) -> Node:
        """The node at ``path`` (``ENOENT`` when there is none)."""
        _parent, _name, node = self.resolve(fd, path)
        if node is None:
            raise fs_error(ENOENT)
        return node

    def mkdir(self, fd: int, path: str) -> None:
        parent, name, node = self.resolve(fd, path)
        if node is not None:
            raise fs_error(EEXIST)
        if not parent.writable:
            raise fs_error(EROFS)
        assert name is not None
        parent.entries[name] = self._new_dir(writable=True)

    def unlink(self, fd: int, path: str) -> None:
        parent, name, node = self.resolve(fd, path)
        if node is None:
            raise fs_error(ENOENT)
        if isinstance(node, Directory):
            raise fs_error(EISDIR)
        if not parent.writable:
            raise fs_error(EROFS)
        assert name is not None
        del parent.entries[name]

    def rmdir(self, fd: int, path: str) -> None:
        parent, name, node = self.resolve(fd, path)
        if node is None:
            raise fs_error(ENOENT)
        if not isinstance(node, Directory) or name is None:
            raise fs_error(ENOTDIR if name is not None else EINVAL)
        if node.entries:
            raise fs_error(ENOTEMPTY)
        if not parent.writable:
            raise fs_error(EROFS)
        del parent.entries[name]

    def rename(self, fd: int, old: str, new_fd: int, new: str) -> None:
        old_parent, old_name, node = self.resolve(fd, old)
        new_parent, new_name, target = self.resolve(new_fd, new)
        if node is None:
            raise fs_error(ENOENT)
        if old_name is None or new_name is None:
            raise fs_error(EINVAL)
        if not (old_parent.writable and new_parent.writable):
            raise fs_error(EROFS)
        if isinstance(target, Directory) and target.entries:
            raise fs_error(ENOTEMPTY)
        del old_parent.entries[old_name]
        new_parent.entries[new_name] = node

    def readlink(self, fd: int, path: str) -> None:
        """There are no symbolic links: ``ENOENT`` if nothing is there, else ``EINVAL``."""
        self.stat_path(fd, path)
        raise fs_error(EINVAL)

    # -- data --
    def write(self, h: OpenFile, data: bytes, offset: int | None = None) -> None:
        """Append to stdout/stderr, or write to a file at its position (or ``offset``)."""
        self.budget.charge(len(data))
        kind = h.kind
        if kind == STDOUT:
            self.stdout += data
        elif kind == STDERR:
            self.stderr += data
        elif kind == FILE:
            assert isinstance(h.node, File)
            buf = h.node.data
            pos = len(buf) if h.append and offset is None else (h.pos if offset is None else offset)
            if pos > len(buf):
                self.budget.charge(pos - len(buf))
                buf.extend(bytes(pos - len(buf)))
            buf[pos : pos + len(data)] = data
            if offset is None:
                h.pos = pos + len(data)
        else:
            raise fs_error(EISDIR)

    def read_into(
        self,
        h: OpenFile,
        lengths: list[tuple[int, int]],
        sink: Callable[[int, bytes], None],
        offset: int | None = None,
    ) -> int:
        """Read into buffers ``(address, length)`` through ``sink(address, chunk)``.

        Stops at the end of the data or at the first short chunk; returns the bytes read.
        Each chunk is charged before ``sink`` sees it; if ``sink`` raises, the position
        does not move.
        """
        if not h.readable:
            raise fs_error(EBADF)
        if offset is not None and offset < 0:
            raise fs_error(EINVAL)
        kind = h.kind
        if kind == STDIN:
            source: bytes | bytearray = self.stdin
            pos = self.stdin_pos
        elif kind == FILE:
            assert isinstance(h.node, File)
            source, pos = h.node.data, (h.pos if offset is None else offset)
        elif kind == DIR:
            raise fs_error(EISDIR)
        else:
            raise fs_error(EBADF)
        total = 0
        free = kind == FILE and h.node is not None and h.node.ino in self._free_inos
        charge = (lambda _n: None) if free else self.budget.charge
        for address, length in lengths:
            start = pos + total
            chunk = bytes(source[start : start + length])
            if not chunk:
                break
            charge(len(chunk))
            sink(address, chunk)
            total += len(chunk)
            if len(chunk) < length:
                break
        if kind == STDIN:
            self.stdin_pos += total
        elif offset is None:
            h.pos += total
        return total

    def seek(self, h: OpenFile, offset: int, whence: int) -> int:
        """Move a file's position (whence 0: start, 1: current, 2: end); the new position."""
        if h.kind != FILE:
            raise fs_error(ESPIPE if h.kind != DIR else EISDIR)
        assert isinstance(h.node, File)
        base = {0: 0, 1: h.pos, 2: len(h.node.data)}.get(whence)
        if base is None or base + offset < 0:
            raise fs_error(EINVAL)
        h.pos = base + offset
        return h.pos

    def truncate(self, h: OpenFile, size: int) -> None:
        """Set a file's size; growing it is charged like a write of zeros."""
        if not isinstance(h.node, File):
            raise fs_error(EINVAL)
        if not h.writable:
            raise fs_error(EBADF)
        data = h.node.data
        if size > len(data):
            self.budget.charge(size - len(data))
            data.extend(bytes(size - len(data)))
        else:
            del data[size:]

    def listing(self, h: OpenFile) -> list[tuple[str, Node]]:
        """A directory's entries as readdir sees them: ``.``, ``..``, then sorted by name."""
        if not isinstance(h.node, Directory):
            raise fs_error(ENOTDIR)
        entries: list[tuple[str, Node]] = [(".", h.node), ("..", h.node)]
        entries += sorted(h.node.entries.items())
        return entries
