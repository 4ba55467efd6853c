"""Determinism: a result is a pure function of (module, input, args, dirs, scope, seed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import DATASETS, ROOMY

from meshbench.exec.wasi import EPOCH_NS

CHILD = """
import hashlib, json, sys
from meshbench.core.types import CapabilityScope
from meshbench.exec.wasm import WasmExecutor
datasets, cache = sys.argv[1], sys.argv[2]
ex = WasmExecutor(cache_dir=cache)
scope = CapabilityScope(memory_mb=64, cpu_cycles=10**10, io_mb=64)
report = {}
for name, args in [("determinism", ("x",)), ("stencil", ("64", "10")), ("matmul", ("40",))]:
    r = ex.run(open(f"{datasets}/{name}.wasm", "rb").read(), b"in", args=args, scope=scope,
               seed=bytes(range(32)))
    report[name] = [r.output.hex(), str(r.output_cid), r.summary.fuel_used, r.exit_code,
                    r.summary.peak_memory_bytes, r.summary.engine]
json.dump(report, sys.stdout)
"""


def _child(cache: Path, extra_env: dict[str, str]) -> dict:
    env = {**os.environ, **extra_env}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(DATASETS), str(cache)],
        env=env,
        capture_output=True,
        check=True,
        timeout=120,
    )
    return json.loads(out.stdout)


def test_two_processes_give_identical_bytes_and_fuel(tmp_path):
    # Separate caches (each process compiles for itself), different ambient environments.
    a = _child(tmp_path / "a", {"TZ": "UTC", "HOME": "/root", "LANG": "C"})
    b = _child(tmp_path / "b", {"TZ": "Asia/Tokyo", "HOME": "/nowhere", "MESHBENCH_X": "1"})
    assert a == b
    # and a third process loading the compiled module from the other's disk cache
    c = _child(tmp_path / "a", {})
    assert c == a
    text = bytes.fromhex(a["determinism"][0]).decode()
    assert "env count 0" in text and "argv[0] main.wasm" in text


def test_virtual_clock_random_listing_and_nans(executor, module):
    out = executor.run(module("determinism"), scope=ROOMY, seed=bytes(32)).output.decode()
    lines = out.splitlines()
    assert lines[0] == f"realtime {EPOCH_NS // 10**9}.000001000"
    assert lines[1] == "monotonic 0.000002000"
    assert lines[2] == "after 5ms sleep 0.005003000"  # sleeping advances virtual time only
    assert "ls /tmp: . .. alpha mid zeta" in lines  # sorted, whatever the creation order
    assert f"stat /tmp/alpha size 10 mtime {EPOCH_NS // 10**9} ino 4" in lines
    # NaNs are canonical whatever the operation or payload
    nans = [ln.split()[-1] for ln in lines if ln.startswith("nan ")]
    assert nans == ["7ff8000000000000"] * 4
    assert "nanf 0/0 7fc00000" in lines


def test_seed_drives_random_bytes_and_nothing_else(executor, module):
    def run(seed: bytes) -> list[str]:
        return (
            executor.run(module("determinism"), scope=ROOMY, seed=seed).output.decode().split("\n")
        )

    a, a2, b = run(bytes(32)), run(bytes(32)), run(b"\x01" * 32)
    assert a == a2
    diff = [(x, y) for x, y in zip(a, b, strict=True) if x != y]
    assert len(diff) == 1 and diff[0][0].startswith("random ")


def test_same_task_same_fuel_across_runs(executor, module):
    runs = [executor.run(module("stencil"), args=("32", "3"), scope=ROOMY) for _ in range(3)]
    assert len({(r.output, r.summary.fuel_used) for r in runs}) == 1
