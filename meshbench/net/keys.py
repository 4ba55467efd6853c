"""One key, two names: the node's Ed25519 seed gives both its did:key and its libp2p PeerID.

libp2p names an Ed25519 key by an ``identity`` multihash of its protobuf-encoded public key,
so a PeerID (``12D3KooW...``) carries the key itself: :func:`did_from_peer_id` recovers the
did:key without asking the peer anything.
"""

from __future__ import annotations

from libp2p.crypto.ed25519 import Ed25519PublicKey, create_new_key_pair
from libp2p.crypto.keys import KeyPair, KeyType
from libp2p.peer.id import ID

from meshbench.core.errors import InvalidDID, UnknownPeer
from meshbench.core.identity import Identity, did_from_public_key, public_key_from_did

__all__ = ["did_from_peer_id", "key_pair_of", "parse_peer_id", "peer_id_from_did", "peer_id_of"]


def key_pair_of(identity: Identity) -> KeyPair:
    """The libp2p key pair of ``identity`` (the same Ed25519 key, from its seed)."""
    return create_new_key_pair(identity.seed())


def peer_id_of(identity: Identity) -> ID:
    return ID.from_pubkey(Ed25519PublicKey.from_bytes(identity.public_key))


def peer_id_from_did(did: str) -> ID:
    return ID.from_pubkey(Ed25519PublicKey.from_bytes(public_key_from_did(did)))


def parse_peer_id(text: str | ID) -> ID:
    """A PeerID from its base58 text; :class:`UnknownPeer` when it is not one."""
    if isinstance(text, ID):
        return text
    try:
        return ID.from_base58(text)
    except Exception as exc:
        raise UnknownPeer(f"{text!r} is not a libp2p PeerID: {exc}") from None


def did_from_peer_id(peer_id: str | ID) -> str:
    """The did:key of an Ed25519 PeerID; :class:`InvalidDID` for other key types."""
    pid = parse_peer_id(peer_id)
    key = pid.extract_public_key()
    if key is None or key.get_type() != KeyType.Ed25519:
        raise InvalidDID(f"peer {pid} does not carry an inline Ed25519 key, so it has no did:key")
    return did_from_public_key(key.to_bytes())
