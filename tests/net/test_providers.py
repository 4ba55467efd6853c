"""Provider records are re-announced while a blob is provided, and lapse once it is not."""

from __future__ import annotations

from pathlib import Path

import pytest

from meshbench.core.identity import Identity
from meshbench.net.node import Libp2pNode
from meshbench.store.blobs import BlobStore
from meshbench.testing.netmesh import wait_until


@pytest.mark.timeout(120)
def test_provider_records_are_reannounced_and_expire(tmp_path: Path) -> None:
    fast = {"reprovide_s": 0.3, "provider_ttl_s": 1.5, "mdns": False}
    a = Libp2pNode(Identity.generate(), BlobStore(tmp_path / "a"), **fast).start()
    try:
        b = Libp2pNode(
            Identity.generate(), BlobStore(tmp_path / "b"), bootstrap=a.addrs[:1], **fast
        ).start()
        try:
            wait_until(lambda: b.peers(), 30, "b connected to a")
            kept, dropped = a.store.put(b"kept blob"), a.store.put(b"dropped blob")
            a.provide(kept)
            a.provide(dropped)
            first = wait_until(lambda: b.provider_records(kept).get(a.peer_id), 30, "a's record")
            wait_until(lambda: b.provider_records(dropped).get(a.peer_id), 30, "a's 2nd record")
            # re-announced: b's record of a is refreshed, again and again, past its TTL
            wait_until(
                lambda: (b.provider_records(kept).get(a.peer_id) or 0) > first + 2.0,
                30,
                "a's record refreshed beyond one TTL",
            )
            a.unprovide(dropped)  # no longer announced: b's record lapses
            wait_until(lambda: a.peer_id not in b.provider_records(dropped), 30, "expiry")
            assert a.peer_id in b.provider_records(kept)
        finally:
            b.close()
    finally:
        a.close()
