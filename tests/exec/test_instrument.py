"""The memory.grow rewrite: exact refusal detection, nothing else changed."""

from __future__ import annotations

import pytest
import wasmtime
from conftest import DATASETS

from meshbench.core.errors import MemoryLimitExceeded
from meshbench.core.types import CapabilityScope
from meshbench.exec.engine import get_engine
from meshbench.exec.instrument import REFUSED_EXPORT, instrument_memory_grow

ONE_BIG_GROW = """(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1 {max})
  (func (export "_start")
    ;; one large request from a small heap, like malloc(1 GiB): refused, then exit {code}
    (if (i32.eq (memory.grow (i32.const {pages})) (i32.const -1))
      (then (call $exit (i32.const {code}))))))"""


def _wat(pages: int, code: int = 3, max_pages: str = "") -> bytes:
    return wasmtime.wat2wasm(ONE_BIG_GROW.format(pages=pages, code=code, max=max_pages))


def test_one_large_refused_grow_is_a_memory_error(executor):
    with pytest.raises(MemoryLimitExceeded, match="status 3"):
        executor.run(_wat(16384), scope=CapabilityScope(memory_mb=128))


def test_refusal_by_the_modules_own_max_is_the_guests_result(executor):
    r = executor.run(_wat(5, max_pages="2"))
    assert r.exit_code == 3


def test_a_guest_that_copes_with_a_refusal_keeps_its_result(executor):
    r = executor.run(_wat(16384, code=0))
    assert r.exit_code == 0


def test_modules_without_grow_are_untouched():
    wasm = (DATASETS / "hello.wasm").read_bytes()
    assert instrument_memory_grow(wasm) == wasm


@pytest.mark.parametrize("name", ["stencil", "matmul", "determinism", "escape", "membomb"])
def test_instrumented_examples_validate_and_export_the_record(name):
    wasm = (DATASETS / f"{name}.wasm").read_bytes()
    out = instrument_memory_grow(wasm)
    assert out != wasm  # these all call malloc, so they have a memory.grow
    module = wasmtime.Module(get_engine(), out)  # validates
    assert REFUSED_EXPORT in {e.name for e in module.exports}
    original = wasmtime.Module(get_engine(), wasm)
    assert [(i.module, i.name) for i in module.imports] == [
        (i.module, i.name) for i in original.imports
    ]


def test_decoder_covers_simd_exceptions_bulk_memory_and_tables():
    wat = """(module
      (type $t (func (param i32) (result i32)))
      (table 2 funcref) (elem (i32.const 0) $f)
      (tag $e)
      (memory (export "memory") 1 100)
      (data $d "abc")
      (func $f (type $t) (local.get 0))
      (func (export "_start") (local v128) (local i64)
        (local.set 0 (v128.const i32x4 1 2 3 4))
        (local.set 0
          (i8x16.shuffle 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 (local.get 0) (local.get 0)))
        (drop (i32x4.extract_lane 2 (local.get 0)))
        (v128.store offset=16 align=4 (i32.const 0) (local.get 0))
        (local.set 0 (v128.load32_lane 1 (i32.const 0) (local.get 0)))
        (memory.init $d (i32.const 0) (i32.const 0) (i32.const 3))
        (memory.copy (i32.const 8) (i32.const 0) (i32.const 3))
        (memory.fill (i32.const 0) (i32.const 0) (i32.const 1))
        (drop (table.size 0))
        (drop (call_indirect (type $t) (i32.const 7) (i32.const 0)))
        (block $b (br_table $b $b (i32.const 1)))
        (drop (select (result i32) (i32.const 1) (i32.const 2) (i32.const 0)))
        (local.set 1 (i64.const -1234567890123))
        (drop (f64.const 1.5)) (drop (f32.const 2.5))
        (block $h (try_table (catch $e $h) (throw $e)))
        (drop (memory.grow (i32.const 1)))
        (drop (i32.trunc_sat_f32_s (f32.const 1)))
        (drop (memory.size)))
    )"""
    wasm = wasmtime.wat2wasm(wat)
    out = instrument_memory_grow(wasm)
    assert out != wasm
    wasmtime.Module(get_engine(), out)
