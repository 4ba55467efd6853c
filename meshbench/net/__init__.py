"""The libp2p network layer: gossip topics, content by CID, discovery, late-joiner sync.

See :class:`~meshbench.net.node.Libp2pNode` (thread-safe API) and
:class:`~meshbench.net.host.MeshHost` (the trio side).
"""

from __future__ import annotations

# Loaded on first use: ``meshbench.net.control`` (all a mesh-cli client needs) must not pay
# for py-libp2p's ~1.5 s of imports.
_LAZY = {
    "GossipGuard": "meshbench.net.guard",
    "GuardConfig": "meshbench.net.guard",
    "Verdict": "meshbench.net.guard",
    "did_from_peer_id": "meshbench.net.keys",
    "peer_id_from_did": "meshbench.net.keys",
    "peer_id_of": "meshbench.net.keys",
    "Libp2pNode": "meshbench.net.node",
    "Subscription": "meshbench.net.node",
    "join": "meshbench.net.node",
    "PeerRecord": "meshbench.net.peers",
    "Topic": "meshbench.net.topics",
    "topic_for_type": "meshbench.net.topics",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'meshbench.net' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


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
