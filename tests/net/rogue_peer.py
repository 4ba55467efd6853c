"""A misbehaving peer for the tests: plain py-libp2p, none of our validators.

Usage: python rogue_peer.py TARGET_MULTIADDR MODE COUNT
MODE: garbage (random bytes), badsig (objects with a forged signature), flood (valid,
distinct signed objects as fast as possible), unsigned-libp2p (gossip without a libp2p
signature). Prints one JSON line: {"peer_id", "sent", "disconnected"}.
"""

from __future__ import annotations

import json
import os
import sys

import msgspec
import multiaddr
import trio
from libp2p import new_host
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.pubsub import rpc_queue
from libp2p.pubsub.gossipsub import PROTOCOL_ID, PROTOCOL_ID_V11, GossipSub
from libp2p.pubsub.pubsub import Pubsub
from libp2p.tools.anyio_service import background_trio_service

from meshbench.testing.factories import make_identity, make_task

TOPIC = "/meshbench/1/tasks"


def payloads(mode: str, count: int) -> list[bytes]:
    publisher = make_identity(666)
    if mode == "garbage":
        return [os.urandom(200) for _ in range(count)]
    if mode == "badsig":
        out = []
        for i in range(count):
            task = make_task(publisher, nonce=10_000 + i, sign=True)
            forged = msgspec.structs.replace(task, signature=bytes(64))
            out.append(forged.encode())
        return out
    return [make_task(publisher, nonce=20_000 + i, sign=True).encode() for i in range(count)]


async def main(target: str, mode: str, count: int) -> None:
    defaults = rpc_queue.RpcQueue.__init__.__defaults__ or (32, 1 << 20)
    rpc_queue.RpcQueue.__init__.__defaults__ = (100_000, defaults[1])  # let the rogue flood
    host = new_host(key_pair=create_new_key_pair(os.urandom(32)))
    gossipsub = GossipSub(
        protocols=[PROTOCOL_ID_V11, PROTOCOL_ID],
        degree=6,
        degree_low=4,
        degree_high=12,
        heartbeat_interval=1,
        spam_protection_enabled=False,
    )
    pubsub = Pubsub(host, gossipsub, strict_signing=mode != "unsigned-libp2p")
    data = payloads("flood" if mode == "unsigned-libp2p" else mode, count)
    info = info_from_p2p_addr(multiaddr.Multiaddr(target))
    async with (
        host.run([multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]),
        background_trio_service(pubsub),
        background_trio_service(gossipsub),
    ):
        await pubsub.wait_until_ready()
        await host.connect(info)
        with trio.fail_after(20):
            while info.peer_id not in pubsub.peer_topics.get(TOPIC, set()):
                await trio.sleep(0.02)
        sent = 0
        for payload in data:
            if not host.get_network().get_connections(info.peer_id):
                break
            await pubsub.publish(TOPIC, payload)  # fanout: the rogue is not subscribed
            sent += 1
            if sent % 50 == 0:
                await trio.sleep(0)
        with trio.move_on_after(20):
            while host.get_network().get_connections(info.peer_id):
                await trio.sleep(0.05)
        gone = not host.get_network().get_connections(info.peer_id)
        print(json.dumps({"peer_id": str(host.get_id()), "sent": sent, "disconnected": gone}))
        sys.stdout.flush()


if __name__ == "__main__":
    trio.run(main, sys.argv[1], sys.argv[2], int(sys.argv[3]))
