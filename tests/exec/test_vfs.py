"""The guest file system without wasm: paths, mounts, descriptors, the I/O budget."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshbench.core.errors import ExecutionError, IOLimitExceeded, MeshError, WasiError
from meshbench.exec import vfs
from meshbench.exec.vfs import Directory, File, IOBudget, VirtualFS
from meshbench.testing.vfs import guest_paths, trees

DATA_FD, TMP_FD = 3, 4  # preopens are numbered in path order: /data, /tmp


def make_fs(tree: dict[str, Any] | None = None, *, limit: int = 1 << 20) -> VirtualFS:
    return VirtualFS(budget=IOBudget(limit), dirs={"/data": tree or {}})


def snapshot(fs: VirtualFS) -> list[tuple[str, str, bytes]]:
    return [
        (path, type(node).__name__, bytes(node.data) if isinstance(node, File) else b"")
        for path, node in fs.walk()
    ]


def errno_of(fn: Any, *args: Any, **kwargs: Any) -> int:
    with pytest.raises(WasiError) as info:
        fn(*args, **kwargs)
    assert isinstance(info.value, MeshError)
    return info.value.errno


# --- path resolution ------------------------------------------------------------------------
def reference_resolve(tree: dict[str, Any], path: str) -> tuple[str, Any]:
    """The rule, written plainly on the input dict: ('ok', parent names, name) or ('err', n)."""
    if path.startswith("/"):
        return "err", vfs.ENOTCAPABLE
    stack: list[dict[str, Any]] = [tree]
    names: list[str] = []
    parts = path.split("/")
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if part in ("", "."):
            if last:
                return "ok", (tuple(names), None)
            continue
        if part == "..":
            if len(stack) == 1:
                return "err", vfs.ENOTCAPABLE
            stack.pop()
            names.pop()
            if last:
                return "ok", (tuple(names), None)
            continue
        if last:
            return "ok", (tuple(names), part)
        child = stack[-1].get(part)
        if child is None:
            return "err", vfs.ENOENT
        if not isinstance(child, dict):
            return "err", vfs.ENOTDIR
        stack.append(child)
        names.append(part)
    raise AssertionError("unreachable")


def dir_at(fs: VirtualFS, names: tuple[str, ...]) -> Directory:
    node: Any = fs.mounts["/data"]
    for name in names:
        node = node.entries[name]
    assert isinstance(node, Directory)
    return node


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_resolution_matches_the_rule_and_never_leaves_the_preopen(data: st.DataObject) -> None:
    tree = data.draw(trees())
    path = data.draw(guest_paths(tree))
    fs = make_fs(tree)
    expected = reference_resolve(tree, path)
    if expected[0] == "err":
        assert errno_of(fs.resolve, DATA_FD, path) == expected[1]
        return
    parent, name, node = fs.resolve(DATA_FD, path)
    parent_names, expected_name = expected[1]
    assert parent is dir_at(fs, parent_names)  # inside /data, at the place the rule says
    assert name == expected_name
    assert node is (parent if name is None else parent.entries.get(name))


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_nothing_outside_the_preopen_is_reachable(data: st.DataObject) -> None:
    # /tmp (empty) and /data are siblings: no path from /tmp reaches anything of /data
    tree = data.draw(trees())
    fs = make_fs(tree)
    tmp = fs.mounts["/tmp"]
    try:
        parent, _name, node = fs.resolve(TMP_FD, data.draw(guest_paths(tree)))
    except WasiError as e:
        assert e.errno in (vfs.ENOTCAPABLE, vfs.ENOENT)
        return
    assert parent is tmp and node in (None, tmp)


def test_escapes_are_not_capable() -> None:
    fs = make_fs({"sub": {"f": b"1"}})
    for path in ("/etc/passwd", "..", "../tmp", "sub/../..", "sub/../../data", "./.."):
        assert errno_of(fs.resolve, DATA_FD, path) == vfs.ENOTCAPABLE, path
    assert fs.resolve(DATA_FD, "sub/..")[2] is fs.mounts["/data"]
    assert errno_of(fs.resolve, DATA_FD, "sub/f/x") == vfs.ENOTDIR
    assert errno_of(fs.resolve, DATA_FD, "nope/x") == vfs.ENOENT
    assert errno_of(fs.resolve, 1, "x") == vfs.ENOTDIR  # stdout is not a directory
    assert errno_of(fs.resolve, 99, "x") == vfs.EBADF


def test_there_are_no_symbolic_links() -> None:
    fs = make_fs({"f": b"1"})
    assert errno_of(fs.readlink, DATA_FD, "f") == vfs.EINVAL
    assert errno_of(fs.readlink, DATA_FD, "missing") == vfs.ENOENT


# --- mounts ---------------------------------------------------------------------------------
def test_input_mounts_are_read_only_and_refusals_change_nothing() -> None:
    fs = make_fs({"f": b"data", "d": {"g": b"x"}, "empty": {}})
    before = snapshot(fs)
    refusals = [
        (fs.open, (DATA_FD, "f"), {"write": True}),
        (fs.open, (DATA_FD, "f"), {"truncate": True}),
        (fs.open, (DATA_FD, "f"), {"append": True}),
        (fs.open, (DATA_FD, "new"), {"create": True}),
        (fs.mkdir, (DATA_FD, "newdir"), {}),
        (fs.unlink, (DATA_FD, "f"), {}),
        (fs.rmdir, (DATA_FD, "empty"), {}),
        (fs.rename, (DATA_FD, "f", TMP_FD, "f"), {}),
        (fs.rename, (TMP_FD, ".", DATA_FD, "x"), {}),
    ]
    for fn, args, kwargs in refusals:
        assert errno_of(fn, *args, **kwargs) in (vfs.EROFS, vfs.EINVAL), (fn, args)
    assert snapshot(fs) == before
    assert fs.fds.keys() == {0, 1, 2, 3, 4}
    # reading is fine
    fd = fs.open(DATA_FD, "f")
    chunks: list[bytes] = []
    assert fs.read_into(fs.handle(fd), [(0, 2), (0, 10)], lambda _a, c: chunks.append(c)) == 4
    assert chunks == [b"da", b"ta"]


def test_bad_trees_and_overlapping_mounts_are_refused() -> None:
    for bad in ("", "a/b", "..", "."):
        with pytest.raises(ExecutionError, match="invalid file name"):
            make_fs({bad: b"x"})
    with pytest.raises(ExecutionError, match="both"):
        VirtualFS(budget=IOBudget(1), dirs={"/tmp": {}})


def test_inodes_listings_and_descriptors_are_deterministic() -> None:
    fs = make_fs({"b": b"2", "a": {"c": b"3"}})
    # inodes in creation order: /data, a, a/c, b, then /tmp
    assert [(p, n.ino) for p, n in fs.walk()] == [
        ("/data", 2),
        ("/data/a", 3),
        ("/data/a/c", 4),
        ("/data/b", 5),
        ("/tmp", 6),
    ]
    assert [name for name, _ in fs.listing(fs.handle(DATA_FD))] == [".", "..", "a", "b"]
    one = fs.open(TMP_FD, "x", create=True)
    two = fs.open(TMP_FD, "y", create=True)
    assert (one, two) == (5, 6)
    fs.close(one)
    assert fs.open(DATA_FD, "b") == 5  # the lowest free descriptor
    assert errno_of(fs.close, one + 10) == vfs.EBADF


def test_scratch_files_round_trip() -> None:
    fs = make_fs()
    fd = fs.open(TMP_FD, "out.txt", create=True)
    h = fs.handle(fd)
    fs.write(h, b"hello ")
    fs.write(h, b"world")
    assert fs.read_file("/tmp/out.txt") == b"hello world"
    assert fs.seek(h, 0, 0) == 0
    got: list[bytes] = []
    assert fs.read_into(h, [(0, 5)], lambda _a, c: got.append(c)) == 5
    assert got == [b"hello"] and h.pos == 5
    fs.write(h, b"!", offset=20)  # a gap is zero-filled (and charged)
    assert fs.read_file("/tmp/out.txt") == b"hello world" + bytes(9) + b"!"
    fs.truncate(h, 3)
    assert fs.read_file("/tmp/out.txt") == b"hel"
    fs.mkdir(TMP_FD, "d")
    fs.rename(TMP_FD, "out.txt", TMP_FD, "d/moved")
    assert fs.read_file("/tmp/d/moved") == b"hel" and fs.read_file("/tmp/out.txt") is None
    assert errno_of(fs.rmdir, TMP_FD, "d") == vfs.ENOTEMPTY
    fs.unlink(TMP_FD, "d/moved")
    fs.rmdir(TMP_FD, "d")
    assert [p for p, _ in fs.walk()] == ["/data", "/tmp"]
    assert errno_of(fs.open, TMP_FD, "x", create=True, directory=True) == vfs.ENOTDIR
    assert errno_of(fs.open, TMP_FD, "x", create=True, exclusive=True) == vfs.EEXIST


def test_stdio() -> None:
    fs = VirtualFS(budget=IOBudget(100), stdin=b"input")
    fs.write(fs.handle(1), b"out")
    fs.write(fs.handle(2), b"err")
    got: list[bytes] = []
    assert fs.read_into(fs.handle(0), [(0, 3), (0, 3)], lambda _a, c: got.append(c)) == 5
    assert (bytes(fs.stdout), bytes(fs.stderr), got) == (b"out", b"err", [b"inp", b"ut"])
    assert fs.read_into(fs.handle(0), [(0, 3)], lambda _a, c: None) == 0  # at the end
    assert errno_of(fs.read_into, fs.handle(1), [(0, 1)], lambda _a, c: None) == vfs.EBADF
    assert errno_of(fs.seek, fs.handle(0), 0, 0) == vfs.ESPIPE


# --- the I/O budget -------------------------------------------------------------------------
def test_the_budget_is_charged_before_bytes_move() -> None:
    fs = VirtualFS(budget=IOBudget(10), stdin=b"0123456789abc")
    fs.write(fs.handle(1), b"12345")
    with pytest.raises(IOLimitExceeded, match="budget of 10 bytes"):
        fs.write(fs.handle(1), b"123456")
    assert bytes(fs.stdout) == b"12345" and fs.budget.used == 5
    got: list[bytes] = []
    with pytest.raises(IOLimitExceeded):
        fs.read_into(fs.handle(0), [(0, 4), (0, 4)], lambda _a, c: got.append(c))
    assert got == [b"0123"] and fs.stdin_pos == 0  # the position did not move
    fd = fs.open(3, "f", create=True)  # no /data here: /tmp is fd 3
    with pytest.raises(IOLimitExceeded):
        fs.truncate(fs.handle(fd), 100)
    assert fs.read_file("/tmp/f") == b""


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["open", "write", "mkdir", "unlink", "rmdir", "rename", "close"]),
            st.sampled_from(["a", "b", "d", "d/a", "..", "../data/f", "/x", "."]),
            st.binary(max_size=40),
        ),
        max_size=25,
    )
)
def test_any_sequence_of_guest_calls_keeps_inputs_intact_and_the_budget(ops: list) -> None:
    fs = make_fs({"f": b"input", "sub": {"g": b"more"}}, limit=200)
    inputs_before = [s for s in snapshot(fs) if s[0].startswith("/data")]
    open_fds: list[int] = []
    for op, path, payload in ops:
        try:
            if op == "open":
                open_fds.append(fs.open(TMP_FD, path, create=True, append=bool(payload)))
            elif op == "write" and open_fds:
                fs.write(fs.handle(open_fds[-1]), payload)
            elif op == "mkdir":
                fs.mkdir(TMP_FD, path)
            elif op == "unlink":
                fs.unlink(TMP_FD, path)
            elif op == "rmdir":
                fs.rmdir(TMP_FD, path)
            elif op == "rename":
                fs.rename(TMP_FD, path, TMP_FD, "renamed")
            elif op == "close" and open_fds:
                fs.close(open_fds.pop())
        except (WasiError, IOLimitExceeded):
            pass
        assert fs.budget.used <= fs.budget.limit
    assert [s for s in snapshot(fs) if s[0].startswith("/data")] == inputs_before


def test_descriptors_are_bounded_even_when_reopening_one_file() -> None:
    fs = make_fs({"f": b"1"})
    opened = 0
    with pytest.raises(WasiError) as info:
        for _ in range(vfs.MAX_OPEN_FILES + 10):
            fs.open(DATA_FD, "f")
            opened += 1
    assert info.value.errno == vfs.EBIG and len(fs.fds) == vfs.MAX_OPEN_FILES + 1
