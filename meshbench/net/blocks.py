"""``/meshbench/blocks/1.0.0``: fetch a blob by CID from a peer, streamed, checked, bounded.

Wire format (one request per stream)::

    request  = uvarint(len(cid)) cid-bytes            ; a binary CIDv1, codec raw
    response = 0x00 uvarint(size) size*bytes          ; found
             | 0x01                                   ; not here
             | 0x02 uvarint(len(msg)) utf8-msg        ; refused (too large, bad request)

The requester refuses a size over its limit before reading a byte of content, writes what it
reads to a temporary file through :meth:`BlobStore.put`, which hashes while writing and fails
(so nothing is stored) unless the bytes hash to the CID asked for. A blob is never held
whole in memory on either side.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Any, Final

import trio

from meshbench.core import encoding
from meshbench.core.encoding import CID
from meshbench.core.errors import BlobNotFound, BlobTooLarge, CIDMismatch, MeshError, NetworkError
from meshbench.net.runner import leaf_exception
from meshbench.net.wire import StreamReader, uvarint
from meshbench.store.blobs import BlobStore

__all__ = ["BLOCKS_PROTOCOL", "fetch_from_stream", "serve_stream"]

BLOCKS_PROTOCOL: Final = "/meshbench/blocks/1.0.0"
OK, NOT_FOUND, REFUSED = 0, 1, 2
SEND_CHUNK: Final = 1024 * 1024  # fewer, larger stream writes
#: Bytes received but not yet written that make the reader wait for the writer thread.
RECEIVE_BUFFER: Final = 16 * 1024 * 1024
_MAX_CID_BYTES: Final = 128


async def serve_stream(stream: Any, store: BlobStore) -> int:
    """Answer one request on ``stream``; return the bytes sent."""
    reader = StreamReader(stream, chunk=_MAX_CID_BYTES + 2)
    try:
        n = await reader.uvarint(2)
        if not 0 < n <= _MAX_CID_BYTES:
            raise NetworkError("bad request")
        cid = encoding.parse_cid(await reader.exactly(n), codec=encoding.RAW)
    except MeshError as exc:
        msg = str(exc)[:200].encode()
        await stream.write(bytes([REFUSED]) + uvarint(len(msg)) + msg)
        return 0
    if not store.has(cid):
        await stream.write(bytes([NOT_FOUND]))
        return 0
    size = store.size(cid)
    await stream.write(bytes([OK]) + uvarint(size))
    sent = 0
    with open(store.path(cid), "rb") as f:
        while chunk := f.read(SEND_CHUNK):
            await stream.write(chunk)
            sent += len(chunk)
    if sent != size:
        raise NetworkError(f"blob {cid} changed size while it was sent")
    return sent


async def fetch_from_stream(stream: Any, cid: CID, store: BlobStore, max_bytes: int) -> int:
    """Ask for ``cid`` on ``stream`` and store the checked blob; return its size.

    Raises :class:`BlobNotFound`, :class:`BlobTooLarge`, :class:`CIDMismatch` or
    :class:`NetworkError`; on any of them nothing is stored.
    """
    raw = bytes(cid)
    await stream.write(uvarint(len(raw)) + raw)
    reader = StreamReader(stream)
    status = (await reader.exactly(1))[0]
    if status == NOT_FOUND:
        raise BlobNotFound(f"the peer does not have {cid}")
    if status == REFUSED:
        n = await reader.uvarint()
        reason = (await reader.exactly(min(n, 1024))).decode(errors="replace")
        raise NetworkError(f"the peer refused the request for {cid}: {reason}")
    if status != OK:
        raise NetworkError(f"unknown blocks status {status} from the peer")
    size = await reader.uvarint()
    limit = min(max_bytes, store.max_blob_bytes)
    if size > limit:
        raise BlobTooLarge(f"{cid} is {size} bytes, over this node's limit of {limit}")
    return await _receive_into_store(reader, cid, size, store)


async def _receive_into_store(reader: StreamReader, cid: CID, size: int, store: BlobStore) -> int:
    """Stream ``size`` bytes from ``reader`` into ``store``, writing on a worker thread.

    The trio side reads the stream; a worker thread hashes and writes (both release the
    GIL). Chunks cross in a :class:`_Handoff`, which costs the trio side no call into
    the other thread unless RECEIVE_BUFFER bytes are already waiting to be written.
    """
    handoff = _Handoff(RECEIVE_BUFFER, trio.lowlevel.current_trio_token())

    def checked() -> Iterator[bytes]:
        got = 0
        while (item := handoff.get()) is not None:
            if isinstance(item, MeshError):
                raise item
            got += len(item)
            yield item
        if got != size:
            raise NetworkError(f"{cid}: got {got} of {size} bytes")

    async def pump() -> None:
        remaining = size
        try:
            while remaining:
                data = await reader.some(min(remaining, 1 << 20))
                if not data:
                    raise NetworkError(f"{cid}: stream ended {remaining} bytes early")
                remaining -= len(data)
                await handoff.put(data)
            if not await reader.at_end():
                raise NetworkError(f"{cid}: the peer sent more than the {size} bytes it announced")
        except MeshError as exc:
            handoff.close(exc)
        except Exception as exc:  # a libp2p stream error: report it as ours
            handoff.close(NetworkError(f"{cid}: transfer failed: {exc}"))
        finally:
            handoff.close(None)  # the writer sees the end (or a short count) and fails the put

    def put() -> CID:
        try:  # put() hashes as it writes and refuses (stores nothing) unless it is ``cid``
            return store.put(checked(), expected=cid)
        finally:
            handoff.release()  # a writer that failed early must not leave pump() waiting

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(pump)
            stored = await trio.to_thread.run_sync(put)
    except BaseExceptionGroup as group:  # trio wraps; callers want the typed error
        raise leaf_exception(group) from None
    if stored != cid:  # put() refused a mismatch already; a store that ignored it is caught
        store.delete(stored)
        raise CIDMismatch(f"stored bytes hash to {stored}, not {cid}")
    return size


class _Handoff:
    """Chunks from the trio thread to one writer thread, at most ``limit`` bytes waiting.

    ``put`` queues without blocking while under the limit (no call into the writer's
    thread); over it, it waits until the writer has taken enough, and only then does the
    writer call back into trio, once. ``close`` queues a last item (an error, or None
    for the end); only the first close counts.
    """

    def __init__(self, limit: int, token: trio.lowlevel.TrioToken) -> None:
        self._queue: queue.SimpleQueue[bytes | MeshError | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._limit = limit
        self._waiting = 0
        self._room: trio.Event | None = None
        self._token = token
        self._closed = False

    async def put(self, chunk: bytes) -> None:
        with self._lock:
            self._waiting += len(chunk)
            room = self._room = trio.Event() if self._waiting > self._limit else None
        self._queue.put(chunk)
        if room is not None:
            await room.wait()

    def close(self, last: MeshError | None) -> None:
        if not self._closed:
            self._closed = True
            self._queue.put(last)

    def get(self) -> bytes | MeshError | None:
        """On the writer thread: the next chunk, blocking until there is one."""
        item = self._queue.get()
        if isinstance(item, bytes):
            with self._lock:
                self._waiting -= len(item)
                room = self._room if self._waiting <= self._limit else None
                if room is not None:
                    self._room = None
            if room is not None:
                trio.from_thread.run_sync(room.set, trio_token=self._token)
        return item

    def release(self) -> None:
        """On the writer thread, once it stops: wake a ``put`` that waits for room."""
        with self._lock:
            room, self._room, self._limit = self._room, None, 1 << 62
        if room is not None:
            trio.from_thread.run_sync(room.set, trio_token=self._token)
