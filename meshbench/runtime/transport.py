"""The transport interface a :class:`AuthorityNode` drives: gossip, blobs by CID, peers.

Three transports implement it: in-process (tests, notebooks), Dask (cluster) and libp2p
(:class:`~meshbench.net.node.Libp2pNode`, a real peer-to-peer mesh). The protocol core
never sees which one it runs on.

Contract, for every implementation:

* ``publish`` sends only signed objects, on the topic that carries their type, and returns
  False (sending nothing) for an object the mesh has already seen.
* ``subscribe`` callbacks get objects that have passed
  :func:`~meshbench.core.model.decode_object` (CID, canonical bytes, schema, signature) and
  the topic's type check, each at most once, on a thread that is not the network's.
* ``fetch_blob`` returns the path of a blob in the local store whose bytes hash to ``cid``;
  it raises :class:`~meshbench.core.errors.BlobNotFound` when no provider delivers it.
  ``peers`` (PeerIDs) are asked first: the party that sent the object naming the blob
  holds it, and asking it directly needs no provider lookup (which stalls on a peer that
  is cut off).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

from meshbench.core.encoding import CID
from meshbench.core.model import Model
from meshbench.net.node import Libp2pNode
from meshbench.net.peers import PeerRecord
from meshbench.net.topics import Topic

__all__ = ["Libp2pTransport", "MessageCallback", "PeerRecord", "Topic", "Transport"]

#: Called with a checked object and the id of the peer it came from.
MessageCallback = Callable[[Model, str], None]


class Cancellable(Protocol):
    def cancel(self) -> None: ...


@runtime_checkable
class Transport(Protocol):
    def publish(self, topic: Topic | str, obj: Model) -> bool: ...

    def subscribe(self, topic: Topic | str, callback: MessageCallback) -> Cancellable: ...

    def fetch_blob(
        self, cid: CID | str, *, peers: Sequence[str] = (), timeout: float = 300
    ) -> Path: ...

    def provide(self, cid: CID | str) -> None: ...

    def peers(self) -> list[PeerRecord]: ...

    def close(self) -> None: ...


#: The libp2p implementation (see :mod:`meshbench.net`).
Libp2pTransport = Libp2pNode
