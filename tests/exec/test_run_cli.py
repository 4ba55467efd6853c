"""``meshbench run``."""

from __future__ import annotations

import hashlib
import json

import pytest
from click.testing import CliRunner
from conftest import DATASETS

from meshbench.cli.meshbench import main, main_group
from meshbench.store.blobs import BlobStore


def _run(*args, env=None):
    return CliRunner().invoke(main_group, ["run", *args], env=env or {}, catch_exceptions=False)


def test_run_file_with_input_prints_output(tmp_path, cache_dir):
    data = tmp_path / "in.bin"
    data.write_bytes(b"some input")
    res = _run(
        "--wasm",
        str(DATASETS / "sha256.wasm"),
        "--input",
        str(data),
        "--fuel",
        "100000000",
        env={"MESHBENCH_HOME": str(tmp_path)},
    )
    assert res.exit_code == 0
    assert res.stdout == f"{hashlib.sha256(b'some input').hexdigest()}  -\n"


def test_run_json_with_cids_dirs_args_and_output_file(tmp_path):
    store = BlobStore(tmp_path / "blobs")
    wasm_cid = store.put((DATASETS / "escape.wasm").read_bytes())
    host_dir = tmp_path / "data"
    host_dir.mkdir()
    (host_dir / "x").write_text("1")
    out = tmp_path / "result.txt"
    res = _run(
        "--wasm",
        str(wasm_cid),
        "--dir",
        f"{host_dir}::/data",
        "--arg",
        "a",
        "--fuel",
        "100000000",
        "--seed",
        "task-1",
        "-o",
        str(out),
        "--json",
        "--data-dir",
        str(tmp_path),
        env={"MESHBENCH_HOME": str(tmp_path)},
    )
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    for key in ("output_cid", "fuel_used", "exit_code", "peak_memory_bytes", "wall_time_s"):
        assert key in report
    assert report["exit_code"] == 0 and report["fuel_used"] > 0
    assert "fopen(/data/injected.txt, w): Read-only file system" in out.read_text()


def test_run_errors_are_typed_and_exit_1(tmp_path, capsys):
    bad = tmp_path / "bad.wasm"
    bad.write_bytes(b"not wasm")
    with pytest.raises(SystemExit) as info:
        main(["run", "--wasm", str(bad)])
    assert info.value.code == 1
    assert "error: InvalidModule: not a WebAssembly module" in capsys.readouterr().err


def test_guest_exit_status_becomes_the_cli_status(tmp_path):
    import wasmtime

    wasm = tmp_path / "exit7.wasm"
    wasm.write_bytes(
        wasmtime.wat2wasm(
            """(module
          (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
          (memory (export "memory") 1)
          (func (export "_start") (call $exit (i32.const 7))))"""
        )
    )
    res = _run("--wasm", str(wasm), env={"MESHBENCH_HOME": str(tmp_path)})
    assert res.exit_code == 7
