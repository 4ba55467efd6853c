"""The libp2p side of a mesh node, on trio: host, gossip, content, discovery, Identify.

:class:`MeshHost` is async and lives on the node's trio thread (see :mod:`.node` for the
thread-safe face). It wires py-libp2p 0.8.1 as the mesh needs it:

* TCP + Noise (only) + Yamux, Mplex as the muxer fallback; the key pair is the node's
  Ed25519 identity, so its PeerID and did:key name the same key.
* Gossipsub 1.1 with strict signing on, one validator per topic (:class:`GossipGuard`), and
  py-libp2p's silent limits replaced (see ``_MeshPubsub``): its 10 msg/s/topic spam filter
  is off (our per-peer token bucket replaces it), its 32-slot per-peer send queues are
  raised and publishing is paced to their fill level, and delivery bypasses its 32-slot
  subscription channels (which drop when full).
* Kademlia (server mode) for provider records of blob CIDs; ``/meshbench/blocks/1.0.0`` for
  the bytes; ``/meshbench/sync/1.0.0`` to hand a late joiner the events it missed.
* Identify with agent ``meshbench/<version>`` and protocol version ``/mesh/1.0.0``; mDNS and
  bootstrap addresses for discovery.
* Bulk transfers (blobs, the bench stream) over :mod:`.fastpath`: py-libp2p's Noise and
  Yamux patched for throughput (same bytes on the wire), and a wide receive window on each
  stream we read a blob from.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import multiaddr
import trio
from libp2p import new_host
from libp2p.abc import IHost, INetConn, INetStream, INetwork, INotifee
from libp2p.crypto.x25519 import create_new_key_pair as create_x25519_key_pair
from libp2p.custom_types import TProtocol
from libp2p.discovery.events.peerDiscovery import peerDiscovery
from libp2p.identity.identify import identify as identify_module
from libp2p.identity.identify.identify import ID as IDENTIFY_PROTOCOL
from libp2p.identity.identify.identify import parse_identify_response
from libp2p.kad_dht.kad_dht import DHTMode, KadDHT
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo as Libp2pPeerInfo
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.pubsub import rpc_queue
from libp2p.pubsub.gossipsub import PROTOCOL_ID, PROTOCOL_ID_V11, GossipSub
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import Pubsub
from libp2p.pubsub.validators import signature_validator
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.tools.anyio_service import background_trio_service

import meshbench
from meshbench.core import encoding
from meshbench.core.encoding import CID
from meshbench.core.errors import (
    BlobNotFound,
    MeshError,
    NetworkError,
    SchemaError,
    UnknownPeer,
)
from meshbench.core.identity import Identity
from meshbench.core.model import Model, Signed, decode_object
from meshbench.net import fastpath
from meshbench.net import sync as sync_frames
from meshbench.net.blocks import BLOCKS_PROTOCOL, fetch_from_stream, serve_stream
from meshbench.net.guard import SELF, GossipGuard, GuardConfig, Verdict
from meshbench.net.keys import did_from_peer_id, key_pair_of, parse_peer_id
from meshbench.net.peers import PeerRecord
from meshbench.net.sync import SYNC_PROTOCOL
from meshbench.net.topics import TOPIC_TYPES, Topic
from meshbench.net.wire import StreamReader, uvarint
from meshbench.store.blobs import BlobStore

__all__ = [
    "AGENT",
    "MESH_PROTOCOL_VERSION",
    "SYNC_PROTOCOL",
    "HostConfig",
    "MeshHost",
    "MessageHandler",
]

log = logging.getLogger("meshbench.net")

MESH_PROTOCOL_VERSION: Final = "/mesh/1.0.0"
AGENT: Final = f"meshbench/{meshbench.__version__}"
#: Benchmarks only (off unless HostConfig.bench_protocol): bytes from memory, no store.
BENCH_PROTOCOL: Final = "/meshbench/bench-stream/1.0.0"
#: A delivered message: (topic, checked object, PeerID of its origin).
MessageHandler = Callable[[Topic, Model, str], None]


@dataclass(kw_only=True)
class HostConfig:
    identity: Identity
    listen: Sequence[str] = ("/ip4/127.0.0.1/tcp/0",)
    bootstrap: Sequence[str] = ()
    mdns: bool = False  # mDNS only when asked (a LAN node); see Libp2pNode
    muxer: str = "YAMUX"  # or "MPLEX"; the other one is always offered as a fallback
    guard: GuardConfig = field(default_factory=GuardConfig)
    #: Per-peer gossip send queue (py-libp2p's default is 32 and drops silently when full).
    send_queue: int = 4096
    #: Publishing waits while any peer's send queue is fuller than this.
    publish_high_water: int = 1024
    #: Largest blob this node fetches (the store's own limit applies too).
    max_blob_bytes: int = 1024**3
    #: How many recent accepted events are kept to serve late joiners.
    event_log: int = 20_000
    #: Fetch the event log from bootstrap peers once connected.
    sync_on_join: bool = True
    #: Topics whose events are served to late joiners: the state a node folds (policy,
    #: balances, peers), not transient work messages, which would only be stale.
    sync_topics: frozenset[Topic] = frozenset({Topic.POLICY, Topic.LEDGER, Topic.PEERS})
    heartbeat_s: int = 1
    #: Every this many seconds our provider records are announced again (those of blobs no
    #: longer in the store are dropped), and records other peers gave us are pruned.
    reprovide_s: float = 600.0
    #: A provider record another peer gave us lapses after this long unless re-announced
    #: (py-libp2p keeps them 48 h; a peer that left should stop being asked sooner).
    provider_ttl_s: float = 1800.0
    #: Serve BENCH_PROTOCOL (a bare stream of zeros), for ``meshbench bench net``.
    bench_protocol: bool = False


@dataclass(slots=True)
class _PeerMeta:
    agent: str = ""
    protocol_version: str = ""
    protocols: tuple[str, ...] = ()


class _SizedQueues(dict[ID, Any]):
    """``Pubsub.peer_queues`` that gives every new per-peer RPC queue our capacity."""

    def __init__(self, capacity: int) -> None:
        super().__init__()
        self.capacity = capacity

    def __setitem__(self, key: ID, queue: Any) -> None:
        if isinstance(queue, rpc_queue.RpcQueue):
            queue._queue.max_size = self.capacity  # no constructor hook in 0.8.1
        super().__setitem__(key, queue)


#: How often a peer tells every peer its subscriptions again (see _reannounce_subscriptions).
SUBSCRIPTIONS_EVERY_S: Final = 5.0
#: Bytes of sync frames written at a time to a peer that joins late.
_SYNC_BATCH: Final = 256 * 1024


def _frames(events: Iterator[tuple[Topic, bytes]], limit: int) -> bytes:
    """The next sync frames of ``events``, up to about ``limit`` bytes (b"" at the end)."""
    batch = bytearray()
    for topic, data in events:
        batch += sync_frames.encode_frame(topic, data)
        if len(batch) > limit:
            break
    return bytes(batch)


class _MeshPubsub(Pubsub):
    """Pubsub whose accepted messages go straight to our handler.

    py-libp2p 0.8.1 hands messages to subscribers through a 32-slot channel per topic and
    drops (with a warning that is discarded unless ``LIBP2P_DEBUG`` is set) when it is full;
    a burst of 500 loses most of itself. Delivery here is a plain call instead.
    """

    def __init__(
        self,
        *args: Any,
        deliver: Callable[[rpc_pb2.Message], None],
        on_bad_signature: Callable[[ID], None],
        **kw: Any,
    ):
        super().__init__(*args, **kw)
        # Gossip is deduplicated by (sender, seqno) for ``seen_ttl`` (120 s). py-libp2p
        # starts the seqno at the wall clock in *seconds* and adds one per message, so a peer
        # that had sent more messages than it had been up for seconds and then restarted with
        # its key reused its old numbers: the mesh dropped what it said as seen, for up to two
        # minutes (a worker's commitments after a crash, slashed as a no-show). Start at the
        # clock in nanoseconds, as go-libp2p does: a restarted peer starts above any number it
        # used before unless it sent a billion messages a second.
        self.counter = time.time_ns()
        self._deliver = deliver
        self._on_bad_signature = on_bad_signature

    async def push_msg(self, msg_forwarder: ID, msg: rpc_pb2.Message) -> None:
        # py-libp2p drops a message with a bad libp2p signature without holding it against
        # the peer that sent it; count it as an invalid message so such a peer gets banned.
        if msg_forwarder != self.my_id and not signature_validator(msg):
            self._on_bad_signature(msg_forwarder)
            return
        await super().push_msg(msg_forwarder, msg)

    def notify_subscriptions(self, publish_message: rpc_pb2.Message) -> None:
        if any(t in self.subscribed_topics_receive for t in publish_message.topicIDs):
            self._deliver(publish_message)


class _ConnectionWatch(INotifee):
    def __init__(self, owner: MeshHost) -> None:
        self._owner = owner

    async def opened_stream(self, network: INetwork, stream: INetStream) -> None:
        return None

    async def closed_stream(self, network: INetwork, stream: INetStream) -> None:
        return None

    async def connected(self, network: INetwork, conn: INetConn) -> None:
        self._owner._on_connected(conn.muxed_conn.peer_id)

    async def disconnected(self, network: INetwork, conn: INetConn) -> None:
        self._owner._on_disconnected(conn.muxed_conn.peer_id)

    async def listen(self, network: INetwork, multiaddr: multiaddr.Multiaddr) -> None:
        return None

    async def listen_close(self, network: INetwork, multiaddr: multiaddr.Multiaddr) -> None:
        return None


class _KnownNoise(logging.Filter):
    """Demote py-libp2p log lines that report normal events as failures."""

    def filter(self, record: logging.LogRecord) -> bool:
        # kad_dht logs every ordinary end of a DHT stream as a failure (empty error text).
        return record.getMessage().rstrip() != "Failed to read DHT message from stream:"


def _quiet_known_noise() -> None:
    logger = logging.getLogger("libp2p.kad_dht.kad_dht")
    if not any(isinstance(f, _KnownNoise) for f in logger.filters):
        logger.addFilter(_KnownNoise())


def _set_identify_strings() -> None:
    # py-libp2p reads its Identify strings from module constants at reply time; there is no
    # per-host option in 0.8.1, so set ours on the module (not in the installed files).
    identify_module.AGENT_VERSION = AGENT
    identify_module.PROTOCOL_VERSION = MESH_PROTOCOL_VERSION


class MeshHost:
    """One libp2p peer of the mesh. Create on the trio thread, then ``await run(...)``."""

    def __init__(self, config: HostConfig, store: BlobStore, on_message: MessageHandler) -> None:
        self.config = config
        self.store = store
        self.on_message = on_message
        self.guard = GossipGuard(config.guard)
        #: Accepted events, oldest first: (topic, encoded object, wall time it arrived).
        self.events: deque[tuple[Topic, bytes, float]] = deque(maxlen=config.event_log)
        self.event_source: Callable[[], Iterable[tuple[Topic, bytes]]] | None = None
        self._meta: dict[ID, _PeerMeta] = {}
        #: Objects validated but not yet delivered, by libp2p message id (bounded: a message
        #: can pass validation and still not be delivered, e.g. one that claims to be ours).
        self._pending: OrderedDict[bytes, Model] = OrderedDict()
        self._providing: set[bytes] = set()
        self._nursery: trio.Nursery | None = None
        self._stats = {
            "delivered": 0,
            "blobs_served": 0,
            "bytes_served": 0,
            "synced": 0,
            "sync_frames": 0,
        }
        _set_identify_strings()
        _quiet_known_noise()
        fastpath.install()
        key_pair = key_pair_of(config.identity)
        noise = NoiseTransport(key_pair, noise_privkey=create_x25519_key_pair().private_key)
        self.host: IHost = new_host(
            key_pair=key_pair,
            sec_opt={NOISE_PROTOCOL_ID: noise},
            muxer_preference=config.muxer.upper(),  # type: ignore[arg-type]
            listen_addrs=[multiaddr.Multiaddr(a) for a in config.listen],
            enable_mDNS=config.mdns,
        )
        self.peer_id: ID = self.host.get_id()
        self.gossipsub = GossipSub(
            protocols=[PROTOCOL_ID_V11, PROTOCOL_ID],
            degree=6,
            degree_low=4,
            degree_high=12,
            heartbeat_interval=config.heartbeat_s,
            spam_protection_enabled=False,  # replaced by GossipGuard's per-peer buckets
            max_pending_messages_per_peer=config.send_queue,
        )
        self.pubsub = _MeshPubsub(
            self.host,
            self.gossipsub,
            strict_signing=True,
            cache_size=4096,
            deliver=self._deliver,
            on_bad_signature=self._bad_gossip_signature,
            max_inbound_rpc_size=4 * 1024 * 1024,
            validation_cache_size=4096,
        )
        self.pubsub.peer_queues = _SizedQueues(config.send_queue)
        self.dht = KadDHT(self.host, DHTMode.SERVER)
        self.host.set_stream_handler(TProtocol(BLOCKS_PROTOCOL), self._serve_blocks)
        self.host.set_stream_handler(TProtocol(SYNC_PROTOCOL), self._serve_sync)
        if config.bench_protocol:
            self.host.set_stream_handler(TProtocol(BENCH_PROTOCOL), self._serve_bench)
        self.host.get_network().register_notifee(_ConnectionWatch(self))

    # --- lifecycle ---------------------------------------------------------------------
    async def run(self, nursery: trio.Nursery, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled; ``task_status.started()`` once listening and subscribed."""
        listen = [multiaddr.Multiaddr(a) for a in self.config.listen]
        async with (
            self.host.run(listen),
            background_trio_service(self.pubsub),
            background_trio_service(self.gossipsub),
            background_trio_service(self.dht),
            trio.open_nursery() as inner,
        ):
            self._nursery = inner
            await self.pubsub.wait_until_ready()
            for topic in Topic:
                self.pubsub.set_topic_validator(topic.wire, self._validator(topic), False)
                await self.pubsub.subscribe(topic.wire)
            for addr in self.config.bootstrap:
                inner.start_soon(self._bootstrap, addr)
            inner.start_soon(self._maintain_providers)
            inner.start_soon(self._reannounce_subscriptions)
            on_discovery = self._watch_mdns() if self.config.mdns else None
            task_status.started()
            try:
                await trio.sleep_forever()
            finally:
                if on_discovery is not None:
                    peerDiscovery.unregister_peer_discovered_handler(on_discovery)
                # py-libp2p 0.8.1 starts a sweeper thread for its seen-message cache and
                # never stops it: stop it here so a closed node leaves no thread behind.
                self.pubsub.seen_messages.stop()

    # --- gossip --------------------------------------------------------------------------
    def _validator(self, topic: Topic) -> Callable[[ID, rpc_pb2.Message], bool]:
        def validate(forwarder: ID, msg: rpc_pb2.Message) -> bool:
            peer = SELF if forwarder == self.peer_id else str(forwarder)
            was_banned = peer in self.guard.banned
            origin = str(ID(msg.from_id))
            outcome = self.guard.check(topic, msg.data, peer, time.monotonic(), origin=origin)
            if outcome.verdict is Verdict.ACCEPT:
                assert outcome.obj is not None
                self._pending[bytes(msg.from_id) + bytes(msg.seqno)] = outcome.obj
                while len(self._pending) > 4096:
                    self._pending.popitem(last=False)
                return True
            if outcome.verdict is Verdict.REJECT:
                log.debug("dropped gossip from %s on %s: %s", peer, topic, outcome.reason)
                if not was_banned and peer in self.guard.banned:
                    self._ban(forwarder)
            return False

        return validate

    def _deliver(self, msg: rpc_pb2.Message) -> None:
        obj = self._pending.pop(bytes(msg.from_id) + bytes(msg.seqno), None)
        if obj is None:  # validated on another path (should not happen): check again
            obj = decode_object(msg.data)
        topic = Topic.parse(msg.topicIDs[0])
        origin = str(ID(msg.from_id))
        self._accepted(topic, obj, msg.data, origin)

    def _accepted(self, topic: Topic, obj: Model, data: bytes, origin: str) -> None:
        self.events.append((topic, bytes(data), time.time()))
        self._stats["delivered"] += 1
        try:
            self.on_message(topic, obj, origin)
        except Exception:  # a subscriber's bug must not take the network down
            log.exception("message handler failed on %s from %s", topic, origin)

    async def publish(self, topic: Topic, obj: Model) -> bool:
        """Publish a signed object; False when the mesh has seen it already (not sent)."""
        if not isinstance(obj, Signed):
            raise SchemaError(f"only signed objects are gossiped, not {type(obj).__name__}")
        tag = obj.__struct_config__.tag
        if tag not in TOPIC_TYPES[topic]:
            raise SchemaError(f"{tag} objects do not go on the {topic} topic")
        data = obj.encode()
        decode_object(data, max_bytes=self.config.guard.max_message_bytes)  # typed errors here
        if self.guard.seen(bytes(obj.cid)):
            return False
        await self._wait_for_room()
        await self.pubsub.publish(topic.wire, data)
        return True

    async def _wait_for_room(self, timeout: float = 30.0) -> None:
        """Pace publishing: wait while a peer's send queue is above the high-water mark."""
        high = self.config.publish_high_water
        with trio.move_on_after(timeout):
            while any(len(q) > high for q in self.pubsub.peer_queues.values()):
                await trio.sleep(0.002)
            return
        raise NetworkError(f"gossip send queues stayed full for {timeout:.0f} s")

    def _bad_gossip_signature(self, forwarder: ID) -> None:
        peer = str(forwarder)
        was_banned = peer in self.guard.banned
        self.guard.punish(peer, time.monotonic(), "libp2p-signature")
        if not was_banned and peer in self.guard.banned:
            self._ban(forwarder)

    def _ban(self, peer_id: ID) -> None:
        log.warning("banning peer %s: too many invalid or excess gossip messages", peer_id)
        self.pubsub.add_to_blacklist(peer_id)
        if self._nursery is not None:
            self._nursery.start_soon(self._disconnect, peer_id)

    async def _disconnect(self, peer_id: ID) -> None:
        try:
            await self.host.disconnect(peer_id)
        except Exception as exc:
            log.debug("disconnect %s: %s", peer_id, exc)

    # --- peers -----------------------------------------------------------------------------
    def _on_connected(self, peer_id: ID) -> None:
        if str(peer_id) in self.guard.banned:
            if self._nursery is not None:
                self._nursery.start_soon(self._disconnect, peer_id)
            return
        if self._nursery is not None and peer_id not in self._meta:
            self._meta[peer_id] = _PeerMeta()
            self._nursery.start_soon(self._learn_peer, peer_id)
        if self._nursery is not None:
            self._nursery.start_soon(self._refresh_gossip_stream, peer_id)

    async def _refresh_gossip_stream(self, peer_id: ID, delay: float = 0.0) -> None:
        """A peer that restarted (same key, new connection) while pubsub still holds the old
        connection's stream would never hear our subscriptions: drop that stream, open one."""
        await trio.sleep(delay)
        if not self.host.get_network().get_connections(peer_id):
            return
        stream = self.pubsub.peers.get(peer_id)
        if stream is not None:
            live = {id(c.muxed_conn) for c in self.host.get_network().get_connections(peer_id)}
            if id(getattr(stream, "muxed_conn", None)) not in live:
                self.pubsub._handle_dead_peer(peer_id)
        try:
            await self.pubsub.ensure_peer_stream(peer_id, timeout=10)
        except Exception as exc:
            log.debug("gossip stream to %s: %s", peer_id, exc)

    async def _reannounce_subscriptions(self) -> None:
        """Tell every peer our subscriptions again, now and then. py-libp2p 0.8.1 forgets all
        of a peer's subscriptions when one of its streams dies (``_handle_dead_peer``), which
        for a peer that restarted with its key may come after its new connection registered;
        a peer announces its subscriptions once, as its stream opens, so the other side then
        held it subscribed to nothing and sent it no gossip (a crash run: a restarted worker
        heard nothing for minutes, slashed as a no-show nine times). A subscription heard
        again changes nothing. (Its period is read as it starts: tests shorten it.)"""
        every_s = SUBSCRIPTIONS_EVERY_S
        while True:
            await trio.sleep(every_s)
            if not self.pubsub.peers:
                continue
            packet = self.pubsub.get_hello_packet()
            if packet.subscriptions:
                with contextlib.suppress(Exception):
                    await self.pubsub.message_all_peers(packet.SerializeToString())

    def _on_disconnected(self, peer_id: ID) -> None:
        if not self.host.get_network().get_connections(peer_id):
            self._meta.pop(peer_id, None)
            self.guard.forget(str(peer_id))
        elif self._nursery is not None:
            # an old connection of a peer that came back closed: pubsub drops the peer's
            # stream when it hears of it, which may be after the new connection registered
            self._nursery.start_soon(self._refresh_gossip_stream, peer_id, 1.0)

    async def _learn_peer(self, peer_id: ID) -> None:
        """Ask the peer's Identify (py-libp2p 0.8.1 keeps no agent string in its peerstore)."""
        try:
            with trio.fail_after(10):
                stream = await self.host.new_stream(peer_id, [IDENTIFY_PROTOCOL])
                reader = StreamReader(stream, chunk=64 * 1024)
                raw = bytearray()
                while chunk := await reader.some(64 * 1024):
                    raw += chunk
                    if len(raw) > 64 * 1024:
                        raise NetworkError("identify reply too large")
                await stream.close()
            msg = parse_identify_response(bytes(raw))
            meta = self._meta.get(peer_id)
            if meta is not None:
                meta.agent = msg.agent_version
                meta.protocol_version = msg.protocol_version
                meta.protocols = tuple(msg.protocols)
        except Exception as exc:
            log.debug("identify %s failed: %s", peer_id, exc)
        try:
            await self.dht.add_peer(peer_id)
        except Exception as exc:
            log.debug("dht add %s failed: %s", peer_id, exc)

    def _watch_mdns(self) -> Callable[[Libp2pPeerInfo], None]:
        """Dial peers that mDNS finds (py-libp2p 0.8.1 only announces them).

        Discoveries arrive on zeroconf's thread, and the announcer is a process-wide
        singleton (every node in the process hears every discovery): hop onto our trio
        thread, and skip ourselves and peers we already have.
        """
        token = trio.lowlevel.current_trio_token()

        def on_discovery(info: Libp2pPeerInfo) -> None:
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(self._discovered, info)

        peerDiscovery.register_peer_discovered_handler(on_discovery)
        return on_discovery

    def _discovered(self, info: Libp2pPeerInfo) -> None:
        if info.peer_id == self.peer_id or self._nursery is None:
            return
        if self.host.get_network().get_connections(info.peer_id):
            return
        self._nursery.start_soon(self._connect_discovered, info)

    async def _connect_discovered(self, info: Libp2pPeerInfo) -> None:
        try:
            await self.connect(info)
            log.info("connected to %s, found by mDNS", info.peer_id)
        except MeshError as exc:
            log.info("could not reach %s, found by mDNS: %s", info.peer_id, exc)
            return
        if self.config.sync_on_join:
            with contextlib.suppress(MeshError):
                await self.sync_from(info.peer_id)

    async def _bootstrap(self, addr: str, attempts: int = 10) -> None:
        try:
            info = info_from_p2p_addr(multiaddr.Multiaddr(addr))
        except Exception as exc:
            log.error("bootstrap address %s is not a /p2p/ multiaddr: %s", addr, exc)
            return
        delay = 0.2
        for _ in range(attempts):
            try:
                await self.connect(info)
                break
            except Exception as exc:
                log.info("bootstrap %s: %s; retrying in %.1f s", addr, exc, delay)
                await trio.sleep(delay)
                delay = min(delay * 2, 5.0)
        else:
            log.error("could not reach bootstrap peer %s", addr)
            return
        if self.config.sync_on_join:
            try:
                await self.sync_from(info.peer_id)
            except MeshError as exc:
                log.warning("sync from %s failed: %s", info.peer_id, exc)

    async def connect(self, info: Libp2pPeerInfo | str) -> str:
        if isinstance(info, str):
            try:
                info = info_from_p2p_addr(multiaddr.Multiaddr(info))
            except Exception as exc:
                raise NetworkError(f"{info!r} is not a multiaddr ending in /p2p/<id>") from exc
        try:
            with trio.fail_after(15):
                await self.host.connect(info)
        except trio.TooSlowError:
            raise NetworkError(f"connecting to {info.peer_id} timed out") from None
        except MeshError:
            raise
        except Exception as exc:
            raise NetworkError(f"cannot connect to {info.peer_id}: {exc}") from exc
        self._on_connected(info.peer_id)
        return str(info.peer_id)

    def addrs(self) -> list[str]:
        return [str(a) for a in self.host.get_addrs()]

    def peers(self) -> list[PeerRecord]:
        out = []
        for pid in self.host.get_connected_peers():
            meta = self._meta.get(pid) or _PeerMeta()
            try:
                did = did_from_peer_id(pid)
            except MeshError:
                did = ""
            try:
                addrs = tuple(str(a) for a in self.host.get_peerstore().addrs(pid))
            except Exception:  # PeerStoreError: an inbound peer not identified yet
                addrs = ()
            out.append(
                PeerRecord(
                    peer_id=str(pid),
                    did=did,
                    addrs=addrs,
                    agent=meta.agent,
                    protocol_version=meta.protocol_version,
                    topics=tuple(
                        Topic.parse(t).value
                        for t, ps in self.pubsub.peer_topics.items()
                        if pid in ps and t.startswith("/meshbench/")
                    ),
                )
            )
        return sorted(out, key=lambda p: p.peer_id)

    async def wait_for_topic_peers(self, count: int, timeout: float) -> None:
        """Wait until ``count`` peers subscribe to every topic (meshes can form)."""
        with trio.fail_after(timeout):
            while True:
                counts = [len(self.pubsub.peer_topics.get(t.wire, ())) for t in Topic]
                if min(counts) >= count:
                    return
                await trio.sleep(0.01)

    def stats(self) -> dict[str, Any]:
        return {
            **self._stats,
            "accepted": self.guard.stats.accepted,
            "duplicates": self.guard.stats.duplicates,
            "rejected": dict(self.guard.stats.rejected),
            "banned": sorted(self.guard.banned),
            "peers": len(self.host.get_connected_peers()),
        }

    # --- content -------------------------------------------------------------------------
    async def provide(self, cid: CID) -> None:
        """Announce that this node serves ``cid`` (a provider record in the DHT)."""
        c = encoding.parse_cid(cid, codec=encoding.RAW)
        if not self.store.has(c):
            raise BlobNotFound(f"cannot provide {c}: it is not in this node's blob store")
        self._providing.add(bytes(c))
        try:
            with trio.move_on_after(10):
                await self.dht.provide(str(c))
        except* Exception as group:  # the local record stands; remote peers may learn later
            # py-libp2p sends ADD_PROVIDER from a nursery: a peer that goes away mid-way
            # surfaces as an exception group, never as a plain exception
            log.debug("dht provide %s: %s", c, group.exceptions)

    def unprovide(self, cid: CID) -> None:
        """Stop announcing ``cid``: our records at other peers lapse after their TTL."""
        c = encoding.parse_cid(cid, codec=encoding.RAW)
        self._providing.discard(bytes(c))
        store = self.dht.provider_store
        store.providers.get(_dht_key(c), {}).pop(str(self.peer_id), None)

    async def _maintain_providers(self) -> None:
        while True:
            await trio.sleep(self.config.reprovide_s)
            self.prune_provider_records(time.time())
            for raw in list(self._providing):
                c = CID.decode(raw)
                if not self.store.has(c):  # deleted: let the records expire
                    self._providing.discard(raw)
                    continue
                await self.provide(c)

    def prune_provider_records(self, now: float) -> int:
        """Drop the provider records older than ``provider_ttl_s``; return how many."""
        ttl, dropped = self.config.provider_ttl_s, 0
        providers = self.dht.provider_store.providers
        for key in list(providers):
            records = providers[key]
            for peer in [p for p, r in records.items() if now - r.timestamp > ttl]:
                del records[peer]
                dropped += 1
            if not records:
                del providers[key]
        return dropped

    def provider_records(self, cid: CID) -> dict[str, float]:
        """The peers this node holds a provider record of ``cid`` for, and when it came."""
        c = encoding.parse_cid(cid, codec=encoding.RAW)
        records = self.dht.provider_store.providers.get(_dht_key(c), {})
        return {peer: r.timestamp for peer, r in records.items()}

    async def find_providers(self, cid: CID, timeout: float = 10.0) -> list[ID]:
        """Peers with a provider record for ``cid``, deduplicated, this node excluded."""
        c = encoding.parse_cid(cid, codec=encoding.RAW)
        found: list[ID] = []
        with trio.move_on_after(timeout):
            try:
                infos = await self.dht.find_providers(str(c))
            except Exception as exc:
                log.debug("dht find_providers %s: %s", c, exc)
                infos = []
            for info in infos:  # py-libp2p's lists can hold the same peer twice
                if info.peer_id != self.peer_id and info.peer_id not in found:
                    if info.addrs:
                        self.host.get_peerstore().add_addrs(info.peer_id, info.addrs, 600)
                    found.append(info.peer_id)
        return found

    async def fetch(self, cid: CID, peers: Sequence[str] = (), timeout: float = 300.0) -> int:
        """Fetch ``cid`` into the store from the first provider that delivers it intact.

        Tries ``peers`` first, then the DHT's providers, then every connected peer;
        a provider that fails (gone, refuses, sends bad bytes) is skipped for the next.
        """
        c = encoding.parse_cid(cid, codec=encoding.RAW)
        if self.store.has(c):
            return self.store.size(c)
        candidates = [parse_peer_id(p) for p in peers]
        connected = self.host.get_connected_peers()
        if not candidates or any(p not in connected for p in candidates):
            # The DHT lookup also teaches the peerstore how to reach the providers.
            candidates += await self.find_providers(c)
        candidates += connected
        candidates = list(dict.fromkeys(candidates))
        errors: list[str] = []
        for pid in candidates:
            if str(pid) in self.guard.banned:
                continue
            try:
                with trio.fail_after(timeout):
                    return await self.fetch_from(pid, c)
            except BlobNotFound:
                errors.append(f"{pid}: not found")
            except (MeshError, trio.TooSlowError) as exc:
                errors.append(f"{pid}: {type(exc).__name__}: {exc}")
                log.warning("fetch %s from %s failed: %s: %s", c, pid, type(exc).__name__, exc)
        if not errors:
            raise BlobNotFound(f"no provider of {c} is known or connected")
        raise BlobNotFound(f"no provider delivered {c}: " + "; ".join(errors))

    async def fetch_from(self, peer_id: ID, cid: CID) -> int:
        try:
            stream = await self.host.new_stream(peer_id, [TProtocol(BLOCKS_PROTOCOL)])
        except Exception as exc:
            raise NetworkError(f"cannot open a blocks stream to {peer_id}: {exc}") from exc
        try:
            await fastpath.widen_receive_window(stream)
            return await fetch_from_stream(stream, cid, self.store, self.config.max_blob_bytes)
        finally:
            await _close(stream)

    async def _serve_blocks(self, stream: INetStream) -> None:
        peer = stream.muxed_conn.peer_id
        try:
            if str(peer) in self.guard.banned:
                return
            sent = await serve_stream(stream, self.store)
            self._stats["blobs_served"] += bool(sent)
            self._stats["bytes_served"] += sent
        except Exception as exc:
            log.debug("blocks request from %s failed: %s", peer, exc)
        finally:
            await _close(stream)

    # --- benchmark: a bare stream over the same connection ------------------------------
    async def _serve_bench(self, stream: INetStream) -> None:
        try:
            size = await StreamReader(stream, chunk=16).uvarint()
            block = bytes(1024 * 1024)
            while size > 0:
                await stream.write(block[: min(size, len(block))])
                size -= len(block)
        except Exception as exc:
            log.debug("bench stream failed: %s", exc)
        finally:
            await _close(stream)

    async def bench_stream(self, peer_id: ID | str, size: int) -> float:
        """Read ``size`` bytes of a peer's bare bench stream; return the seconds it took."""
        pid = parse_peer_id(peer_id)
        start = time.perf_counter()  # opening the stream counts, as it does for a fetch
        stream = await self.host.new_stream(pid, [TProtocol(BENCH_PROTOCOL)])
        try:
            await fastpath.widen_receive_window(stream)  # as fetch_from does
            await stream.write(uvarint(size))
            reader = StreamReader(stream)
            got = 0
            while got < size:
                chunk = await reader.some(1 << 20)
                if not chunk:
                    raise NetworkError(f"bench stream ended after {got} of {size} bytes")
                got += len(chunk)
            return time.perf_counter() - start
        finally:
            await _close(stream)

    # --- late joiners: the event log -------------------------------------------------------
    async def _serve_sync(self, stream: INetStream) -> None:
        """Send every event we keep, as (topic, object) frames, then close."""
        try:
            if str(stream.muxed_conn.peer_id) in self.guard.banned:
                return
            if self.event_source is not None:
                # read (e.g. from the ledger file) off the network's thread, a batch at a
                # time: a long history neither blocks the loop nor sits in memory whole
                events = iter(self.event_source())
                try:
                    while batch := await trio.to_thread.run_sync(_frames, events, _SYNC_BATCH):
                        await stream.write(batch)
                finally:
                    close = getattr(events, "close", None)
                    if close is not None:  # a generator: its reader lets go of the file
                        await trio.to_thread.run_sync(close)
            else:
                wanted = self.config.sync_topics
                source = iter([(t, data) for t, data, _ in self.events if t in wanted])
                while batch := _frames(source, _SYNC_BATCH):
                    await stream.write(batch)
        except Exception as exc:
            log.debug("sync request failed: %s", exc)
        finally:
            await _close(stream)

    async def sync_from(self, peer_id: ID | str, timeout: float = 60.0) -> int:
        """Fetch a peer's event log; every event is checked like gossip. Return new events."""
        pid = parse_peer_id(peer_id)
        try:
            stream = await self.host.new_stream(pid, [TProtocol(SYNC_PROTOCOL)])
        except Exception as exc:
            raise UnknownPeer(f"cannot open a sync stream to {pid}: {exc}") from exc
        new = 0
        peer = str(pid)
        frames_before = self._stats["sync_frames"]
        try:
            with trio.fail_after(timeout):
                reader = StreamReader(stream)
                max_bytes = self.config.guard.max_message_bytes
                while (frame := await sync_frames.read_frame(reader, max_bytes)) is not None:
                    if self._stats["sync_frames"] - frames_before >= self.config.event_log:
                        raise NetworkError(f"{pid} sent more events than this node keeps")
                    topic, data = frame
                    self._stats["sync_frames"] += 1
                    outcome = self.guard.check(
                        topic, data, peer, time.monotonic(), rate_limited=False
                    )
                    if outcome.verdict is Verdict.ACCEPT:
                        assert outcome.obj is not None
                        self._accepted(topic, outcome.obj, data, peer)
                        new += 1
                    elif outcome.verdict is Verdict.REJECT and peer in self.guard.banned:
                        self._ban(pid)
                        raise NetworkError(f"{pid} sent invalid events during sync")
        except trio.TooSlowError:
            raise NetworkError(f"sync from {pid} took over {timeout:.0f} s") from None
        finally:
            await _close(stream)
        self._stats["synced"] += new
        return new


def _dht_key(cid: CID) -> bytes:
    """The DHT key of a blob CID, as py-libp2p's provider store files it (its multihash)."""
    from libp2p.kad_dht.kad_dht import _encode_key

    return _encode_key(str(cid))


async def _close(stream: INetStream) -> None:
    with contextlib.suppress(Exception):
        await stream.close()
