"""A libp2p mesh peer with a thread-safe, blocking API (and ``a``-prefixed asyncio twins).

:class:`Libp2pNode` is the libp2p implementation of
:class:`meshbench.runtime.transport.Transport`. It owns two threads: the trio loop that runs
:class:`~meshbench.net.host.MeshHost`, and a dispatcher that calls subscribers, so a slow
subscriber never stalls the network. :meth:`close` ends both.

Example::

    node = Libp2pNode(identity, BlobStore(path), listen=["/ip4/127.0.0.1/tcp/9000"]).start()
    node.subscribe("tasks", lambda task, peer: print(task.cid, "from", peer))
    node.publish("tasks", signed_task)

Safe defaults everywhere: listen on 127.0.0.1 only, mDNS off. A LAN node asks for both
(``listen=["/ip4/0.0.0.0/tcp/9000"], mdns=True``).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from meshbench.core import encoding
from meshbench.core.encoding import CID
from meshbench.core.errors import NetworkError
from meshbench.core.identity import Identity
from meshbench.core.model import Model
from meshbench.net.guard import GuardConfig
from meshbench.net.host import HostConfig, MeshHost
from meshbench.net.peers import PeerRecord
from meshbench.net.runner import TrioThread
from meshbench.net.topics import Topic, topic_for_type
from meshbench.store.blobs import BlobStore

__all__ = ["Callback", "Libp2pNode", "Subscription", "join"]

log = logging.getLogger("meshbench.net")

#: A subscriber: called with the checked object and the PeerID it came from.
Callback = Callable[[Model, str], None]


class Subscription:
    """A registered callback; :meth:`cancel` stops further calls."""

    def __init__(self, node: Libp2pNode, topic: Topic, callback: Callback) -> None:
        self.topic = topic
        self.callback = callback
        self._node = node

    def cancel(self) -> None:
        self._node._unsubscribe(self)


class Libp2pNode:
    def __init__(
        self,
        identity: Identity,
        store: BlobStore,
        *,
        listen: Sequence[str] = ("/ip4/127.0.0.1/tcp/0",),
        bootstrap: Sequence[str] = (),
        mdns: bool = False,
        muxer: str = "YAMUX",
        guard: GuardConfig | None = None,
        max_blob_bytes: int | None = None,
        sync_on_join: bool = True,
        bench_protocol: bool = False,
        reprovide_s: float | None = None,
        provider_ttl_s: float | None = None,
    ) -> None:
        self.identity = identity
        self.store = store
        self.config = HostConfig(
            identity=identity,
            listen=tuple(listen),
            bootstrap=tuple(bootstrap),
            mdns=mdns,
            muxer=muxer,
            guard=guard or GuardConfig(),
            max_blob_bytes=max_blob_bytes or store.max_blob_bytes,
            sync_on_join=sync_on_join,
            bench_protocol=bench_protocol,
            **({} if reprovide_s is None else {"reprovide_s": reprovide_s}),
            **({} if provider_ttl_s is None else {"provider_ttl_s": provider_ttl_s}),
        )
        self._subs: dict[Topic, list[Subscription]] = {t: [] for t in Topic}
        self._lock = threading.Lock()
        self._inbox: queue.SimpleQueue[tuple[Topic, Model, str] | None] = queue.SimpleQueue()
        self._dispatcher: threading.Thread | None = None
        self._host: MeshHost | None = None
        self._trio = TrioThread(self._serve, name=f"meshbench-libp2p-{identity.did[-8:]}")

    # --- lifecycle -----------------------------------------------------------------------
    def start(self, timeout: float = 30.0) -> Self:
        self._dispatcher = threading.Thread(
            target=self._dispatch, name="meshbench-net-dispatch", daemon=False
        )
        self._dispatcher.start()
        try:
            self._trio.start(timeout)
        except BaseException:
            self._stop_dispatcher()
            raise
        return self

    async def _serve(self, nursery: Any, task_status: Any) -> None:
        # MeshHost is built on the trio thread: py-libp2p creates trio objects eagerly.
        self._host = MeshHost(self.config, self.store, self._on_message)
        await self._host.run(nursery, task_status=task_status)

    def close(self) -> None:
        """Leave the mesh: stop the libp2p thread and the dispatcher. Idempotent."""
        try:
            self._trio.stop()
        finally:
            self._stop_dispatcher()

    def __enter__(self) -> Self:
        return self if self._trio.running else self.start()

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def host(self) -> MeshHost:
        if self._host is None or not self._trio.running:
            raise NetworkError("the libp2p node is not running; call start() first")
        return self._host

    # --- identity and addresses --------------------------------------------------------------
    @property
    def did(self) -> str:
        return self.identity.did

    @property
    def peer_id(self) -> str:
        return str(self.host.peer_id)

    @property
    def addrs(self) -> list[str]:
        """Dialable multiaddrs of this node, each ending in ``/p2p/<peer id>``."""
        return self._trio.call(self._addrs)

    async def _addrs(self) -> list[str]:
        suffix = f"/p2p/{self.host.peer_id}"
        return [a if "/p2p/" in a else a + suffix for a in self.host.addrs()]

    # --- the Transport interface ----------------------------------------------------------------
    def publish(self, topic: Topic | str, obj: Model) -> bool:
        """Gossip a signed object; False when the mesh had it already."""
        return self._trio.call(self.host.publish, Topic.parse(topic), obj)

    def publish_object(self, obj: Model) -> bool:
        """Gossip ``obj`` on the topic its type belongs to."""
        return self.publish(topic_for_type(obj.__struct_config__.tag), obj)

    def publish_many(self, topic: Topic | str, objs: Iterable[Model]) -> int:
        """Gossip many objects in one call (paced to the peers' queues); return how many sent."""
        return self._trio.call(self._publish_many, Topic.parse(topic), list(objs), timeout=600)

    async def _publish_many(self, topic: Topic, objs: list[Model]) -> int:
        sent = 0
        for obj in objs:
            sent += await self.host.publish(topic, obj)
        return sent

    def subscribe(self, topic: Topic | str, callback: Callback) -> Subscription:
        sub = Subscription(self, Topic.parse(topic), callback)
        with self._lock:
            self._subs[sub.topic] = [*self._subs[sub.topic], sub]
        return sub

    def _unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            self._subs[sub.topic] = [s for s in self._subs[sub.topic] if s is not sub]

    def fetch_blob(
        self, cid: CID | str, *, peers: Sequence[str] = (), timeout: float = 300
    ) -> Path:
        """Fetch a blob from the mesh into the store (if not there yet); return its path."""
        c = encoding.parse_cid(cid, codec=encoding.RAW)
        self._trio.call(self.host.fetch, c, tuple(peers), timeout, timeout=timeout + 30)
        return self.store.path(c)

    def provide(self, cid: CID | str) -> None:
        self._trio.call(self.host.provide, encoding.parse_cid(cid, codec=encoding.RAW))

    def unprovide(self, cid: CID | str) -> None:
        """Stop announcing ``cid`` (the records other peers hold lapse after their TTL)."""
        self._trio.call(self._unprovide, encoding.parse_cid(cid, codec=encoding.RAW))

    async def _unprovide(self, cid: CID) -> None:
        self.host.unprovide(cid)

    def provider_records(self, cid: CID | str) -> dict[str, float]:
        """Peer id -> arrival time of each provider record of ``cid`` this node holds."""
        return self._trio.call(self._provider_records, encoding.parse_cid(cid, codec="raw"))

    async def _provider_records(self, cid: CID) -> dict[str, float]:
        return self.host.provider_records(cid)

    def find_providers(self, cid: CID | str) -> list[str]:
        c = encoding.parse_cid(cid, codec=encoding.RAW)
        return [str(p) for p in self._trio.call(self.host.find_providers, c)]

    def peers(self) -> list[PeerRecord]:
        return self._trio.call(self._peers)

    async def _peers(self) -> list[PeerRecord]:
        return self.host.peers()

    # --- more ----------------------------------------------------------------------------------
    def connect(self, addr: str) -> str:
        """Dial a ``/ip4/.../tcp/.../p2p/<id>`` multiaddr; return the PeerID."""
        return self._trio.call(self.host.connect, addr)

    def sync(self, peer_id: str) -> int:
        """Catch up on the events ``peer_id`` keeps; return how many were new."""
        return self._trio.call(self.host.sync_from, peer_id, timeout=120)

    def wait_for_peers(self, count: int, timeout: float = 30.0) -> None:
        """Wait until ``count`` peers subscribe to every mesh topic."""
        self._trio.call(self.host.wait_for_topic_peers, count, timeout, timeout=timeout + 5)

    def bench_stream(self, peer_id: str, size: int) -> float:
        """Seconds to read ``size`` bytes of a bare libp2p stream from ``peer_id`` (bench)."""
        return self._trio.call(self.host.bench_stream, peer_id, size, timeout=600)

    def stats(self) -> dict[str, Any]:
        return self._trio.call(self._stats)

    async def _stats(self) -> dict[str, Any]:
        return self.host.stats()

    def events(self) -> list[tuple[Topic, bytes, float]]:
        """Accepted events kept for late joiners, oldest first: (topic, bytes, arrival time)."""
        return self._trio.call(self._events)

    async def _events(self) -> list[tuple[Topic, bytes, float]]:
        return list(self.host.events)

    def set_event_source(self, source: Callable[[], Iterable[tuple[Topic, bytes]]]) -> None:
        """Serve late joiners from ``source`` (e.g. the ledger) instead of the gossip log."""
        self.host.event_source = source

    # --- asyncio twins (Jupyter, Dask) ---------------------------------------------------------
    async def apublish(self, topic: Topic | str, obj: Model) -> bool:
        return await self._trio.acall(self.host.publish, Topic.parse(topic), obj)

    async def afetch_blob(self, cid: CID | str, *, peers: Sequence[str] = ()) -> Path:
        c = encoding.parse_cid(cid, codec=encoding.RAW)
        await self._trio.acall(self.host.fetch, c, tuple(peers), 300.0)
        return self.store.path(c)

    async def aprovide(self, cid: CID | str) -> None:
        await self._trio.acall(self.host.provide, encoding.parse_cid(cid, codec=encoding.RAW))

    async def apeers(self) -> list[PeerRecord]:
        return await self._trio.acall(self._peers)

    # --- delivery --------------------------------------------------------------------------
    def _on_message(self, topic: Topic, obj: Model, origin: str) -> None:
        self._inbox.put((topic, obj, origin))  # on the trio thread: never block it

    def _dispatch(self) -> None:
        while (item := self._inbox.get()) is not None:
            topic, obj, origin = item
            for sub in self._subs[topic]:
                try:
                    sub.callback(obj, origin)
                except Exception:
                    log.exception("subscriber of %s failed on %s", topic, obj.cid)

    def _stop_dispatcher(self) -> None:
        if self._dispatcher is not None and self._dispatcher.is_alive():
            self._inbox.put(None)
            if self._dispatcher is not threading.current_thread():  # close() from a callback
                self._dispatcher.join(10)


def join(
    data_dir: str | Path,
    *,
    listen: Sequence[str] = ("/ip4/127.0.0.1/tcp/0",),
    bootstrap: Sequence[str] = (),
    key: str = "default",
    mdns: bool = False,
) -> Libp2pNode:
    """Join a live mesh from a notebook with the data dir's identity and blob store.

    ``meshbench.Mesh.join`` (runtime issue) will put a AuthorityNode on top of this.
    """
    from meshbench.store.keystore import Keystore

    root = Path(data_dir)
    identity = Keystore(root / "keys").load_or_create(key)
    node = Libp2pNode(
        identity, BlobStore(root / "blobs"), listen=listen, bootstrap=bootstrap, mdns=mdns
    )
    return node.start()
