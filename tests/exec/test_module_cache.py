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
