"""The pooling allocator: more concurrent runs than slots wait for one, none fails."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from meshbench.exec.engine import MAX_CONCURRENT_RUNS, POOLING


def test_more_threads_than_slots_all_succeed(executor, module):
    hello = executor.load(module("hello"))
    workers = MAX_CONCURRENT_RUNS + 8
    barrier = threading.Barrier(workers, timeout=30)

    def task(_: int) -> bytes:
        barrier.wait()  # all start together, so the slots really run out
        return b"".join(executor.run(hello).stdout for _ in range(4))

    with ThreadPoolExecutor(max_workers=workers) as pool:
        outputs = list(pool.map(task, range(workers), timeout=60))
    assert outputs == [b"hello, mesh\n" * 4] * workers


def test_the_pool_admits_what_the_store_limits_admit():
    from meshbench.exec.wasm import MAX_TABLE_ELEMENTS

    assert POOLING["table_elements"] >= MAX_TABLE_ELEMENTS
    assert POOLING["max_tables_per_module"] >= 16  # the store allows 16 tables
    assert POOLING["max_memory_size"] >= 4 * 1024**3  # every 32-bit memory
    assert POOLING["total_memories"] == POOLING["total_core_instances"] == MAX_CONCURRENT_RUNS


def test_large_but_allowed_tables_and_globals_still_run(executor):
    import wasmtime

    from meshbench.testing.hostile import many_globals

    table = wasmtime.wat2wasm(
        '(module (memory (export "memory") 1) (table 1000000 funcref) (func (export "_start")))'
    )
    assert executor.run(table).exit_code == 0
    assert executor.run(many_globals(50_000)).exit_code == 0
