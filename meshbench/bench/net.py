"""``meshbench bench net``: gossip latency across five loopback nodes, and blob throughput.

Every node is its own OS process (``mesh-cli start``), as in a real mesh. Figures:

* ``gossip_p50_ms`` / ``gossip_p99_ms``: from the publisher's own acceptance of a message to
  each other node's acceptance (validation included), over a star of five nodes where the
  publisher is a leaf, so most deliveries take two hops;
* ``blob_MBps``: a blob through ``/meshbench/blocks/1.0.0`` (read from the provider's store,
  hashed and written to a temporary file, checked, renamed into the fetcher's store);
* ``stream_MBps``: the same number of bytes over a bare py-libp2p stream on the same kind of
  connection (Noise + Yamux), from memory to nowhere;
* ``tcp_MBps``: a plain TCP socket copy between two processes.

Blob and stream alternate over the same direct connection for several rounds; each figure
is the best round, and the per-round ratios are reported to show the spread.
"""

from __future__ import annotations

import multiprocessing
import os
import socket
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from meshbench.testing.factories import make_identity, make_task
from meshbench.testing.netmesh import NodeProcess, spawn_mesh, wait_until

MB = 1024 * 1024


def run(quick: bool = False, rounds: int | None = None) -> dict[str, Any]:
    """``rounds`` alternations of blob fetch and bare stream (3, or 1 with ``quick``): each
    figure is the best round (throughput on a shared machine is only ever slowed down), and
    ``blob_vs_stream_rounds`` shows the spread of the per-round ratios."""
    messages = 60 if quick else 300
    blob_bytes = (16 if quick else 64) * MB
    rounds = rounds or (1 if quick else 3)
    blob_s: list[float] = []
    stream_s: list[float] = []
    with tempfile.TemporaryDirectory(prefix="meshbench-bench-net-") as root:
        nodes = spawn_mesh(root, 5, extra=["--bench-protocol"])
        try:
            for n in nodes:
                wait_until(lambda n=n: n.request("status")["network"]["peers"] >= 1, 30, "peers")
            latencies = _gossip_latencies(nodes, messages)
            nodes[2].request("connect", addr=nodes[1].addr)  # the direct link both runs use
            nodes[2].request("bench-stream", peer_id=nodes[1].peer_id, bytes=4 * MB)  # warm-up
            for i in range(rounds):
                blob_s.append(_blob_seconds(nodes[1], nodes[2], Path(root), blob_bytes, i))
                stream_s.append(
                    nodes[2].request("bench-stream", peer_id=nodes[1].peer_id, bytes=blob_bytes)[
                        "seconds"
                    ]
                )
        finally:
            for n in nodes:
                n.stop()
    tcp_s = min(_tcp_seconds(blob_bytes) for _ in range(rounds))
    mbps = {
        k: blob_bytes / MB / s
        for k, s in (("blob", min(blob_s)), ("stream", min(stream_s)), ("tcp", tcp_s))
    }
    q = statistics.quantiles(latencies, n=100)
    return {
        "nodes": 5,
        "messages": messages,
        "deliveries": len(latencies),
        "gossip_p50_ms": round(statistics.median(latencies) * 1000, 2),
        "gossip_p99_ms": round(q[98] * 1000, 2),
        "blob_MB": blob_bytes // MB,
        "rounds": rounds,
        "blob_MBps": round(mbps["blob"], 1),
        "stream_MBps": round(mbps["stream"], 1),
        "tcp_MBps": round(mbps["tcp"], 1),
        "blob_vs_stream": round(mbps["blob"] / mbps["stream"], 3),
        "blob_vs_stream_rounds": [round(s / b, 3) for b, s in zip(blob_s, stream_s, strict=True)],
        "blob_vs_tcp": round(mbps["blob"] / mbps["tcp"], 4),
        "stream_vs_tcp": round(mbps["stream"] / mbps["tcp"], 4),
    }


def _gossip_latencies(nodes: list[NodeProcess], messages: int) -> list[float]:
    publisher = nodes[1]
    author = make_identity(4242)
    tasks = [make_task(author, nonce=i, sign=True) for i in range(messages)]
    want = {str(t.cid) for t in tasks}
    for task in tasks:  # one at a time, so latency is not queueing behind a burst
        publisher.request("publish", objects=[task.encode().hex()])
        time.sleep(0.01)
    arrivals: dict[str, dict[str, float]] = {}
    for node in nodes:
        events = wait_until(
            lambda node=node: (ev := node.events()) and want <= {e["cid"] for e in ev} and ev,
            60,
            f"{messages} messages at {node.peer_id}",
        )
        arrivals[node.peer_id] = {e["cid"]: e["at"] for e in events if e["cid"] in want}
    sent = arrivals[publisher.peer_id]
    return [
        seen[cid] - sent[cid]
        for peer, seen in arrivals.items()
        if peer != publisher.peer_id
        for cid in want
    ]


def _blob_seconds(
    provider: NodeProcess, fetcher: NodeProcess, root: Path, size: int, round_: int
) -> float:
    path = root / f"bench-blob-{round_}.bin"  # a new blob each round: none is fetched twice
    with open(path, "wb") as f:
        for _ in range(size // MB):
            f.write(os.urandom(MB))
    cid = provider.request("provide", path=str(path))["cid"]
    seconds = fetcher.request("fetch", cid=cid, peers=[provider.peer_id], timeout=600)["seconds"]
    path.unlink()
    return float(seconds)


def _tcp_sender(port: int, size: int) -> None:
    block = bytes(256 * 1024)
    with socket.create_connection(("127.0.0.1", port)) as s:
        sent = 0
        while sent < size:
            s.sendall(block)
            sent += len(block)


def _tcp_seconds(size: int) -> float:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        ctx = multiprocessing.get_context("spawn")
        proc = ctx.Process(target=_tcp_sender, args=(server.getsockname()[1], size))
        proc.start()
        conn, _ = server.accept()
        with conn:
            start = time.perf_counter()
            got = 0
            buf = bytearray(1 << 20)
            while got < size:
                n = conn.recv_into(buf)
                if not n:
                    break
                got += n
            seconds = time.perf_counter() - start
        proc.join(30)
    return seconds
