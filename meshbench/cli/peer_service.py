"""A node run from the command line: a :class:`Libp2pNode` plus its control socket.

``mesh-cli start`` builds a :class:`NodeService` and waits; the other ``mesh-cli`` commands
are the handlers below, reached through :mod:`meshbench.net.control`. Protocol commands
(``publish-task``, ``task-status``, ``offer-execution``) are answered by the node's role
(:mod:`meshbench.runtime.roles`: ``--role authority`` or ``--role worker``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from meshbench.core import encoding
from meshbench.core.errors import EncodingError, NetworkError, ProtocolError, SchemaError
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
        mdns: bool = False,
        key_name: str = "default",
        muxer: str = "YAMUX",
        guard: GuardConfig | None = None,
        bench_protocol: bool = False,
    ) -> None:
        self.data_dir = Path(data_dir)
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
        #: The node's part in the protocol (meshbench.runtime.roles), attached after start.
        self.role: Any = None

    def start(self) -> NodeService:
        # Claim the control socket first: it refuses to start over a live node.
        self._control = ControlServer(self.data_dir, self.handlers())
        try:
            self.node.start()
        except BaseException:
            self._control.close()
            raise
        self._control.start()
        return self

    def close(self) -> None:
        try:
            if self.role is not None:
                self.role.close()
            if self._control is not None:
                self._control.close()
        finally:
            self.node.close()
            self.stopped.set()

    def info(self) -> dict[str, Any]:
        return {"peer_id": self.node.peer_id, "did": self.node.did, "addrs": self.node.addrs}

    # --- control commands --------------------------------------------------------------
    def handlers(self) -> dict[str, Any]:
        return {
            "status": self._status,
            "list-peers": lambda args: [p.to_json() for p in self.node.peers()],
            "connect": lambda args: {"peer_id": self.node.connect(str(args["addr"]))},
            "publish": self._publish,
            "events": self._events,
            "provide": self._provide,
            "fetch": self._fetch,
            "bench-stream": self._bench_stream,
            "sync": lambda args: {"new_events": self.node.sync(str(args["peer_id"]))},
            "publish-task": self._by_role("publish-task", "authority"),
            "task-status": self._by_role("task-status", "authority"),
            "rejections": self._by_role("rejections", "authority"),
            "offer-execution": self._by_role("offer-execution", "worker"),
            "stop": self._stop,
        }

    def _status(self, args: dict[str, Any]) -> dict[str, Any]:
        return {
            **self.info(),
            "network": self.node.stats(),
            "protocol": self.role.status() if self.role is not None else {"role": "peer"},
        }

    def _publish(self, args: dict[str, Any]) -> dict[str, Any]:
        """Gossip encoded signed objects (hex), each on the topic of its type."""
        objs = []
        names = list(args.get("names") or ())
        for i, text in enumerate(args["objects"]):
            name = names[i] if i < len(names) else f"object {i}"
            try:
                data = bytes.fromhex(text)
            except ValueError:
                raise SchemaError("objects travel to the node as hex-encoded DAG-CBOR") from None
            try:
                objs.append(decode_object(data))
            except (EncodingError, SchemaError) as exc:
                # the same type, and a message that says which file and what it should be
                raise type(exc)(
                    f"{name} is not a signed meshbench object (DAG-CBOR, e.g. a task.cbor "
                    f"written by TaskIntent.encode()): {exc}"
                ) from None
        by_topic: dict[Topic, list[Any]] = {}
        for obj in objs:
            by_topic.setdefault(topic_for_type(obj.__struct_config__.tag), []).append(obj)
        sent = sum(self.node.publish_many(t, group) for t, group in by_topic.items())
        return {"sent": sent, "cids": [str(o.cid) for o in objs]}

    def _events(self, args: dict[str, Any]) -> list[dict[str, Any]]:
        """The events this node accepted (gossip and sync), oldest first."""
        out = []
        for topic, data, at in self.node.events():
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
        self.node.provide(cid)
        return {"cid": str(cid), "bytes": self.store.size(cid)}

    def _fetch(self, args: dict[str, Any]) -> dict[str, Any]:
        cid = encoding.parse_cid(str(args["cid"]), codec=encoding.RAW)
        peers = [str(p) for p in args.get("peers") or ()]
        start = time.perf_counter()
        path = self.node.fetch_blob(cid, peers=peers, timeout=float(args.get("timeout", 300)))
        seconds = time.perf_counter() - start
        return {
            "cid": str(cid),
            "bytes": self.store.size(cid),
            "path": str(path),
            "seconds": seconds,
        }

    def _bench_stream(self, args: dict[str, Any]) -> dict[str, Any]:
        if not self.node.config.bench_protocol:
            raise NetworkError("this node was not started with --bench-protocol")
        return {"seconds": self.node.bench_stream(str(args["peer_id"]), int(args["bytes"]))}

    def _by_role(self, name: str, role: str) -> Any:
        """A command that the node's protocol role answers (see meshbench.runtime.roles)."""

        def handler(args: dict[str, Any]) -> Any:
            handlers = self.role.handlers() if self.role is not None else {}
            if name not in handlers:
                raise ProtocolError(
                    f"{name} needs a node started with 'mesh-cli start --role {role}'"
                )
            return handlers[name](args)

        return handler

    def _stop(self, args: dict[str, Any]) -> dict[str, Any]:
        # Answer first; the foreground process sees the event and shuts down.
        threading.Timer(0.05, self.stopped.set).start()
        return {"stopping": True}
