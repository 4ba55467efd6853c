"""Hostile and broken guests: every one ends in a typed error and the host carries on."""

from __future__ import annotations

import resource

import pytest
import wasmtime
from conftest import ROOMY

from meshbench.core.errors import (
    ExecutionError,
    ExecutionTimeout,
    GuestTrap,
    InvalidModule,
    IOLimitExceeded,
    MemoryLimitExceeded,
    OutOfFuel,
)
from meshbench.core.types import CapabilityScope


def test_infinite_loop_runs_out_of_fuel(executor, module):
    scope = CapabilityScope(cpu_cycles=5_000_000)
    with pytest.raises(OutOfFuel, match="cpu_cycles") as info:
        executor.run(module("loop"), scope=scope)
    assert info.value.fuel_used == 5_000_000


def test_wall_clock_backstop_interrupts(executor, module):
    scope = CapabilityScope(cpu_cycles=10**15)
    with pytest.raises(ExecutionTimeout) as info:
        executor.run(module("loop"), scope=scope, timeout_s=0.05)
    # wasmtime keeps fuel in a register inside a hot loop: an interrupt may not flush it
    assert info.value.fuel_used is not None


def test_memory_bomb_is_a_memory_error_not_exit_code_3(executor, module):
    scope = CapabilityScope(memory_mb=16)
    with pytest.raises(MemoryLimitExceeded, match="memory_mb=16") as info:
        executor.run(module("membomb"), scope=scope)
    assert info.value.fuel_used and info.value.fuel_used > 0


def test_memory_cap_bounds_the_host(executor, module):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(MemoryLimitExceeded):
        executor.run(module("membomb"), scope=CapabilityScope(memory_mb=64))
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 80 * 1024  # the guest touched at most its 64 MiB


def test_module_whose_initial_memory_exceeds_the_cap(executor):
    wasm = wasmtime.wat2wasm('(module (memory (export "memory") 300) (func (export "_start")))')
    with pytest.raises(MemoryLimitExceeded, match="at start"):
        executor.run(wasm, scope=CapabilityScope(memory_mb=16))


def test_trap_is_a_guest_trap_with_its_reason(executor, module):
    with pytest.raises(GuestTrap, match="integer divide by zero"):
        executor.run(module("trap"))


def test_deep_recursion_overflows_the_stack_deterministically(executor, module):
    fuels = set()
    for _ in range(2):
        with pytest.raises(GuestTrap, match="STACK_OVERFLOW") as info:
            executor.run(module("recursion"), scope=ROOMY)
        fuels.add(info.value.fuel_used)
    assert len(fuels) == 1


GIGABYTES_TO_STDOUT = """(module
  (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 17)
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 64))
    (i32.store (i32.const 4) (i32.const 1048576))
    (loop $again  ;; 1 MiB per call, forever
      (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
      (br $again))))"""


def test_gigabytes_to_stdout_hit_the_io_budget(executor):
    scope = CapabilityScope(io_mb=8, cpu_cycles=10**12)
    with pytest.raises(IOLimitExceeded, match="8388608") as info:
        executor.run(wasmtime.wat2wasm(GIGABYTES_TO_STDOUT), scope=scope)
    assert info.value.fuel_used and info.value.fuel_used > 0


def test_stdin_reads_count_against_the_io_budget(executor, module):
    with pytest.raises(IOLimitExceeded):
        executor.run(
            module("sha256"), b"x" * (3 << 20), scope=CapabilityScope(io_mb=2, cpu_cycles=10**10)
        )


def test_huge_argv_is_refused_before_running(executor, module):
    with pytest.raises(IOLimitExceeded, match="argv"):
        executor.run(module("hello"), args=("a" * 600_000, "b" * 600_000))
    with pytest.raises(IOLimitExceeded, match="arguments"):
        executor.run(module("hello"), args=("x",) * 5000)


def test_argument_with_nul_is_refused(executor, module):
    with pytest.raises(ExecutionError, match="NUL"):
        executor.run(module("hello"), args=("a\0b",))


@pytest.mark.parametrize(
    "data, match",
    [
        (b"", "not a WebAssembly module"),
        (b"#!/bin/sh\necho pwned\n", "not a WebAssembly module"),
        (b"\0asm\x0d\0\x01\0", "component or an unknown version"),
    ],
)
def test_not_wasm_is_an_invalid_module(executor, data, match):
    with pytest.raises(InvalidModule, match=match):
        executor.run(data)


def test_truncated_module_is_an_invalid_module(executor, module):
    wasm = module("sha256")
    for cut in (9, len(wasm) // 2, len(wasm) - 1):
        with pytest.raises(InvalidModule, match="invalid WebAssembly module"):
            executor.run(wasm[:cut])


def test_unknown_imports_are_named(executor):
    wasm = wasmtime.wat2wasm(
        '(module (import "host" "spawn_shell" (func)) (memory (export "memory") 1)'
        ' (func (export "_start")))'
    )
    with pytest.raises(InvalidModule, match=r"host\.spawn_shell"):
        executor.run(wasm)


def test_wrongly_typed_wasi_import_is_an_invalid_module(executor):
    wasm = wasmtime.wat2wasm(
        '(module (import "wasi_snapshot_preview1" "fd_write" (func (param i64)))'
        ' (memory (export "memory") 1) (func (export "_start")))'
    )
    with pytest.raises(InvalidModule, match="do not link"):
        executor.run(wasm)


def test_module_without_start_is_an_invalid_module(executor):
    wasm = wasmtime.wat2wasm('(module (memory (export "memory") 1))')
    with pytest.raises(InvalidModule, match="_start"):
        executor.run(wasm)


def test_bad_guest_pointer_to_icn_abi_traps(executor):
    wasm = wasmtime.wat2wasm(
        """(module (import "env" "output_store" (func $out (param i32 i32)))
        (memory (export "memory") 1)
        (func (export "_start") (call $out (i32.const 65000) (i32.const 1000))))"""
    )
    with pytest.raises(GuestTrap, match="bad pointer"):
        executor.run(wasm)


def test_bad_guest_pointer_to_wasi_is_efault(executor):
    wasm = wasmtime.wat2wasm(
        """(module
        (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
        (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
        (memory (export "memory") 1)
        (func (export "_start")
          (call $exit (call $w (i32.const 1) (i32.const 70000) (i32.const 1) (i32.const 8)))))"""
    )
    assert executor.run(wasm).exit_code == 21  # EFAULT


def test_the_host_survives_and_still_runs_tasks(executor, module):
    for name in ("loop", "trap", "membomb", "recursion"):
        with pytest.raises(ExecutionError):
            executor.run(module(name), scope=CapabilityScope(memory_mb=8))
    assert executor.run(module("hello")).output == b"hello, mesh\n"


def test_threads_each_get_their_own_outcome(executor, module):
    from concurrent.futures import ThreadPoolExecutor

    stdout_bomb = wasmtime.wat2wasm(GIGABYTES_TO_STDOUT)
    exit7 = wasmtime.wat2wasm(
        """(module (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
        (memory (export "memory") 1) (func (export "_start") (call $exit (i32.const 7))))"""
    )

    def outcome(job: int) -> str:
        try:
            if job % 3 == 0:
                executor.run(stdout_bomb, scope=CapabilityScope(io_mb=2, cpu_cycles=10**12))
            elif job % 3 == 1:
                return f"exit {executor.run(exit7).exit_code}"
            else:
                return executor.run(module("hello")).output.decode()
        except IOLimitExceeded:
            return "io"
        return "no error"

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(outcome, range(60)))
    assert results == [["io", "exit 7", "hello, mesh\n"][i % 3] for i in range(60)]


def test_host_calls_cost_fuel(executor, module):
    # hello: 12 wasm instructions and one fd_write of 12 bytes (100 + 12 // 64)
    assert executor.run(module("hello")).summary.fuel_used == 112
    clock_spin = wasmtime.wat2wasm(
        """(module
        (import "wasi_snapshot_preview1" "clock_time_get"
          (func $now (param i32 i64 i32) (result i32)))
        (memory (export "memory") 1)
        (func (export "_start")
          (loop $spin (drop (call $now (i32.const 1) (i64.const 0) (i32.const 0))) (br $spin))))"""
    )
    with pytest.raises(OutOfFuel) as info:
        executor.run(clock_spin, scope=CapabilityScope(cpu_cycles=100_000))
    assert info.value.fuel_used == 100_000
