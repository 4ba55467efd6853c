"""The hostile-module corpus (``datasets/wasm/hostile/`` and the generated giants): every
module ends in a typed error within its limits, the host stays bounded, and the executor
serves the next task."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from meshbench.core.errors import (
    GuestTrap,
    InvalidModule,
    IOLimitExceeded,
    MemoryLimitExceeded,
    MeshError,
    OutOfFuel,
)
from meshbench.core.types import CapabilityScope
from meshbench.exec import prescan
from meshbench.exec.cache import ModuleCache
from meshbench.exec.wasm import WasmExecutor
from meshbench.testing import hostile

CORPUS = Path(__file__).resolve().parents[2] / "datasets" / "wasm" / "hostile"
HELLO = CORPUS.parent / "hello.wasm"
#: Small enough that every bomb goes off fast, large enough for the well-behaved parts.
TIGHT = CapabilityScope(memory_mb=16, cpu_cycles=20_000_000, io_mb=2)
DIRS = {"/data": {"f": b"secret input"}}

#: name -> (expected error, a piece of its message); None: the run ends with a result.
EXPECTED: dict[str, tuple[type[MeshError], str] | None] = {
    "infinite_loop": (OutOfFuel, "cpu_cycles"),
    "memory_bomb": (MemoryLimitExceeded, "past its limit of 16777216 bytes"),
    "stdout_flood": (IOLimitExceeded, "io_mb"),
    "random_flood": (IOLimitExceeded, "io_mb"),
    "tmp_fill": (IOLimitExceeded, "io_mb"),
    "deep_recursion": (GuestTrap, "call stack exhausted"),
    "huge_table": (InvalidModule, "before compiling"),
    "table_grow_bomb": (GuestTrap, "unreachable"),
    "many_memories": (InvalidModule, "multiple memories"),
    "import_everything": (InvalidModule, "env.system"),
    "import_memory": (InvalidModule, r"env.memory \(a memory\)"),
    "import_mistyped": (InvalidModule, "do not link"),
    "start_trap": (GuestTrap, "unreachable"),
    "start_hostcall": (OutOfFuel, "cpu_cycles"),
    "host_call_spin": (OutOfFuel, "cpu_cycles"),
    "poll_forever": (OutOfFuel, "cpu_cycles"),
    "bad_pointers": (GuestTrap, "bad pointer to output_store"),
    "fd_exhaustion": None,
    "escape_paths": None,
}


def test_the_corpus_is_what_this_file_expects():
    assert {p.stem for p in CORPUS.glob("*.wasm")} == set(EXPECTED)


@pytest.fixture(scope="module")
def hostile_executor(tmp_path_factory: pytest.TempPathFactory) -> WasmExecutor:
    return WasmExecutor(cache_dir=tmp_path_factory.mktemp("hostile-cache"))


def _serves_the_next_task(executor: WasmExecutor) -> None:
    result = executor.run(HELLO.read_bytes())
    assert result.stdout == b"hello, mesh\n" and result.exit_code == 0


@pytest.mark.parametrize("name", sorted(n for n, e in EXPECTED.items() if e is not None))
def test_hostile_module_ends_in_its_typed_error(hostile_executor: WasmExecutor, name: str):
    error, message = EXPECTED[name]  # type: ignore[misc]
    wasm = (CORPUS / f"{name}.wasm").read_bytes()
    t0 = time.perf_counter()
    with pytest.raises(error, match=message) as info:
        hostile_executor.run(wasm, scope=TIGHT, dirs=DIRS if "escape" in name else None)
    assert time.perf_counter() - t0 < 10  # within its fuel: no wall-clock backstop needed
    if error is not InvalidModule:
        assert info.value.fuel_used is not None and info.value.fuel_used <= TIGHT.cpu_cycles
    _serves_the_next_task(hostile_executor)


def test_a_start_function_can_write_before_it_is_stopped(hostile_executor: WasmExecutor):
    with pytest.raises(OutOfFuel):
        hostile_executor.run((CORPUS / "start_hostcall.wasm").read_bytes(), scope=TIGHT)
    # the bytes reached the guest's stdout through the caller's memory (nothing crashed)


def test_no_path_leaves_the_sandbox(hostile_executor: WasmExecutor):
    result = hostile_executor.run(
        (CORPUS / "escape_paths.wasm").read_bytes(), scope=TIGHT, dirs=DIRS
    )
    assert list(result.stdout) == [76] * 10 + [58, 44, 69, 8, 54, 69]
    assert result.exit_code == 0  # no attempt succeeded


def test_descriptors_run_out_with_an_errno_not_host_memory(hostile_executor: WasmExecutor):
    result = hostile_executor.run((CORPUS / "fd_exhaustion.wasm").read_bytes(), scope=TIGHT)
    assert result.exit_code == 1  # EBIG


def test_bad_pointers_are_efault_for_wasi(hostile_executor: WasmExecutor):
    with pytest.raises(GuestTrap, match="output_store"):
        hostile_executor.run((CORPUS / "bad_pointers.wasm").read_bytes(), scope=TIGHT)


# --- the giants: refused from their bytes, before compiling ---------------------------------
GIANTS = {
    "huge_module": lambda: hostile.huge_module(prescan.MAX_MODULE_BYTES + 1),
    "enormous_function": lambda: hostile.enormous_function(prescan.MAX_FUNCTION_BYTES + 1),
    "many_globals": lambda: hostile.many_globals(prescan.MAX_GLOBALS + 1),
    "code_heavy": lambda: hostile.huge_module(prescan.MAX_CODE_BYTES + 1),
}


@pytest.mark.parametrize("name", sorted(GIANTS))
def test_giants_are_refused_before_compiling(tmp_path: Path, name: str):
    wasm = GIANTS[name]()
    cache = ModuleCache(tmp_path)
    t0 = time.perf_counter()
    with pytest.raises(InvalidModule, match="before compiling"):
        cache.load(wasm)
    assert time.perf_counter() - t0 < 2.0  # a look at the bytes, not a compile
    assert cache.compiled == 0 and not any(tmp_path.rglob("*.cwasm"))
    _serves_the_next_task(WasmExecutor(cache))


def test_unknown_imports_are_refused_before_compiling(tmp_path: Path):
    # the module is big enough that compiling it first would show (seconds)
    big = hostile.huge_module(8 * 1024 * 1024)
    with_import = big[:8] + _import_section(b"env", b"system") + big[8:]
    cache = ModuleCache(tmp_path)
    t0 = time.perf_counter()
    with pytest.raises(InvalidModule, match=r"env\.system"):
        cache.load(with_import)
    assert time.perf_counter() - t0 < 1.0 and cache.compiled == 0


def _import_section(module: bytes, name: bytes) -> bytes:
    # a type section would have to come first; an import of type 0 needs it, so give one
    types = b"\x01\x04\x01\x60\x00\x00"
    entry = bytes([len(module)]) + module + bytes([len(name)]) + name + b"\x00\x00"
    payload = b"\x01" + entry
    return types + b"\x02" + bytes([len(payload)]) + payload


# --- host memory ----------------------------------------------------------------------------
_RSS_SCRIPT = """
import json, sys
from pathlib import Path
from meshbench.core.errors import MeshError
from meshbench.core.types import CapabilityScope
from meshbench.exec.wasm import WasmExecutor
scope = CapabilityScope(memory_mb=64, cpu_cycles=80_000_000, io_mb=16)

def peak_kib():
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec from the forking parent
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])

executor = WasmExecutor(cache_dir=sys.argv[2])
hello = (Path(sys.argv[1]).parent / "hello.wasm").read_bytes()
executor.run(hello)
base = peak_kib()
outcomes = {}
for path in sorted(Path(sys.argv[1]).glob("*.wasm")):
    try:
        r = executor.run(path.read_bytes(), scope=scope, dirs={"/data": {"f": b"x"}})
        outcomes[path.stem] = f"exit {r.exit_code}"
    except MeshError as e:
        outcomes[path.stem] = type(e).__name__
    assert executor.run(hello).stdout == b"hello, mesh\\n"
peak = peak_kib()
print(json.dumps({"base_kib": base, "peak_kib": peak, "outcomes": outcomes}))
"""


@pytest.mark.slow
def test_host_memory_stays_bounded_over_the_whole_corpus(tmp_path: Path):
    """The whole corpus in a fresh process, at memory_mb=64 and io_mb=16: its peak RSS grows
    by about what one guest may hold (64 MiB of memory, 16 MiB of output), no more; the
    memory bomb really fills its 64 MiB, so the peak shows that it was measured."""
    out = subprocess.run(
        [sys.executable, "-c", _RSS_SCRIPT, str(CORPUS), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    report = json.loads(out.stdout.strip().splitlines()[-1])
    grown_mib = (report["peak_kib"] - report["base_kib"]) / 1024
    print(f"hostile corpus: peak RSS {report['peak_kib'] / 1024:.0f} MiB, +{grown_mib:.0f} MiB")
    assert 60 < grown_mib < 64 + 16 + 48, report
    assert set(report["outcomes"]) == set(EXPECTED)
    assert report["outcomes"]["memory_bomb"] == "MemoryLimitExceeded"
