"""The gossip gate: what a message must pass before the protocol core sees it.

:class:`GossipGuard` is sans-IO (bytes, a peer name and a time in; a verdict out), so every
rule is unit-tested without a network, and the libp2p validator is a thin call into it.
In order, a message from a direct peer is checked for:

1. the peer's standing (banned peers are refused outright);
2. rates, with token buckets (our own publishes are exempt):

   * per *origin* (the libp2p-signed author of the message): past it the message is
     ignored, and the forwarder is penalised only when it is the origin itself, because an
     honest relay may pass on an author's burst that its own bucket admitted;
   * per *forwarder*, ten times wider, against a peer that floods under many keys;

3. size (before any decoding);
4. :func:`~meshbench.core.model.decode_object`: strict DAG-CBOR, canonical bytes, schema,
   signature; unsigned objects are refused;
5. the topic's allowed types;
6. duplicates and replays: an object CID seen recently is ignored (not punished: two honest
   peers may relay the same object).

Each refusal costs the forwarding peer penalty points; past ``ban_threshold`` it is banned,
and the node disconnects it. Honest peers never pay: they validate before they forward.
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Final

from meshbench.core import encoding
from meshbench.core.errors import MeshError
from meshbench.core.model import Model, Signed, decode_object
from meshbench.net.topics import TOPIC_TYPES, Topic
from meshbench.store import sealing as _sealing  # noqa: F401  (registers SealedMessage)

__all__ = ["GossipGuard", "GuardConfig", "GuardStats", "Verdict"]

SELF: Final = "<self>"


class Verdict(enum.Enum):
    ACCEPT = "accept"
    IGNORE = "ignore"  # not harmful (a duplicate): drop without penalty
    REJECT = "reject"  # invalid or abusive: drop and penalise the forwarder


@dataclass(frozen=True, slots=True, kw_only=True)
class GuardConfig:
    #: Largest gossip payload; protocol objects are small (blobs travel by CID).
    max_message_bytes: int = 256 * 1024
    #: Sustained new messages per second from one author, and the burst above it
    #: (duplicates are dropped by gossipsub before they cost anything).
    rate_per_second: float = 100.0
    burst: int = 1000
    #: The same for all messages one direct peer forwards (all authors together).
    forward_rate_per_second: float = 1000.0
    forward_burst: int = 10_000
    #: Buckets kept before idle (full) ones are forgotten.
    max_tracked_peers: int = 10_000
    #: How many object CIDs are remembered for duplicate/replay suppression.
    dedupe_entries: int = 200_000
    #: Penalty points per refusal, and the total that gets a peer banned.
    invalid_penalty: float = 10.0
    rate_penalty: float = 1.0
    ban_threshold: float = 100.0
    #: Penalties fade at this many points per second, so one old mistake is forgotten.
    penalty_decay_per_second: float = 0.5


@dataclass(slots=True)
class GuardStats:
    accepted: int = 0
    duplicates: int = 0
    rejected: dict[str, int] = field(default_factory=dict)

    def count(self, reason: str) -> None:
        self.rejected[reason] = self.rejected.get(reason, 0) + 1


@dataclass(slots=True)
class _Bucket:
    tokens: float
    refilled: float

    def take(self, now: float, rate: float, burst: int) -> bool:
        self.tokens = min(float(burst), self.tokens + max(0.0, now - self.refilled) * rate)
        self.refilled = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


@dataclass(slots=True)
class _Penalty:
    points: float
    decayed: float


@dataclass(frozen=True, slots=True)
class Outcome:
    verdict: Verdict
    obj: Model | None = None
    reason: str = ""


class GossipGuard:
    def __init__(self, config: GuardConfig | None = None) -> None:
        self.config = config or GuardConfig()
        self.stats = GuardStats()
        self._origins: dict[str, _Bucket] = {}
        self._forwarders: dict[str, _Bucket] = {}
        self._penalties: dict[str, _Penalty] = {}
        self._seen: OrderedDict[bytes, None] = OrderedDict()
        self.banned: set[str] = set()

    @property
    def tracked_origins(self) -> int:
        """How many authors' rate buckets are held (bounded by ``max_tracked_peers``)."""
        return len(self._origins)

    def check(
        self,
        topic: Topic,
        data: bytes,
        peer: str,
        now: float,
        *,
        origin: str | None = None,
        rate_limited: bool = True,
    ) -> Outcome:
        """Judge one message that ``peer`` forwarded to us at time ``now`` (seconds).

        ``origin`` is the message's libp2p author (``peer`` when not given);
        ``rate_limited=False`` is for events a peer sends because we asked (sync).
        """
        cfg = self.config
        if peer in self.banned:
            return self._reject(peer, now, "banned", 0.0)
        if rate_limited and peer != SELF:
            author = origin or peer
            if not self._bucket(self._forwarders, peer, now, cfg.forward_burst).take(
                now, cfg.forward_rate_per_second, cfg.forward_burst
            ):
                return self._reject(peer, now, "forward-rate", cfg.rate_penalty)
            if not self._bucket(self._origins, author, now, cfg.burst).take(
                now, cfg.rate_per_second, cfg.burst
            ):
                if author == peer:
                    return self._reject(peer, now, "rate", cfg.rate_penalty)
                self.stats.count("origin-rate")
                return Outcome(Verdict.IGNORE, None, "origin-rate")
        if len(data) > cfg.max_message_bytes:
            return self._reject(peer, now, "size", cfg.invalid_penalty)
        try:
            obj = decode_object(data, max_bytes=cfg.max_message_bytes)
        except MeshError as exc:
            return self._reject(peer, now, type(exc).__name__, cfg.invalid_penalty)
        if not isinstance(obj, Signed):
            return self._reject(peer, now, "unsigned", cfg.invalid_penalty)
        if obj.__struct_config__.tag not in TOPIC_TYPES[topic]:
            return self._reject(peer, now, "wrong-topic", cfg.invalid_penalty)
        key = bytes(encoding.object_cid(data))
        if key in self._seen:
            self._seen.move_to_end(key)
            self.stats.duplicates += 1
            return Outcome(Verdict.IGNORE, obj, "duplicate")
        self._remember(key)
        self.stats.accepted += 1
        return Outcome(Verdict.ACCEPT, obj)

    def punish(self, peer: str, now: float, reason: str) -> None:
        """Count an invalid message that was caught before :meth:`check` (e.g. by libp2p)."""
        self._reject(peer, now, reason, self.config.invalid_penalty)

    def seen(self, cid_bytes: bytes) -> bool:
        return cid_bytes in self._seen

    def penalty(self, peer: str, now: float) -> float:
        state = self._penalties.get(peer)
        if state is None:
            return 0.0
        self._decay(state, now)
        return state.points

    def forget(self, peer: str) -> None:
        """Drop a disconnected peer's rate state (its penalty and ban are kept)."""
        self._forwarders.pop(peer, None)

    # --- internals -----------------------------------------------------------------
    def _bucket(self, table: dict[str, _Bucket], name: str, now: float, burst: int) -> _Bucket:
        bucket = table.get(name)
        if bucket is None:
            if len(table) >= self.config.max_tracked_peers:
                self._prune(table, now)
            bucket = table[name] = _Bucket(float(burst), now)
        return bucket

    def _prune(self, table: dict[str, _Bucket], now: float) -> None:
        """Forget buckets that have refilled (an idle author costs nothing to re-create)."""
        rate = self.config.rate_per_second
        for name in [n for n, b in table.items() if b.tokens + (now - b.refilled) * rate >= 1]:
            del table[name]

    def _decay(self, state: _Penalty, now: float) -> None:
        elapsed = max(0.0, now - state.decayed)
        state.points = max(0.0, state.points - elapsed * self.config.penalty_decay_per_second)
        state.decayed = now

    def _reject(self, peer: str, now: float, reason: str, points: float) -> Outcome:
        self.stats.count(reason)
        if peer != SELF and points:
            state = self._penalties.setdefault(peer, _Penalty(0.0, now))
            self._decay(state, now)
            state.points += points
            if state.points >= self.config.ban_threshold:
                self.banned.add(peer)
        return Outcome(Verdict.REJECT, None, reason)

    def _remember(self, key: bytes) -> None:
        self._seen[key] = None
        while len(self._seen) > self.config.dedupe_entries:
            self._seen.popitem(last=False)
