from __future__ import annotations

import pytest

from meshbench.core.errors import NetworkError, UnknownPeer
from meshbench.core.model import model_types
from meshbench.net.keys import (
    did_from_peer_id,
    key_pair_of,
    parse_peer_id,
    peer_id_from_did,
    peer_id_of,
)
from meshbench.net.topics import NAMESPACE, TOPIC_TYPES, Topic, topic_for_type, wire_topic
from meshbench.testing.factories import make_identity


def test_peer_id_and_did_name_the_same_ed25519_key() -> None:
    ident = make_identity(7)
    pid = peer_id_of(ident)
    assert str(pid).startswith("12D3KooW")
    assert did_from_peer_id(pid) == did_from_peer_id(str(pid)) == ident.did
    assert peer_id_from_did(ident.did) == pid
    pair = key_pair_of(ident)
    assert pair.public_key.to_bytes() == ident.public_key
    msg = b"same key"
    assert pair.public_key.verify(msg, ident.sign(msg))


def test_bad_peer_ids_raise_typed_errors() -> None:
    with pytest.raises(UnknownPeer):
        parse_peer_id("not-a-peer-id")


def test_every_topic_is_namespaced_and_every_signed_type_has_one_topic() -> None:
    assert Topic.TASKS.wire == NAMESPACE + "tasks" == wire_topic("tasks")
    assert Topic.parse("/meshbench/1/offers") is Topic.OFFERS
    with pytest.raises(NetworkError):
        Topic.parse("/other/1/tasks")
    # (types that tests define for themselves carry a "test." tag and travel nowhere)
    signed = {
        tag
        for tag, cls in model_types().items()
        if hasattr(cls, "SIGNER") and not tag.startswith("test.")
    }
    routed = [tag for tags in TOPIC_TYPES.values() for tag in tags]
    assert len(routed) == len(set(routed))  # one topic per type
    assert signed <= set(routed), signed - set(routed)
    assert topic_for_type("ComputeOffer") is Topic.OFFERS
    with pytest.raises(NetworkError):
        topic_for_type("MeshPolicy")
