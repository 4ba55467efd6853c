"""Interoperability with js-libp2p (libp2p 3.x, @libp2p/gossipsub): a peer of another stack
connects over TCP + Noise + Yamux, reads our Identify, exchanges signed gossip with us, its
malformed message is dropped without harm, and it fetches an 8 MB blob from us over the
blocks protocol (many Yamux frames and Noise messages, as py-libp2p writes them).

Needs Node.js and ``npm ci`` in ``interop/js`` (skipped with the reason otherwise).
"""

from __future__ import annotations

import hashlib
import json
import queue
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

from meshbench.net.node import Libp2pNode
from meshbench.store.blobs import BlobStore
from meshbench.testing.factories import make_identity, make_task
from meshbench.testing.netmesh import wait_until

JS = Path(__file__).resolve().parents[2] / "interop" / "js"


def _lines(proc: subprocess.Popen[bytes]) -> queue.Queue[dict]:
    out: queue.Queue[dict] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            try:
                out.put(json.loads(line))
            except ValueError:
                continue

    threading.Thread(target=pump, daemon=True).start()
    return out


def _next(lines: queue.Queue[dict], key: str, timeout: float = 45) -> dict:
    while True:
        item = lines.get(timeout=timeout)
        if "error" in item:
            raise AssertionError(f"js peer: {item}")
        if key in item:
            return item


def test_js_libp2p_peer_identifies_and_gossips_with_us(tmp_path: Path) -> None:
    if shutil.which("node") is None:
        pytest.skip("Node.js is not installed")
    if not (JS / "node_modules" / "libp2p").is_dir():
        pytest.skip("js-libp2p is not installed: run 'npm ci' in interop/js")
    ours = Libp2pNode(make_identity(31), BlobStore(tmp_path / "py"), mdns=False).start()
    proc = None
    try:
        inbox: queue.Queue = queue.Queue()
        ours.subscribe("tasks", lambda obj, peer: inbox.put((obj, peer)))
        from_js = make_task(make_identity(32), nonce=1, sign=True)
        blob = hashlib.shake_256(b"interop blob").digest(8 * 1024 * 1024 + 12345)
        blob_cid = ours.store.put(blob)
        proc = subprocess.Popen(
            ["node", str(JS / "peer.mjs"), ours.addrs[0], from_js.encode().hex(),
             bytes(blob_cid).hex()],
            cwd=JS, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        lines = _lines(proc)
        js_peer = _next(lines, "peer_id")["peer_id"]
        ident = _next(lines, "agent")
        assert ident["agent"].startswith("meshbench/")
        assert ident["protocol_version"] == "/mesh/1.0.0"
        _next(lines, "published")
        obj, origin = inbox.get(timeout=30)
        assert obj == from_js and origin == js_peer
        assert ours.stats()["rejected"] == {}  # copies of the object: no penalty
        sent = {}
        for i in range(30):  # gossip is best effort: offer new objects until one lands
            to_js = make_task(make_identity(33), nonce=i, sign=True)
            ours.publish("tasks", to_js)
            sent[to_js.encode().hex()] = to_js
            try:
                answer = _next(lines, "received", timeout=1)["received"]
                break
            except queue.Empty:
                continue
        else:
            raise AssertionError("the js peer received none of our messages")
        assert answer in sent
        _next(lines, "malformed")
        wait_until(lambda: ours.stats()["rejected"], 30, "the malformed message's rejection")
        stats = ours.stats()
        assert stats["rejected"] == {"EncodingError": 1}  # the malformed one, dropped
        assert js_peer not in stats["banned"]  # one bad message is not a ban
        assert any(p.peer_id == js_peer for p in ours.peers())
        fetched = _next(lines, "blob_sha256")
        assert fetched["blob_status"] == 0 and fetched["blob_size"] == len(blob)
        assert fetched["blob_bytes"] == len(blob)
        assert fetched["blob_sha256"] == hashlib.sha256(blob).hexdigest()
        assert proc.wait(30) == 0
        assert ours.stats()["rejected"] == {"EncodingError": 1}  # copies: no penalty
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(10)
        ours.close()
