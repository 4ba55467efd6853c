"""Two libp2p nodes in one process: the Transport contract, the asyncio face, clean close."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from meshbench.core.errors import BlobNotFound, NetworkError, SchemaError
from meshbench.core.policy import MeshPolicy
from meshbench.net.node import Libp2pNode
from meshbench.runtime.transport import Transport
from meshbench.store.blobs import BlobStore
from meshbench.testing.factories import make_identity, make_task
from meshbench.testing.netmesh import wait_until


def node(tmp_path: Path, n: int, **kw) -> Libp2pNode:
    return Libp2pNode(make_identity(n), BlobStore(tmp_path / f"n{n}"), mdns=False, **kw)


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[Libp2pNode, Libp2pNode]]:
    a = node(tmp_path, 1).start()
    b = node(tmp_path, 2, bootstrap=a.addrs).start()
    try:
        a.wait_for_peers(1, 30)
        b.wait_for_peers(1, 30)
        yield a, b
    finally:
        b.close()
        a.close()


class Inbox:
    def __init__(self) -> None:
        self.items: list = []
        self.cond = threading.Condition()

    def __call__(self, obj, peer: str) -> None:
        with self.cond:
            self.items.append((obj, peer))
            self.cond.notify_all()

    def wait_for(self, n: int, timeout: float = 30) -> list:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.items) >= n, timeout), self.items
            return list(self.items)


def test_is_a_transport_and_names_itself_consistently(pair) -> None:
    a, b = pair
    assert isinstance(a, Transport)
    assert a.did == make_identity(1).did
    assert all(addr.endswith("/p2p/" + a.peer_id) for addr in a.addrs)
    [peer] = b.peers()
    assert peer.peer_id == a.peer_id and peer.did == a.did


def test_gossip_reaches_subscribers_once_with_the_origin_peer(pair) -> None:
    a, b = pair
    inbox = Inbox()
    sub = b.subscribe("tasks", inbox)
    task = make_task(make_identity(3), sign=True)
    assert a.publish("tasks", task) is True
    [(got, origin)] = inbox.wait_for(1)
    assert got == task and origin == a.peer_id
    assert a.publish("tasks", task) is False  # the mesh has it: nothing is sent
    sub.cancel()


def test_publishing_bad_objects_raises_typed_errors(pair) -> None:
    a, _ = pair
    with pytest.raises(SchemaError, match="only signed"):
        a.publish("policy", MeshPolicy())
    with pytest.raises(SchemaError, match="do not go on"):
        a.publish("offers", make_task(make_identity(3), sign=True))
    with pytest.raises(NetworkError, match="unknown topic"):
        a.publish("nonsense", make_task(make_identity(3), sign=True))


def test_asyncio_code_drives_the_node(pair) -> None:
    a, b = pair
    inbox = Inbox()
    b.subscribe("tasks", inbox)
    cid = a.store.put(b"module bytes")

    async def main() -> list:
        await a.aprovide(cid)
        sent = await asyncio.gather(
            *(
                a.apublish("tasks", make_task(make_identity(4), nonce=i, sign=True))
                for i in range(5)
            )
        )
        path = await b.afetch_blob(cid)
        peers = await b.apeers()
        return [sent, path.read_bytes(), [p.peer_id for p in peers]]

    sent, data, peers = asyncio.run(main())
    assert sent == [True] * 5 and data == b"module bytes" and peers == [a.peer_id]
    assert len(inbox.wait_for(5)) == 5


def test_fetching_a_blob_nobody_has_raises_blob_not_found(pair) -> None:
    _, b = pair
    with pytest.raises(BlobNotFound):
        b.fetch_blob("bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e")


def test_a_failing_subscriber_does_not_stop_delivery(pair) -> None:
    a, b = pair
    inbox = Inbox()

    def broken(obj, peer):
        raise RuntimeError("subscriber bug")

    b.subscribe("tasks", broken)
    b.subscribe("tasks", inbox)
    a.publish("tasks", make_task(make_identity(5), sign=True))
    inbox.wait_for(1)


async def _forget_subscriptions_of(node: Libp2pNode, peer_id: str) -> None:
    """What py-libp2p 0.8.1 leaves after a peer restarted with its key, when the old
    connection's stream dies after the new connection registered: ``_handle_dead_peer``
    drops all of the peer's subscriptions (and our stream to it, which the host opens again,
    as ``MeshHost._refresh_gossip_stream`` does)."""
    from libp2p.peer.id import ID

    peer = ID.from_base58(peer_id)
    node.host.pubsub._handle_dead_peer(peer)
    await node.host.pubsub.ensure_peer_stream(peer, timeout=10)


async def _subscribers(node: Libp2pNode, topic: str) -> set[str]:
    from meshbench.net.topics import Topic

    return {str(p) for p in node.host.pubsub.peer_topics.get(Topic.parse(topic).wire, ())}


@pytest.mark.parametrize("every_s", [0.25, 3600.0], ids=["reannounced", "announced-once"])
def test_a_peer_whose_subscriptions_were_forgotten_hears_gossip_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, every_s: float
) -> None:
    """A restarted worker heard no gossip for minutes (a crash run: nine no-show slashes of
    one peer): its authority had forgotten its subscriptions, and a peer announces them once.
    Every peer now tells its peers its subscriptions again every few seconds; with that off
    (announced once, as py-libp2p does) the forgotten peer stays deaf."""
    import meshbench.net.host as host_module

    monkeypatch.setattr(host_module, "SUBSCRIPTIONS_EVERY_S", every_s)
    with node(tmp_path, 1) as a, node(tmp_path, 2, bootstrap=a.addrs) as b:
        a.wait_for_peers(1, 30)
        b.wait_for_peers(1, 30)
        inbox = Inbox()
        b.subscribe("tasks", inbox)
        assert b.peer_id in a._trio.call(_subscribers, a, "tasks")
        a._trio.call(_forget_subscriptions_of, a, b.peer_id)
        task = make_task(make_identity(6), sign=True)
        if every_s < 60:
            wait_until(
                lambda: b.peer_id in a._trio.call(_subscribers, a, "tasks"),
                20,
                "the authority to hear the peer's subscriptions again",
            )
            assert a.publish("tasks", task) is True
            [(got, _)] = inbox.wait_for(1)
            assert got == task
        else:  # the defect this guards against: the peer is left out of all gossip
            if b.peer_id in a._trio.call(_subscribers, a, "tasks"):
                # py-libp2p itself told it again (the peer saw the dropped stream and opened
                # one of its own, whose hello names its topics): a race this test cannot hold
                # off, seen under a loaded run; the defect cannot be shown this time
                pytest.skip("the peer's own new stream re-announced its topics first")
            assert a.publish("tasks", task) is True
            with inbox.cond:
                assert not inbox.cond.wait_for(lambda: inbox.items, 3)
            # (afterwards that same race may bring it back: what is asserted is the lost message)


def test_close_leaves_no_thread_behind(tmp_path: Path) -> None:
    before = set(threading.enumerate())
    with node(tmp_path, 9) as n:
        assert n.peers() == []
    left = {
        t
        for t in set(threading.enumerate()) - before
        if t.is_alive() and not t.name.startswith("Trio thread")  # trio's idle worker cache
    }
    assert left == set()
    with pytest.raises(NetworkError):
        n.peers()


def test_an_mplex_node_and_a_yamux_node_agree_on_a_muxer(tmp_path: Path) -> None:
    a = node(tmp_path, 21, muxer="MPLEX").start()
    try:
        b = node(tmp_path, 22, bootstrap=a.addrs).start()
        try:
            a.wait_for_peers(1, 30)
            inbox = Inbox()
            b.subscribe("tasks", inbox)
            task = make_task(make_identity(23), sign=True)
            a.publish("tasks", task)
            assert inbox.wait_for(1)[0][0] == task
        finally:
            b.close()
    finally:
        a.close()


def test_provider_records_are_found_once_per_provider(pair) -> None:
    a, b = pair
    cid = a.store.put(b"provided twice")
    a.provide(cid)
    a.provide(cid)
    assert b.find_providers(cid) == [a.peer_id]
    assert b.fetch_blob(cid).read_bytes() == b"provided twice"


def test_join_uses_the_data_dirs_identity_and_store(tmp_path: Path) -> None:
    from meshbench.net import join
    from meshbench.store.keystore import Keystore

    ident = Keystore(tmp_path / "keys").create("default")
    with join(tmp_path, listen=["/ip4/127.0.0.1/tcp/0"], mdns=False) as n:
        assert n.did == ident.did
        assert n.store.root == tmp_path / "blobs"


def test_a_late_joiner_is_sent_state_events_not_stale_work(pair, tmp_path: Path) -> None:
    from meshbench.core.events import MeshPolicyActivated
    from meshbench.testing.factories import T0
    from meshbench.testing.netmesh import wait_until

    a, _ = pair
    authority = make_identity(0)
    policy = MeshPolicy(federation=authority.did)
    activated = MeshPolicyActivated(
        authority=authority.did, policy_cid=policy.cid, federation_did=authority.did,
        policy_version=1, policy=policy, timestamp=T0,
    ).sign(authority)  # fmt: skip
    a.publish("policy", activated)
    a.publish("tasks", make_task(make_identity(6), sign=True))
    inbox = Inbox()
    late = node(tmp_path, 7, bootstrap=a.addrs)
    late.subscribe("policy", inbox)
    with late.start():
        wait_until(lambda: late.stats()["sync_frames"] >= 1, 30, "the sync stream")
        assert late.stats()["sync_frames"] == 1  # the policy; the task is not replayed
        assert inbox.wait_for(1)[0][0] == activated


#: A peer process: the key of ``make_identity(2)``; it publishes ``argv[2]`` tasks (nonces
#: from ``argv[3]``) once it hears the bootstrap peer ``argv[1]`` on the tasks topic, says
#: "said", and waits to be killed.
_TALKER = """
import sys, tempfile, threading
from pathlib import Path
from meshbench.net.node import Libp2pNode
from meshbench.store.blobs import BlobStore
from meshbench.testing.factories import make_identity, make_task
from meshbench.testing.netmesh import wait_until
n = Libp2pNode(make_identity(2), BlobStore(Path(tempfile.mkdtemp())), mdns=False,
               bootstrap=[sys.argv[1]]).start()
wait_until(lambda: any("tasks" in p.topics for p in n.peers()), 60, "the bootstrap peer")
for i in range(int(sys.argv[2])):
    n.publish("tasks", make_task(make_identity(3), nonce=int(sys.argv[3]) + i, sign=True))
print("said", flush=True)
threading.Event().wait()
"""


def _talker(addr: str, count: int, first: int) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", _TALKER, addr, str(count), str(first)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stdout.readline().strip() == "said"
    return proc


def test_a_peer_restarted_with_its_key_is_heard_at_once_however_much_it_said_before(
    tmp_path: Path,
) -> None:
    """Gossip is deduplicated by (sender, seqno) for two minutes. py-libp2p starts a peer's
    seqno at the wall clock in seconds, so a peer that had published more messages than it
    had been up for seconds, SIGKILLed and started again with its key, reused its old
    numbers and what it said was dropped as seen (a worker's commitments after a crash: it
    was slashed as a no-show). What a restarted peer says is delivered at once."""
    a = node(tmp_path, 1).start()
    inbox = Inbox()
    sub = a.subscribe("tasks", inbox)
    try:
        first = _talker(a.addrs[0], 300, 0)
        inbox.wait_for(300)
        first.kill()
        first.wait(10)
        again = _talker(a.addrs[0], 1, 10_000)  # the same key, a second or two later
        try:
            fresh = make_task(make_identity(3), nonce=10_000, sign=True)
            assert inbox.wait_for(301, timeout=20)[-1][0] == fresh
        finally:
            again.kill()
            again.wait(10)
    finally:
        sub.cancel()
        a.close()
