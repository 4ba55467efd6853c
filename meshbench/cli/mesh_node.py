"""A node run from the command line: a libp2p peer plus its control socket.

``mesh-cli start`` builds a :class:`NodeService` and waits; the other ``mesh-cli`` commands
are the handlers below, reached through :mod:`meshbench.net.control`.

A plain peer is a :class:`~meshbench.net.node.Libp2pNode`. With ``--authority`` the node is
the federation's ledger authority and publisher, a :meth:`Mesh.join
<meshbench.runtime.mesh.Mesh.join>` node: ``publish-task`` publishes through it and
``status`` shows its tasks. Workers are ``python -m meshbench.runtime.p2p worker`` peers,
which offer on their own; a hand-made ``offer-execution`` is not wired yet.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from meshbench.core import encoding
from meshbench.core.errors import NetworkError, ProtocolError, SchemaError
from meshbench.core.model import decode_object
from meshbench.net.control import ControlServer
from meshbench.net.guard import GuardConfig
from meshbench.net.node import Libp2pNode
from meshbench.net.topics import Topic, topic_for_type
from meshbench.store.blobs import BlobStore
from meshbench.store.keystore import Keystore

__all__ = ["NodeService"]

log = logging.getLogger("meshbench.net")


class NodeService:
    def __init__(
        self,
        data_dir: Path,
        *,
        listen: Sequence[str],
        bootstrap: Sequence[str] = (),
        mdns: bool = True,
        key_name: str = "default",
        muxer: str = "YAMUX",
        guard: GuardConfig | None = None,
        bench_protocol: bool = False,
        authority: bool = False,
        policy: dict[str, Any] | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.mesh: Any = None  # a runtime Mesh when this node is the authority
        self._join = {"listen": listen[0], "bootstrap": list(bootstrap), "mdns": mdns}
        self.authority = authority
        if policy is not None and not authority:
            raise NetworkError("--policy applies to an --authority node only")
        self._policy = policy
        self.node: Libp2pNode | None
        if authority:
            if len(listen) != 1:
                raise NetworkError("an authority node listens on exactly one multiaddr")
            self.node = None
            self.store = BlobStore(self.data_dir / "blobs")
        else:
            identity = Keystore(self.data_dir / "keys").load_or_create(key_name)
            self.store = BlobStore(self.data_dir / "blobs")
            self.node = Libp2pNode(
                identity,
                self.store,
                listen=listen,
                bootstrap=bootstrap,
                mdns=mdns,
                muxer=muxer,
                guard=guard,
                bench_protocol=bench_protocol,
            )
        self.stopped = threading.Event()
        self._control: ControlServer | None = None

    @property
    def net(self) -> Libp2pNode:
        if self.node is None:
            raise NetworkError("the node is not running")
        return self.node

    def start(self) -> NodeService:
        # Claim the control socket first: it refuses to start over a live node.
        self._control = ControlServer(self.data_dir, self.handlers())
        try:
            if self.authority:
                from meshbench.runtime.mesh import Mesh

                self.mesh = Mesh.join(data_dir=self.data_dir, policy=self._policy, **self._join)
                self.node = self.mesh.net
                self.store = self.net.store
            else:
                self.net.start()
        except BaseException:
            self._control.close()
            raise
        self._control.start()
        return self

    def close(self) -> None:
        try:
            if self._control is not None:
                self._control.close()
        finally:
            if self.mesh is not None:
                self.mesh.close()
            elif self.node is not None:
                self.node.close()
            self.stopped.set()

    def info(self) -> dict[str, Any]:
        info = {"peer_id": self.net.peer_id, "did": self.net.did, "addrs": self.net.addrs}
        if self.mesh is not None:
            info["federation"] = self.mesh.node.federation
        return info

    # --- control commands --------------------------------------------------------------
    def handlers(self) -> dict[str, Any]:
        return {
            "status": self._status,
            "list-peers": lambda args: [p.to_json() for p in self.net.peers()],
            "connect": lambda args: {"peer_id": self.net.connect(str(args["addr"]))},
            "publish": self._publish,
            "events": self._events,
            "provide": self._provide,
            "fetch": self._fetch,
            "bench-stream": self._bench_stream,
            "sync": lambda args: {"new_events": self.net.sync(str(args["peer_id"]))},
            "publish-task": self._publish_task,
            "offer-execution": self._offer_execution,
            "stop": self._stop,
        }

    def _status(self, args: dict[str, Any]) -> dict[str, Any]:
        if self.mesh is None:
            protocol: Any = "none: a plain peer (start with --authority to run the protocol)"
        else:
            protocol = {"role": "authority", "tasks": self.mesh.tasks().to_dicts()}
        return {**self.info(), "network": self.net.stats(), "protocol": protocol}

    def _publish_task(self, args: dict[str, Any]) -> dict[str, Any]:
        if self.mesh is None:
            raise ProtocolError(
                "this node is a plain peer; tasks are published by the federation's authority "
                "node: start one with 'mesh-cli start --authority'"
            )
        handle = self.mesh.publish(
            encoding.parse_cid(str(args["wasm_cid"]), codec=encoding.RAW),
            encoding.parse_cid(str(args["input_cid"]), codec=encoding.RAW),
            fee=int(args["fee"]),
            verifiers=int(args.get("verifiers", 3)),
        )
        return {"task_cid": str(handle.cid), "state": handle.state}

    def _offer_execution(self, args: dict[str, Any]) -> Any:
        raise NotImplementedError(
            "offer-execution at a chosen cost is not wired yet: worker peers "
            "('python -m meshbench.runtime.p2p worker --authority DID ...') offer on their "
            "own for every task they can run"
        )

    def _publish(self, args: dict[str, Any]) -> dict[str, Any]:
        """Gossip encoded signed objects (hex), each on the topic of its type."""
        objs = []
        for text in args["objects"]:
            try:
                data = bytes.fromhex(text)
            except ValueError:
                raise SchemaError("objects travel to the node as hex-encoded DAG-CBOR") from None
            objs.append(decode_object(data))
        by_topic: dict[Topic, list[Any]] = {}
        for obj in objs:
            by_topic.setdefault(topic_for_type(obj.__struct_config__.tag), []).append(obj)
        sent = sum(self.net.publish_many(t, group) for t, group in by_topic.items())
        return {"sent": sent, "cids": [str(o.cid) for o in objs]}

    def _events(self, args: dict[str, Any]) -> list[dict[str, Any]]:
        """The events this node accepted (gossip and sync), oldest first."""
        out = []
        for topic, data, at in self.net.events():
            obj = decode_object(data, verify_signature=False)  # checked when it came in
            out.append(
                {"topic": topic.value, "type": type(obj).__name__, "cid": str(obj.cid), "at": at}
            )
        return out

    def _provide(self, args: dict[str, Any]) -> dict[str, Any]:
        path = Path(str(args["path"]))
        if not path.is_file():
            raise NetworkError(f"{path} is not a file the node can read")
        cid = self.store.put_file(path)
        self.net.provide(cid)
        return {"cid": str(cid), "bytes": self.store.size(cid)}

    def _fetch(self, args: dict[str, Any]) -> dict[str, Any]:
        cid = encoding.parse_cid(str(args["cid"]), codec=encoding.RAW)
        peers = [str(p) for p in args.get("peers") or ()]
        start = time.perf_counter()
        path = self.net.fetch_blob(cid, peers=peers, timeout=float(args.get("timeout", 300)))
        seconds = time.perf_counter() - start
        return {
            "cid": str(cid),
            "bytes": self.store.size(cid),
            "path": str(path),
            "seconds": seconds,
        }

    def _bench_stream(self, args: dict[str, Any]) -> dict[str, Any]:
        if not self.net.config.bench_protocol:
            raise NetworkError("this node was not started with --bench-protocol")
        return {"seconds": self.net.bench_stream(str(args["peer_id"]), int(args["bytes"]))}

    def _stop(self, args: dict[str, Any]) -> dict[str, Any]:
        # Answer first; the foreground process sees the event and shuts down.
        threading.Timer(0.05, self.stopped.set).start()
        return {"stopping": True}
