"""Private inputs end to end: the key reaches exactly the chosen worker and verifiers."""

from __future__ import annotations

import pytest

from meshbench.core.errors import DecryptionError
from meshbench.core.protocol import PrivateInput, SealKey
from meshbench.store.blobs import BlobStore
from meshbench.store.sealing import seal_to
from meshbench.testing.protocol import ProtocolHarness


def test_sealkey_gives_the_input_to_the_chosen_peers_only(tmp_path):
    store = BlobStore(tmp_path / "blobs")
    h = ProtocolHarness()
    secret = b"patient records, do not share"
    envelope = store.put_encrypted(secret, [h.publisher.did])  # sealed to the publisher only
    task = h.task(input_cid=envelope.ciphertext_cid)
    h.feed(task)
    h.feed(PrivateInput(task_cid=task.cid))
    h.feed(h.offer(task, h.peers[0]))
    h.advance(5_000)
    [seal] = [c for c in h.fire(task, "offers") if isinstance(c, SealKey)]
    assert seal.input_cid == envelope.ciphertext_cid
    opened = seal_to(envelope, h.publisher, seal.recipients)
    assert opened.ciphertext_cid == envelope.ciphertext_cid
    chosen = set(seal.recipients)
    for peer in h.peers:
        if peer.did in chosen:
            assert store.get_decrypted(opened, peer) == secret
        else:
            with pytest.raises(DecryptionError):
                store.get_decrypted(opened, peer)
    with pytest.raises(DecryptionError):
        seal_to(envelope, h.peers[0], seal.recipients)  # only a holder can share the key
