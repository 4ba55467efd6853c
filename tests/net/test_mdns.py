"""mDNS discovery, inside two network namespaces joined by a veth pair.

mDNS multicasts on the machine's real network, so this test runs only inside namespaces it
creates itself (root and iproute2 needed); everywhere else it is skipped with the reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from meshbench.testing.netmesh import spawn_node, wait_until


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@pytest.fixture
def namespaces() -> Iterator[tuple[str, str]]:
    if shutil.which("ip") is None:
        pytest.skip("iproute2 ('ip') is not installed: cannot make network namespaces")
    if os.geteuid() != 0:
        pytest.skip("making network namespaces needs root")
    tag = f"mb{os.getpid() % 100000}"
    a, b = f"{tag}a", f"{tag}b"
    try:
        _ip("netns", "add", a)
        _ip("netns", "add", b)
        _ip("link", "add", f"{tag}va", "type", "veth", "peer", "name", f"{tag}vb")
        for ns, dev, addr in ((a, f"{tag}va", "10.77.0.1/24"), (b, f"{tag}vb", "10.77.0.2/24")):
            _ip("link", "set", dev, "netns", ns)
            _ip("-n", ns, "addr", "add", addr, "dev", dev)
            _ip("-n", ns, "link", "set", dev, "up", "multicast", "on")
            _ip("-n", ns, "link", "set", "lo", "up")
    except (subprocess.CalledProcessError, OSError) as exc:
        for ns in (a, b):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)
        stderr = getattr(exc, "stderr", b"") or b""
        pytest.skip(f"cannot make network namespaces here: {stderr.decode().strip() or exc}")
    try:
        yield a, b
    finally:
        for ns in (a, b):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)


def test_nodes_on_one_lan_find_each_other_by_mdns(namespaces, tmp_path: Path) -> None:
    a, b = namespaces
    node_a = spawn_node(
        tmp_path / "a", listen="/ip4/10.77.0.1/tcp/4001", mdns=True,
        prefix=["ip", "netns", "exec", a],
    )  # fmt: skip
    try:
        node_b = spawn_node(
            tmp_path / "b", listen="/ip4/10.77.0.2/tcp/4001", mdns=True,
            prefix=["ip", "netns", "exec", b],
        )  # fmt: skip
        try:
            for me, other in ((node_a, node_b), (node_b, node_a)):
                peers = wait_until(lambda me=me: me.peers(), 30, "a peer found by mDNS")
                assert [p["peer_id"] for p in peers] == [other.peer_id]
        finally:
            node_b.stop()
    finally:
        node_a.stop()
