"""Clocks at the edge: the real one, and a manual one for tests (the core never reads either).

A clock is a callable returning milliseconds since the Unix epoch. :func:`wall_clock_ms` is
the real one. :class:`ManualClock` (in the style of trio's ``MockClock``) stands still
until a test advances it; every node driven by it is woken by :meth:`ManualClock.advance`,
so timers that fall due fire at once instead of after a wall-clock wait. Example::

    clock = ManualClock()
    mesh = Mesh.in_process(workers=4, clock=clock)
    task = mesh.publish(wasm, b"", deadline_s=1.0)
    clock.advance(1_000)        # the deadline passes now, not in a second
    task.result().outcome       # "Expired"
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from meshbench.core.errors import MeshError

__all__ = ["T0_MS", "ClockError", "ManualClock", "wall_clock_ms"]

#: Where a :class:`ManualClock` starts by default: 2023-11-14T22:13:20Z, a fixed instant.
T0_MS = 1_700_000_000_000


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class ClockError(MeshError, ValueError):
    """A manual clock was asked to go backwards."""


class ManualClock:
    """Virtual time in milliseconds: ``clock()`` / ``clock.now()`` read it, ``advance(ms)``
    moves it. Thread-safe; the wakers (``on_advance``) run in the advancing thread, after
    the new time is visible to every reader. A node's waker returns once the node has
    fired the timers that fell due (so ``advance`` returns after them), but what those
    timers set going (a worker's execution) is still asynchronous."""

    def __init__(self, start_ms: int = T0_MS) -> None:
        self._now = int(start_ms)
        self._lock = threading.Lock()
        self._wakers: list[Callable[[], None]] = []

    def now(self) -> int:
        with self._lock:
            return self._now

    def __call__(self) -> int:
        return self.now()

    def advance(self, ms: int) -> int:
        """Move the clock ``ms`` milliseconds forward, wake every driver; the new time."""
        if ms < 0:
            raise ClockError(f"a clock only moves forward (advance({ms}))")
        with self._lock:
            self._now += int(ms)
            now = self._now
            wakers = list(self._wakers)
        for wake in wakers:
            wake()
        return now

    def on_advance(self, wake: Callable[[], None]) -> Callable[[], None]:
        """Call ``wake()`` after every advance (it may wait for its driver, never for the
        advancing thread); returns the function that removes it."""
        with self._lock:
            self._wakers.append(wake)

        def remove() -> None:
            with self._lock:
                if wake in self._wakers:
                    self._wakers.remove(wake)

        return remove

    def __repr__(self) -> str:
        return f"ManualClock({self.now()})"
