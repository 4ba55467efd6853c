"""The manual clock: virtual time for the runtime, advanced by the test (trio MockClock style)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

import meshbench as mb
from meshbench.runtime.clock import T0_MS, ClockError, ManualClock
from meshbench.runtime.mesh import Mesh

WASM = Path(__file__).resolve().parents[2] / "datasets" / "wasm"


def test_it_stands_still_until_advanced() -> None:
    clock = ManualClock()
    assert clock() == clock.now() == T0_MS
    assert clock.advance(250) == T0_MS + 250 == clock()
    assert clock.advance(0) == T0_MS + 250


def test_it_never_goes_back_and_a_refusal_changes_nothing() -> None:
    clock = ManualClock(start_ms=5)
    with pytest.raises(ClockError, match="only moves forward"):
        clock.advance(-1)
    assert isinstance(ClockError("x"), mb.MeshError)
    assert clock() == 5


def test_wakers_run_after_each_advance_until_removed() -> None:
    clock = ManualClock(start_ms=0)
    seen: list[int] = []
    remove = clock.on_advance(lambda: seen.append(clock()))
    clock.advance(1)
    clock.advance(2)
    remove()
    clock.advance(3)
    assert seen == [1, 3]


def test_concurrent_advances_all_count() -> None:
    clock = ManualClock(start_ms=0)
    threads = [
        threading.Thread(target=lambda: [clock.advance(1) for _ in range(500)]) for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert clock() == 2_000


def test_a_deadline_passes_when_the_clock_says_so(tmp_path: Path) -> None:
    clock = ManualClock()
    with Mesh.in_process(workers=3, data_dir=tmp_path, clock=clock) as mesh:
        huge = mb.CapabilityScope(memory_mb=60_000)  # no worker can take it
        h = mesh.publish(WASM / "hello.wasm", b"", fee=5_000, scope=huge, deadline_s=1.0)
        assert h.task.created_at == T0_MS and h.task.deadline == T0_MS + 1_000
        clock.advance(999)  # returns once the node has fired whatever fell due
        assert not h.done() and h.state == "Published"
        clock.advance(1)
        assert h.done() and h.state == "Settled"
        assert h.result(timeout=0).outcome == "Expired"


def test_events_carry_the_virtual_time(tmp_path: Path) -> None:
    clock = ManualClock(start_ms=T0_MS)
    with Mesh.in_process(workers=3, data_dir=tmp_path, clock=clock) as mesh:
        clock.advance(42)
        r = mesh.publish(WASM / "hello.wasm", b"").result(timeout=60)
        assert r.accepted
        assert r.settlement is not None and r.settlement.timestamp == T0_MS + 42
        assert {v.created_at for v in r.verifications} == {T0_MS + 42}  # signed by workers
        assert r.receipt is not None and r.receipt.created_at == T0_MS + 42
