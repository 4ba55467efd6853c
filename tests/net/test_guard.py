"""The gossip gate, without a network: every rule, every verdict, bans and their decay."""

from __future__ import annotations

import msgspec
import pytest

from meshbench.core.policy import MeshPolicy
from meshbench.net.guard import SELF, GossipGuard, GuardConfig, Verdict
from meshbench.net.topics import Topic
from meshbench.testing.factories import make_identity, make_task

PUB = make_identity(1)


def task(n: int = 0) -> bytes:
    return make_task(PUB, nonce=n, sign=True).encode()


def test_valid_signed_object_is_accepted_once_then_ignored_as_duplicate() -> None:
    guard = GossipGuard()
    first = guard.check(Topic.TASKS, task(), "peerA", 0.0)
    assert first.verdict is Verdict.ACCEPT and first.obj is not None
    again = guard.check(Topic.TASKS, task(), "peerB", 0.1)  # a replay, from anyone
    assert again.verdict is Verdict.IGNORE and again.reason == "duplicate"
    assert guard.penalty("peerB", 0.1) == 0  # relaying a duplicate is not an offence


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\xa1\x61", "EncodingError"),
        (b"\xff\x00garbage", "NonCanonicalEncoding"),
        (make_task(PUB).encode(), "InvalidSignature"),
        (MeshPolicy().encode(), "unsigned"),
        (
            msgspec.structs.replace(make_task(PUB, sign=True), signature=bytes(64)).encode(),
            "InvalidSignature",
        ),
    ],
    ids=["truncated", "garbage", "signature-missing", "unsigned-type", "forged-signature"],
)
def test_invalid_messages_are_rejected_and_penalised(data: bytes, reason: str) -> None:
    guard = GossipGuard()
    out = guard.check(Topic.TASKS, data, "rogue", 0.0)
    assert out.verdict is Verdict.REJECT and out.reason == reason and out.obj is None
    assert guard.penalty("rogue", 0.0) == guard.config.invalid_penalty


def test_wrong_topic_and_oversize_are_rejected() -> None:
    guard = GossipGuard(GuardConfig(max_message_bytes=2000))
    assert guard.check(Topic.OFFERS, task(), "p", 0.0).reason == "wrong-topic"
    assert guard.check(Topic.TASKS, b"\x00" * 2001, "p", 0.0).reason == "size"


def test_ten_invalid_messages_get_a_peer_banned_and_bans_stick() -> None:
    guard = GossipGuard()
    for _ in range(10):
        guard.check(Topic.TASKS, b"junk", "rogue", 0.0)
    assert "rogue" in guard.banned
    assert guard.check(Topic.TASKS, task(), "rogue", 1000.0).reason == "banned"


def test_penalties_decay_so_an_old_mistake_is_forgotten() -> None:
    guard = GossipGuard(GuardConfig(penalty_decay_per_second=1.0))
    guard.check(Topic.TASKS, b"junk", "p", 0.0)
    assert guard.penalty("p", 5.0) == pytest.approx(5.0)
    assert guard.penalty("p", 60.0) == 0.0


def test_an_author_over_its_rate_is_penalised_when_it_sends_directly() -> None:
    guard = GossipGuard(GuardConfig(rate_per_second=10, burst=5, ban_threshold=3))
    verdicts = [guard.check(Topic.TASKS, task(i), "flooder", 0.0).verdict for i in range(9)]
    assert verdicts[:5] == [Verdict.ACCEPT] * 5
    assert set(verdicts[5:]) == {Verdict.REJECT}
    assert "flooder" in guard.banned
    # Tokens come back with time (for a peer that is not banned).
    guard2 = GossipGuard(GuardConfig(rate_per_second=10, burst=1))
    assert guard2.check(Topic.TASKS, task(0), "p", 0.0).verdict is Verdict.ACCEPT
    assert guard2.check(Topic.TASKS, task(1), "p", 0.01).verdict is Verdict.REJECT
    assert guard2.check(Topic.TASKS, task(2), "p", 0.2).verdict is Verdict.ACCEPT


def test_a_relay_is_not_penalised_for_an_authors_burst() -> None:
    guard = GossipGuard(GuardConfig(rate_per_second=1, burst=2))
    outs = [guard.check(Topic.TASKS, task(i), "relay", 0.0, origin="author") for i in range(6)]
    assert [o.verdict for o in outs[2:]] == [Verdict.IGNORE] * 4
    assert guard.penalty("relay", 0.0) == 0 and not guard.banned
    assert guard.stats.rejected == {"origin-rate": 4}


def test_a_peer_flooding_under_many_author_keys_hits_the_forwarder_bucket() -> None:
    cfg = GuardConfig(forward_rate_per_second=1, forward_burst=3, ban_threshold=2)
    guard = GossipGuard(cfg)
    for i in range(6):
        guard.check(Topic.TASKS, task(i), "sybil", 0.0, origin=f"author{i}")
    assert "sybil" in guard.banned


def test_own_publishes_and_sync_are_not_rate_limited() -> None:
    guard = GossipGuard(GuardConfig(rate_per_second=1, burst=1))
    assert all(
        guard.check(Topic.TASKS, task(i), SELF, 0.0).verdict is Verdict.ACCEPT for i in range(5)
    )
    assert all(
        guard.check(Topic.TASKS, task(i), "p", 0.0, rate_limited=False).verdict is Verdict.ACCEPT
        for i in range(5, 10)
    )


def test_dedupe_memory_is_bounded() -> None:
    guard = GossipGuard(GuardConfig(dedupe_entries=3))
    for i in range(5):
        guard.check(Topic.TASKS, task(i), SELF, 0.0)
    assert guard.check(Topic.TASKS, task(0), SELF, 0.0).verdict is Verdict.ACCEPT  # forgotten
    assert guard.check(Topic.TASKS, task(4), SELF, 0.0).verdict is Verdict.IGNORE


def test_idle_author_buckets_are_pruned() -> None:
    guard = GossipGuard(GuardConfig(max_tracked_peers=10))
    for i in range(50):
        guard.check(Topic.TASKS, task(i), "relay", float(i), origin=f"a{i}")
    assert guard.tracked_origins <= 10
