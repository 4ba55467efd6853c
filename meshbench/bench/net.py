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

Throughput is measured in rounds after a warm-up (not counted). A round moves the same
number of bytes twice by each kind, in the order blob, stream, TCP, TCP, stream, blob, so a
load that rises or falls steadily through the round weighs on each kind alike, and gives
one ratio of each pair (its two transfers of one kind against its two of the other). A
neighbour's load on a shared machine changes between rounds more than within one, so each
ratio is the median over rounds, reported with its min and max (``*_spread``) and every
round (``*_rounds``); the MB/s figures are per-kind medians over all transfers. The blobs
are made before the first round (none is fetched twice); rounds stop at ``rounds`` or once
``max_seconds`` have passed (after at least three).
"""

from __future__ import annotations

import multiprocessing
import os
import socket
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from meshbench.testing.factories import make_identity, make_task
from meshbench.testing.netmesh import NodeProcess, spawn_mesh, wait_until

MB = 1024 * 1024
#: What each round moves: a blob through the blocks protocol, a bare stream, plain TCP.
KINDS: tuple[str, ...] = ("blob", "stream", "tcp")


def run(
    quick: bool = False, rounds: int | None = None, max_seconds: float | None = None
) -> dict[str, Any]:
    """Gossip latencies, then ``rounds`` rounds of blob / stream / TCP (5, or 3 with
    ``quick``), stopping early once ``max_seconds`` (240, or 60) have passed."""
    messages = 60 if quick else 300
    blob_bytes = (16 if quick else 64) * MB
    rounds = rounds or (3 if quick else 5)
    deadline = time.monotonic() + (max_seconds or (60.0 if quick else 240.0))  # for rounds
    seconds: dict[str, list[float]] = {kind: [] for kind in KINDS}
    cpu_seconds: dict[str, list[float | None]] = {kind: [] for kind in KINDS}
    with tempfile.TemporaryDirectory(prefix="meshbench-bench-net-") as root:
        nodes = spawn_mesh(root, 5, extra=["--bench-protocol"])
        try:
            for n in nodes:
                wait_until(lambda n=n: n.request("status")["network"]["peers"] >= 1, 30, "peers")
            latencies = _gossip_latencies(nodes, messages)
            provider, fetcher = nodes[1], nodes[2]
            fetcher.request("connect", addr=provider.addr)  # the direct link both runs use
            cids = iter(_provide_blobs(provider, Path(root), [4 * MB] + [blob_bytes] * 2 * rounds))
            ends = (provider.proc.pid, fetcher.proc.pid)
            transfers = {
                "blob": lambda size: _on_nodes(ends, _fetch_seconds, provider, fetcher, next(cids)),
                "stream": lambda size: _on_nodes(ends, _stream_seconds, provider, fetcher, size),
                "tcp": lambda size: _tcp_seconds(size),
            }
            for kind in KINDS:  # warm-up: connections, windows, caches; not counted
                transfers[kind](4 * MB)
            for i in range(rounds):
                if i >= 3 and time.monotonic() > deadline:
                    break
                for kind in (*KINDS, *reversed(KINDS)):  # ABCCBA: a steady drift cancels
                    wall, cpu = transfers[kind](blob_bytes)
                    seconds[kind].append(wall)
                    cpu_seconds[kind].append(cpu)
        finally:
            for n in nodes:
                n.stop()
    q = statistics.quantiles(latencies, n=100)
    out: dict[str, Any] = {
        "nodes": 5,
        "messages": messages,
        "deliveries": len(latencies),
        "gossip_p50_ms": round(statistics.median(latencies) * 1000, 2),
        "gossip_p99_ms": round(q[98] * 1000, 2),
        "blob_MB": blob_bytes // MB,
        "rounds": len(seconds["blob"]) // 2,
    }
    for kind in KINDS:
        out[f"{kind}_MBps"] = round(blob_bytes / MB / statistics.median(seconds[kind]), 1)
    for a, b in (("blob", "stream"), ("blob", "tcp"), ("stream", "tcp")):
        # a round's throughput ratio a/b = b's seconds / a's seconds, over its two of each
        ratios = [
            (seconds[b][j] + seconds[b][j + 1]) / (seconds[a][j] + seconds[a][j + 1])
            for j in range(0, len(seconds[a]), 2)
        ]
        out[f"{a}_vs_{b}"] = round(statistics.median(ratios), 4)
        out[f"{a}_vs_{b}_spread"] = [round(min(ratios), 4), round(max(ratios), 4)]
        out[f"{a}_vs_{b}_rounds"] = [round(r, 4) for r in ratios]
    cpu = {k: [c for c in cpu_seconds[k] if c is not None] for k in KINDS}
    if all(len(cpu[k]) == len(seconds[k]) for k in KINDS):
        # CPU time of both ends per MB: what each kind costs, whatever the machine's load
        cost = {k: statistics.median(cpu[k]) * 1000 / (blob_bytes / MB) for k in KINDS}
        out["cpu_ms_per_MB"] = {k: round(v, 3) for k, v in cost.items()}
        out["blob_vs_stream_cpu"] = round(cost["stream"] / cost["blob"], 4)
        out["stream_vs_tcp_cpu"] = round(cost["tcp"] / cost["stream"], 4)
    return out


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


def _provide_blobs(provider: NodeProcess, root: Path, sizes: list[int]) -> list[str]:
    """Random blobs in the provider's store, made before any timing starts (writing them
    while another transfer runs would slow it); none is fetched twice."""
    cids = []
    for i, size in enumerate(sizes):
        path = root / f"bench-blob-{i}.bin"
        with open(path, "wb") as f:
            for _ in range(size // MB):
                f.write(os.urandom(MB))
        cids.append(provider.request("provide", path=str(path))["cid"])
        path.unlink()
    return cids


def _fetch_seconds(provider: NodeProcess, fetcher: NodeProcess, cid: str) -> float:
    reply = fetcher.request("fetch", cid=cid, peers=[provider.peer_id], timeout=600)
    return float(reply["seconds"])


def _stream_seconds(provider: NodeProcess, fetcher: NodeProcess, size: int) -> float:
    reply = fetcher.request("bench-stream", peer_id=provider.peer_id, bytes=size)
    return float(reply["seconds"])


def _on_nodes(
    pids: tuple[int, ...], transfer: Callable[..., float], *args: Any
) -> tuple[float, float | None]:
    """``transfer(*args)``'s seconds, and the CPU seconds the node processes spent on it."""
    before = [_thread_cpu(pid) for pid in pids]
    wall = transfer(*args)
    after = [_thread_cpu(pid) for pid in pids]
    if not all(before) or not all(after):
        return wall, None
    # a thread started during the transfer counts from zero (a blob's writer thread)
    pairs = zip(before, after, strict=True)
    return wall, sum(t - b.get(tid, 0.0) for b, a in pairs for tid, t in a.items())


def _thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds of each thread of ``pid`` (Linux's schedstat, in ns); {} elsewhere."""
    out: dict[int, float] = {}
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return out
    for task in tasks:
        try:
            out[int(task.name)] = int((task / "schedstat").read_text().split()[0]) / 1e9
        except (OSError, ValueError, IndexError):  # a thread that just ended
            continue
    return out


def _tcp_sender(port: int, size: int, report: Any) -> None:
    block = bytes(256 * 1024)
    with socket.create_connection(("127.0.0.1", port)) as s:
        start = time.thread_time()
        sent = 0
        while sent < size:
            s.sendall(block)
            sent += len(block)
        report.send(time.thread_time() - start)


def _tcp_seconds(size: int) -> tuple[float, float]:
    """Seconds to move ``size`` bytes over a plain loopback socket, and the CPU seconds of
    its two ends (the sender's own loop, not its process start)."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        ctx = multiprocessing.get_context("spawn")
        report, child_end = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_tcp_sender, args=(server.getsockname()[1], size, child_end))
        proc.start()
        conn, _ = server.accept()
        with conn:
            start, cpu = time.perf_counter(), time.thread_time()
            got = 0
            buf = bytearray(1 << 20)
            while got < size:
                n = conn.recv_into(buf)
                if not n:
                    break
                got += n
            seconds, cpu = time.perf_counter() - start, time.thread_time() - cpu
        sender_cpu = float(report.recv()) if report.poll(30) else 0.0
        proc.join(30)
    return seconds, cpu + sender_cpu
