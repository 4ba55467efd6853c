"""The pieces of the virtual system interface that need no guest."""

from __future__ import annotations

import hashlib

import pytest

from meshbench.core.errors import ExecutionError
from meshbench.exec.wasi import GuestContext, SeededRandom, provided_imports


def test_seeded_random_is_sha256_counter_mode():
    seed = bytes(range(32))
    prefix = b"meshbench/random/v1\0" + seed
    expected = b"".join(hashlib.sha256(prefix + i.to_bytes(8, "big")).digest() for i in range(3))
    assert SeededRandom(seed).read(96) == expected
    # the stream does not depend on how it is sliced
    r = SeededRandom(seed)
    assert r.read(5) + r.read(40) + r.read(51) == expected
    # pinned: a change here changes every random_get of every task
    assert SeededRandom(bytes(32)).read(8).hex() == "d63061f2b1be7876"


def test_seed_must_be_32_bytes():
    with pytest.raises(ValueError):
        SeededRandom(b"short")


def test_input_trees_reject_bad_names():
    for bad in ("", "a/b", "..", "."):
        with pytest.raises(ExecutionError, match="invalid file name"):
            GuestContext(io_limit=10, dirs={"/data": {bad: b"x"}})


def test_a_dir_cannot_be_input_and_scratch():
    with pytest.raises(ExecutionError, match="both"):
        GuestContext(io_limit=10, dirs={"/tmp": {}})


def test_preopens_are_numbered_in_path_order():
    ctx = GuestContext(io_limit=10, dirs={"/zz": {}, "/data": {"f": b"1"}})
    assert [(fd, h.preopen) for fd, h in sorted(ctx.fds.items()) if fd >= 3] == [
        (3, "/data"),
        (4, "/tmp"),
        (5, "/zz"),
    ]


def test_every_wasi_preview1_function_is_provided():
    names = {n for m, n in provided_imports() if m == "wasi_snapshot_preview1"}
    assert len(names) == 46
    assert {"path_open", "fd_readdir", "poll_oneoff", "random_get", "proc_exit"} <= names
    env = {n for m, n in provided_imports() if m == "env"}
    assert env == {"input_load", "output_store", "log"}


def test_wasi_calls_run_without_wasm_over_a_plain_buffer():
    import struct

    from meshbench.core.errors import WasiError
    from meshbench.exec.hostcall import GuestMemory

    buf = bytearray(64)
    ctx = GuestContext(io_limit=100, memory=GuestMemory(buf))
    buf[16:21] = b"hello"
    struct.pack_into("<II", buf, 0, 16, 5)  # one iovec: 5 bytes at 16
    assert ctx.fd_write(1, 0, 1, 8) == 0
    assert bytes(ctx.stdout) == b"hello" and struct.unpack_from("<I", buf, 8) == (5,)
    assert ctx.io_used == 5
    with pytest.raises(WasiError) as info:  # the trampoline turns this into EFAULT
        ctx.fd_write(1, 60, 1, 8)
    assert info.value.errno == 21
    assert ctx.clock_time_get(1, 0, 32) == 0 and struct.unpack_from("<Q", buf, 32) == (1000,)
