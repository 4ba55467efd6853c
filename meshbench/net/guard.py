"""The gossip gate: what a message must pass before the protocol core sees it.

:class:`GossipGuard` is sans-IO (bytes, a peer name and a time in; a verdict out), so every
rule is unit-tested without a network, and the libp2p validator is a thin call into it.
In order, a message from a direct peer is checked for:

1. the peer's standing (banned peers are refused outright);
2. the peer's rate (a token bucket per forwarding peer; our own publishes are exempt);
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
    #: Sustained messages per second one peer may forward to us, and the burst above it.
    rate_per_second: float = 300.0
    burst: int = 1500
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
class _Peer:
    tokens: float
    refilled: float
    penalty: float = 0.0
    decayed: float = 0.0


@dataclass(frozen=True, slots=True)
class Outcome:
    verdict: Verdict
    obj: Model | None = None
    reason: str = ""


class GossipGuard:
    def __init__(self, config: GuardConfig | None = None) -> None:
        self.config = config or GuardConfig()
        self.stats = GuardStats()
        self._peers: dict[str, _Peer] = {}
        self._seen: OrderedDict[bytes, None] = OrderedDict()
        self.banned: set[str] = set()

    def check(
        self, topic: Topic, data: bytes, peer: str, now: float, *, rate_limited: bool = True
    ) -> Outcome:
        """Judge one message that ``peer`` forwarded to us at time ``now`` (seconds).

        ``rate_limited=False`` is for events a peer sends because we asked (sync).
        """
        cfg = self.config
        if peer in self.banned:
            return self._reject(peer, now, "banned", 0.0)
        if rate_limited and peer != SELF and not self._take_token(peer, now):
            return self._reject(peer, now, "rate", cfg.rate_penalty)
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

    def seen(self, cid_bytes: bytes) -> bool:
        return cid_bytes in self._seen

    def penalty(self, peer: str, now: float) -> float:
        state = self._peers.get(peer)
        if state is None:
            return 0.0
        self._decay(state, now)
        return state.penalty

    def forget(self, peer: str) -> None:
        """Drop a disconnected peer's rate state (its penalty and ban are kept)."""
        state = self._peers.get(peer)
        if state is not None and state.penalty <= 0:
            del self._peers[peer]

    # --- internals -----------------------------------------------------------------
    def _state(self, peer: str, now: float) -> _Peer:
        state = self._peers.get(peer)
        if state is None:
            state = self._peers[peer] = _Peer(float(self.config.burst), now, 0.0, now)
        return state

    def _take_token(self, peer: str, now: float) -> bool:
        cfg = self.config
        state = self._state(peer, now)
        elapsed = max(0.0, now - state.refilled)
        state.tokens = min(float(cfg.burst), state.tokens + elapsed * cfg.rate_per_second)
        state.refilled = now
        if state.tokens < 1.0:
            return False
        state.tokens -= 1.0
        return True

    def _decay(self, state: _Peer, now: float) -> None:
        elapsed = max(0.0, now - state.decayed)
        state.penalty = max(0.0, state.penalty - elapsed * self.config.penalty_decay_per_second)
        state.decayed = now

    def _reject(self, peer: str, now: float, reason: str, points: float) -> Outcome:
        self.stats.count(reason)
        if peer != SELF and points:
            state = self._state(peer, now)
            self._decay(state, now)
            state.penalty += points
            if state.penalty >= self.config.ban_threshold:
                self.banned.add(peer)
        return Outcome(Verdict.REJECT, None, reason)

    def _remember(self, key: bytes) -> None:
        self._seen[key] = None
        while len(self._seen) > self.config.dedupe_entries:
            self._seen.popitem(last=False)
