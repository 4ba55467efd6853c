"""The trio thread and its sync/asyncio bridge: results, errors, cancellation, clean stop."""

from __future__ import annotations

import asyncio
import threading

import pytest
import trio

from meshbench.core.errors import NetworkError, SchemaError
from meshbench.net.runner import TrioThread


async def _idle(nursery: trio.Nursery, task_status=trio.TASK_STATUS_IGNORED) -> None:
    task_status.started()
    await trio.sleep_forever()


async def add(a: int, b: int) -> int:
    await trio.sleep(0)
    return a + b


async def fail() -> None:
    raise SchemaError("bad input")


def new_threads(before: set[threading.Thread]) -> set[threading.Thread]:
    # trio keeps idle worker threads for 10 s, named "Trio thread N"; they are daemons
    # that end on their own and belong to trio's cache, not to a node.
    return {
        t
        for t in set(threading.enumerate()) - before
        if t.is_alive() and not t.name.startswith("Trio thread")
    }


def test_call_and_acall_return_results_and_raise_typed_errors() -> None:
    before = set(threading.enumerate())
    runner = TrioThread(_idle)
    runner.start()
    try:
        assert runner.call(add, 2, 3) == 5
        with pytest.raises(SchemaError, match="bad input"):
            runner.call(fail)
        assert asyncio.run(runner.acall(add, 4, 5)) == 9

        async def many() -> list[int]:
            return await asyncio.gather(*(runner.acall(add, i, i) for i in range(50)))

        assert asyncio.run(many()) == [2 * i for i in range(50)]
    finally:
        runner.stop()
    assert not runner.running
    assert new_threads(before) == set()
    with pytest.raises(NetworkError):
        runner.call(add, 1, 1)


def test_stop_fails_calls_in_flight_and_is_idempotent() -> None:
    runner = TrioThread(_idle)
    runner.start()
    fut = runner.submit(trio.sleep_forever)
    runner.stop()
    with pytest.raises(NetworkError):
        fut.result(5)
    runner.stop()


def test_a_call_that_times_out_raises_network_error() -> None:
    runner = TrioThread(_idle)
    runner.start()
    try:
        with pytest.raises(NetworkError, match="no answer"):
            runner.call(trio.sleep, 5, timeout=0.1)
    finally:
        runner.stop()


def test_a_service_that_fails_to_start_reports_why() -> None:
    async def broken(nursery: trio.Nursery, task_status=trio.TASK_STATUS_IGNORED) -> None:
        raise OSError("address in use")

    runner = TrioThread(broken)
    with pytest.raises(NetworkError, match="address in use"):
        runner.start()
    assert not runner.running


def test_a_call_the_caller_abandons_is_cancelled_in_trio_too() -> None:
    finished = threading.Event()
    cancelled = threading.Event()

    async def slow() -> None:
        try:
            await trio.sleep(30)
            finished.set()
        except trio.Cancelled:
            cancelled.set()
            raise

    runner = TrioThread(_idle)
    runner.start()
    try:

        async def caller() -> None:
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(runner.acall(slow), 0.1)

        asyncio.run(caller())
        assert cancelled.wait(5) and not finished.is_set()
    finally:
        runner.stop()
