"""The libp2p network layer: gossip topics, content by CID, discovery, late-joiner sync.

See :class:`~meshbench.net.node.Libp2pNode` (thread-safe API) and
:class:`~meshbench.net.host.MeshHost` (the trio side).
"""

from __future__ import annotations

from meshbench.net.guard import GossipGuard, GuardConfig, Verdict
from meshbench.net.keys import did_from_peer_id, peer_id_from_did, peer_id_of
from meshbench.net.node import Libp2pNode, Subscription, join
from meshbench.net.peers import PeerRecord
from meshbench.net.topics import Topic, topic_for_type

__all__ = [
    "GossipGuard",
    "GuardConfig",
    "Libp2pNode",
    "PeerRecord",
    "Subscription",
    "Topic",
    "Verdict",
    "did_from_peer_id",
    "join",
    "peer_id_from_did",
    "peer_id_of",
    "topic_for_type",
]
