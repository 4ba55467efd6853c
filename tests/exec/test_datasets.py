"""datasets/wasm: the committed modules are exactly what their sources build to."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys

import pytest
from conftest import DATASETS


def _build_module():
    spec = importlib.util.spec_from_file_location("wasm_build", DATASETS / "build.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_source_has_a_committed_module():
    sources = {p.stem for p in (DATASETS / "src").iterdir() if p.suffix in (".wat", ".c")}
    built = {p.stem for p in DATASETS.glob("*.wasm")}
    assert sources == built


def test_wat_modules_rebuild_bit_for_bit(tmp_path):
    build = _build_module()
    wat = {p.stem for p in (DATASETS / "src").glob("*.wat")}
    for path in build.build(tmp_path, wat):
        assert path.read_bytes() == (DATASETS / path.name).read_bytes(), path.name


@pytest.mark.slow
def test_a_c_module_rebuilds_bit_for_bit(tmp_path):
    if importlib.util.find_spec("ziglang") is None:
        pytest.skip("ziglang (dev extra) is not installed")
    build = _build_module()
    (path,) = build.build(tmp_path, {"wordcount"})
    assert path.read_bytes() == (DATASETS / "wordcount.wasm").read_bytes()


def test_build_script_check_mode_runs():
    if shutil.which(sys.executable) is None:  # pragma: no cover
        pytest.skip("no interpreter path")
    out = subprocess.run(
        [sys.executable, str(DATASETS / "build.py"), "--check", "hello", "loop"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "same hello.wasm" in out.stdout
