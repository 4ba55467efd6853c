"""The wasm executor on the example modules: WASI commands, files, the ICN ABI."""

from __future__ import annotations

import hashlib
import os

import pytest
import wasmtime
from conftest import ROOMY

from meshbench.core.encoding import blob_cid
from meshbench.core.errors import ExecutionError
from meshbench.core.types import CapabilityScope, ExecutionSummary
from meshbench.exec.engine import engine_identity


def test_hello_prints_and_reports(executor, module):
    r = executor.run(module("hello"))
    assert r.output == r.stdout == b"hello, mesh\n"
    assert r.exit_code == 0 and r.stderr == b""
    assert r.output_cid == blob_cid(b"hello, mesh\n")
    s = r.summary
    assert isinstance(s, ExecutionSummary)
    assert s.fuel_used > 0 and s.peak_memory_bytes == 65536 and s.io_bytes == 12
    assert s.engine == engine_identity() and s.engine.startswith("wasmtime-")


def test_sha256_of_input_matches_hashlib(executor, module):
    data = os.urandom(200_000)
    r = executor.run(module("sha256"), data, scope=ROOMY)
    assert r.output.decode() == f"{hashlib.sha256(data).hexdigest()}  -\n"


def test_wordcount(executor, module):
    text = b"one two\nthree  four five\n\nsix"
    r = executor.run(module("wordcount"), text, scope=ROOMY)
    assert r.output == f"3 6 {len(text)}\n".encode()


def test_argv_is_passed_after_a_fixed_argv0(executor, module):
    r = executor.run(module("determinism"), args=("alpha", "β"), scope=ROOMY)
    assert b"argv[0] main.wasm\nargv[1] alpha\nargv[2] \xce\xb2\n" in r.output


def test_icn_abi_input_output_and_log(executor, module):
    r = executor.run(module("icn"), b"Hello, ICN!")
    assert r.output == b"HELLO, ICN!"
    assert r.stdout == b""
    assert r.logs == ((1, "upper-casing the input"),)


def test_nonzero_exit_is_a_result_not_an_error(executor):
    wasm = wasmtime.wat2wasm(
        """(module
          (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
          (memory (export "memory") 1)
          (func (export "_start") (call $exit (i32.const 7))))"""
    )
    r = executor.run(wasm)
    assert r.exit_code == 7 and r.output == b""


WRITE_OUT = """(module
  (import "wasi_snapshot_preview1" "path_open"
    (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_prestat_dir_name"
    (func $name (param i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 100) "result")
  (data (i32.const 200) "file output")
  (func (export "_start")
    ;; preopens are fd 3.. in path order: /out is 3, /tmp is 4
    (drop (call $name (i32.const 3) (i32.const 300) (i32.const 4)))
    (drop (call $open (i32.const 3) (i32.const 0) (i32.const 100) (i32.const 6)
                      (i32.const 9) (i64.const 64) (i64.const 0) (i32.const 0) (i32.const 0)))
    (i32.store (i32.const 8) (i32.const 200))
    (i32.store (i32.const 12) (i32.const 11))
    (drop (call $write (i32.load (i32.const 0)) (i32.const 8) (i32.const 1) (i32.const 16)))))
"""


def test_output_file_is_the_result(executor):
    wasm = wasmtime.wat2wasm(WRITE_OUT)
    r = executor.run(wasm, output="/out/result")
    assert r.output == b"file output"
    assert r.output_cid == blob_cid(b"file output")


def test_missing_output_file_is_an_error(executor, module):
    with pytest.raises(ExecutionError, match="did not write its output file") as info:
        executor.run(module("hello"), output="/out/missing")
    assert info.value.fuel_used and info.value.fuel_used > 0


def test_output_inside_an_input_dir_is_refused(executor, module):
    with pytest.raises(ExecutionError, match="read-only"):
        executor.run(module("hello"), dirs={"/out": {}}, output="/out/x")


def test_sandbox_escape_attempts_all_fail(executor, module):
    r = executor.run(module("escape"), dirs={"/data": {"x": b"1"}}, scope=ROOMY)
    lines = dict(line.split(": ", 1) for line in r.output.decode().splitlines())
    assert lines["fopen(/etc/passwd, r)"] == "No such file or directory"
    assert lines["fopen(/tmp/../etc/passwd, r)"] == "Capabilities insufficient"
    assert lines["fopen(/data/../../etc/passwd, r)"] == "Capabilities insufficient"
    assert lines["fopen(/proc/self/environ, r)"] == "No such file or directory"
    assert lines["fopen(/data/injected.txt, w)"] == "Read-only file system"
    assert lines["fopen(/tmp/scratch.txt, w)"] == "OPENED"  # private scratch is writable
    assert lines["opendir(/)"] == "No such file or directory"
    assert lines["rename(/data/x, /tmp/x)"] == "Read-only file system"
    assert lines["symlink"] != "OK"
    assert lines["environ"] == "0 variables, HOME=(unset)"


def test_scratch_is_private_to_each_run(executor, module):
    # determinism.wasm creates /tmp files; a second run must not see the first run's files
    a = executor.run(module("determinism"), scope=ROOMY)
    b = executor.run(module("determinism"), scope=ROOMY)
    assert b"ls /tmp: . .. alpha mid zeta\n" in a.output
    assert a.output == b.output


READ_SUB_IN = """(module
      (import "wasi_snapshot_preview1" "path_open"
        (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "fd_write"
        (func $write (param i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (data (i32.const 100) "sub/in.txt")
      (func (export "_start")
        ;; /data is fd 3; open sub/in.txt read-only, read it, echo it to stdout
        (drop (call $open (i32.const 3) (i32.const 0) (i32.const 100) (i32.const 10)
                          (i32.const 0) (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 0)))
        (i32.store (i32.const 8) (i32.const 1000))
        (i32.store (i32.const 12) (i32.const 100))
        (drop (call $read (i32.load (i32.const 0)) (i32.const 8) (i32.const 1) (i32.const 16)))
        (i32.store (i32.const 12) (i32.load (i32.const 16)))
        (drop (call $write (i32.const 1) (i32.const 8) (i32.const 1) (i32.const 16)))))"""


def test_input_dirs_are_readable(executor):
    wasm = wasmtime.wat2wasm(READ_SUB_IN)
    r = executor.run(wasm, dirs={"/data": {"sub": {"in.txt": b"from a CID'd dir"}}})
    assert r.output == b"from a CID'd dir"


def test_run_task_checks_cids(executor, module):
    from meshbench.testing.factories import make_identity, make_task

    wasm, data = module("sha256"), b"task input"
    task = make_task(make_identity(1), wasm=wasm, data=data, scope=ROOMY)
    r = executor.run_task(task, wasm, data)
    assert r.output.startswith(hashlib.sha256(data).hexdigest().encode())
    with pytest.raises(ExecutionError):
        executor.run_task(task, wasm, b"other input")


def test_scope_defaults_are_the_policy_defaults():
    scope = CapabilityScope()
    assert (scope.memory_mb, scope.cpu_cycles, scope.io_mb) == (128, 1_000_000, 50)


def test_directories_by_cid_from_a_manifest(executor, tmp_path):
    from meshbench.exec.wasm import tree_from_manifest
    from meshbench.store.blobs import BlobStore

    store = BlobStore(tmp_path / "blobs")
    manifest = {"sub": {"in.txt": str(store.put(b"from a CID'd dir"))}}
    tree = tree_from_manifest(manifest, store)
    assert tree == {"sub": {"in.txt": b"from a CID'd dir"}}
    wasm = wasmtime.wat2wasm(READ_SUB_IN)
    assert executor.run(wasm, dirs={"/data": tree}).output == b"from a CID'd dir"


def test_pinned_engine(tmp_path):
    from meshbench.exec.wasm import WasmExecutor

    assert WasmExecutor(cache_dir=tmp_path, pinned_engine=engine_identity()).engine
    with pytest.raises(ExecutionError, match="pinned"):
        WasmExecutor(cache_dir=tmp_path, pinned_engine="wasmtime-1.0.0/0000")
