"""The compiled-module cache: once per host on disk, once per process in memory."""

from __future__ import annotations

import wasmtime

from meshbench.exec.cache import ModuleCache
from meshbench.exec.engine import engine_identity


def _module(n: int) -> bytes:
    return wasmtime.wat2wasm(
        f'(module (memory (export "memory") 1) (func (export "_start") (drop (i32.const {n}))))'
    )


def test_compiles_once_then_reuses_memory_and_disk(tmp_path):
    wasm = _module(1)
    first = ModuleCache(tmp_path)
    a = first.load(wasm)
    assert first.compiled == 1 and not a.from_disk
    assert first.load(wasm) is a  # in-process LRU
    path = first.path_for(a.cid)
    assert path.is_file() and engine_identity().split("/")[1] in str(path)
    second = ModuleCache(tmp_path)  # another process: disk only
    b = second.load(wasm)
    assert second.compiled == 0 and b.from_disk and b.cid == a.cid
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".tmp-")]


def test_corrupt_cache_file_is_recompiled(tmp_path):
    wasm = _module(2)
    cache = ModuleCache(tmp_path)
    path = cache.path_for(cache.load(wasm).cid)
    path.write_bytes(b"garbage")
    fresh = ModuleCache(tmp_path)
    loaded = fresh.load(wasm)
    assert fresh.compiled == 1 and not loaded.from_disk
    assert path.read_bytes() != b"garbage"


def test_lru_evicts_the_least_recently_used(tmp_path):
    cache = ModuleCache(tmp_path, lru_size=2)
    mods = [_module(i) for i in range(3)]
    first = cache.load(mods[0])
    cache.load(mods[1])
    cache.load(mods[0])
    cache.load(mods[2])  # evicts mods[1]
    assert cache.load(mods[0]) is first
    before = cache.compiled
    cache.load(mods[1])  # from disk, not compiled again
    assert cache.compiled == before


def test_unwritable_cache_dir_still_runs(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a dir")
    cache = ModuleCache(blocker / "sub")
    assert cache.load(_module(3)).cid


_RACE = """
import sys, wasmtime
from meshbench.core.encoding import blob_cid
from meshbench.exec.cache import ModuleCache
wasm = wasmtime.wat2wasm(sys.argv[2])
cache = ModuleCache(sys.argv[1])
module, from_disk = cache.load_uninstrumented(wasm, blob_cid(wasm))
print(cache.compiled, from_disk)
"""


def test_uninstrumented_load_compiles_once_across_racing_processes(tmp_path):
    import subprocess
    import sys

    # whether the second process waits on the lock or finds the file, nobody compiles twice
    funcs = " ".join(f'(func (export "f{i}") (result i64) (i64.const {i}))' for i in range(2000))
    wat = f'(module (memory (export "memory") 1) {funcs})'
    procs = [
        subprocess.Popen([sys.executable, "-c", _RACE, str(tmp_path), wat], stdout=subprocess.PIPE)
        for _ in range(2)
    ]
    outs = sorted(p.communicate(timeout=120)[0].decode().split() for p in procs)
    assert [o[0] for o in outs] == ["0", "1"]  # one compiled, the other loaded its file
    assert outs[0][1] == "True"
    files = [p.name for p in next(tmp_path.iterdir()).iterdir()]
    assert sum(f.endswith(".plain.cwasm") for f in files) == 1
    assert not [f for f in files if f.startswith(".tmp-")]
