"""Trio in its own thread, with a bridge for synchronous and asyncio callers.

py-libp2p runs on trio; Jupyter and Dask run asyncio. A :class:`TrioThread` owns one trio
event loop in a daemon-free thread: :meth:`submit` schedules a coroutine function on it and
returns a ``concurrent.futures.Future`` (so ``.result(timeout)`` from sync code and
``await asyncio.wrap_future(...)`` from asyncio code both work); :meth:`stop` cancels the
service, waits for the thread to end and fails every pending call with
:class:`NetworkError`. No thread outlives :meth:`stop`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import trio

from meshbench.core.errors import NetworkError

__all__ = ["TrioThread", "leaf_exception"]

T = TypeVar("T")
Service = Callable[[trio.Nursery, Any], Awaitable[None]]


class TrioThread:
    """Run ``service(nursery, task_status)`` on trio in a thread until :meth:`stop`."""

    def __init__(self, service: Service, *, name: str = "meshbench-trio") -> None:
        self._service = service
        self._name = name
        self._thread: threading.Thread | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._nursery: trio.Nursery | None = None
        self._stop: trio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._pending: set[concurrent.futures.Future[Any]] = set()
        self._lock = threading.Lock()
        self._closed = False

    # --- lifecycle ---------------------------------------------------------------------
    def start(self, timeout: float = 30.0) -> None:
        """Start the loop and the service; return once the service reports it is ready."""
        if self._thread is not None:
            raise NetworkError("this node was already started")
        self._thread = threading.Thread(target=self._run, name=self._name)
        self._thread.start()
        if not self._ready.wait(timeout):
            self.stop()
            raise NetworkError(f"the libp2p node did not start within {timeout:.0f} s")
        if self._error is not None:
            self._thread.join(timeout)
            cause = leaf_exception(self._error)
            raise NetworkError(f"the libp2p node failed to start: {cause}") from cause

    def stop(self, timeout: float = 15.0) -> None:
        """Cancel the service, wait for the thread, fail pending calls. Idempotent."""
        with self._lock:
            self._closed = True
            token, stop = self._token, self._stop
        if token is not None and stop is not None:
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(stop.set)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise NetworkError(f"the libp2p thread did not stop within {timeout:.0f} s")
        self._fail_pending()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and not self._closed

    # --- calls into the loop -------------------------------------------------------------
    def submit(self, fn: Callable[..., Awaitable[T]], *args: Any) -> concurrent.futures.Future[T]:
        fut: concurrent.futures.Future[T] = concurrent.futures.Future()
        with self._lock:
            if self._closed or self._token is None:
                raise NetworkError("the libp2p node is not running")
            self._pending.add(fut)
            token = self._token
        try:
            token.run_sync_soon(self._spawn, fn, args, fut)
        except trio.RunFinishedError:
            self._settle(fut, exc=NetworkError("the libp2p node has stopped"))
        return fut

    def call(self, fn: Callable[..., Awaitable[T]], *args: Any, timeout: float = 60.0) -> T:
        """Run ``fn(*args)`` on the loop and wait for its result (from a non-trio thread)."""
        if threading.current_thread() is self._thread:
            raise NetworkError("call() from the trio thread itself would deadlock")
        fut = self.submit(fn, *args)
        try:
            return fut.result(timeout)
        except concurrent.futures.TimeoutError:
            fut.cancel()
            raise NetworkError(f"no answer from the libp2p node within {timeout:.0f} s") from None

    async def acall(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """The asyncio face of :meth:`call` (for Jupyter and Dask code)."""
        return await asyncio.wrap_future(self.submit(fn, *args))

    def call_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run a plain function on the trio thread, without waiting."""
        if self._token is None:
            raise NetworkError("the libp2p node is not running")
        self._token.run_sync_soon(fn, *args)

    # --- internals -------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            trio.run(self._main)
        except BaseException as exc:  # reported to start() or logged by stop()
            if not self._ready.is_set():
                self._error = exc
        finally:
            self._ready.set()
            with self._lock:
                self._closed = True
                self._token = None
            self._fail_pending()

    async def _main(self) -> None:
        self._stop = trio.Event()
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            await nursery.start(self._service, nursery)
            with self._lock:
                self._token = trio.lowlevel.current_trio_token()
                if self._closed:
                    self._stop.set()
            self._ready.set()
            await self._stop.wait()
            nursery.cancel_scope.cancel()

    def _spawn(self, fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...], fut: Any) -> None:
        if fut.cancelled() or self._nursery is None:
            self._settle(fut, exc=NetworkError("cancelled"))
            return
        self._nursery.start_soon(self._run_into, fn, args, fut)

    async def _run_into(
        self, fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...], fut: Any
    ) -> None:
        with trio.CancelScope() as scope:
            token = trio.lowlevel.current_trio_token()

            def cancel_if_abandoned(f: concurrent.futures.Future[Any]) -> None:
                # The caller gave up (timeout, asyncio cancellation): stop the trio task too.
                if f.cancelled():
                    with contextlib.suppress(trio.RunFinishedError):
                        token.run_sync_soon(scope.cancel)

            fut.add_done_callback(cancel_if_abandoned)
            try:
                result = await fn(*args)
            except trio.Cancelled:
                self._settle(fut, exc=NetworkError("the libp2p node stopped during the call"))
                raise
            except BaseException as exc:
                self._settle(fut, exc=exc)
            else:
                self._settle(fut, result=result)

    def _settle(self, fut: Any, *, result: Any = None, exc: BaseException | None = None) -> None:
        with self._lock:
            self._pending.discard(fut)
        if fut.done() or not fut.set_running_or_notify_cancel():
            return
        if exc is not None:
            fut.set_exception(exc)
        else:
            fut.set_result(result)

    def _fail_pending(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, set()
        for fut in pending:
            if not fut.done() and fut.set_running_or_notify_cancel():
                fut.set_exception(NetworkError("the libp2p node has stopped"))


def leaf_exception(exc: BaseException) -> BaseException:
    """The exception inside nested single-member exception groups (trio nurseries)."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc
