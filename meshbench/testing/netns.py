"""Network namespaces joined by a bridge, for partition tests of the libp2p mesh.

:class:`Lan` makes a Linux bridge in the caller's namespace (it holds the bridge's address,
so a node in the calling process is on the LAN too) and one namespace per peer, each joined
to the bridge by a veth pair. :meth:`Lan.cut` takes a peer's link down (its packets are
dropped, its TCP connections stall as in a real split) and :meth:`Lan.heal` brings it back.
Needs root and iproute2; :func:`lan_unavailable` says why not, so a test can skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence

from meshbench.core.errors import NetworkError

__all__ = ["Lan", "lan_unavailable"]


def _ip(*args: str) -> None:
    try:
        subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)
    except subprocess.CalledProcessError as exc:
        msg = exc.stderr.decode(errors="replace").strip()
        raise NetworkError(f"ip {' '.join(args)}: {msg}") from None


def lan_unavailable() -> str | None:
    """Why namespaces cannot be made here (no iproute2, not root), or None."""
    if shutil.which("ip") is None:
        return "iproute2 ('ip') is not installed: cannot make network namespaces"
    if os.geteuid() != 0:
        return "making network namespaces needs root"
    return None


class Lan:
    """A bridge at ``10.A.B.1/24`` and ``peers`` namespaces at ``10.A.B.(10+i)``.

    Names and the subnet are drawn from ``tag`` (default: this process's id), so that
    concurrent test runs on one machine do not collide. Use it as a context manager: every
    namespace, veth and the bridge are removed on exit.
    """

    def __init__(self, peers: int, tag: int | None = None) -> None:
        n = os.getpid() if tag is None else tag
        self.peers = peers
        self.prefix = f"mbp{n % 100000}"
        self.subnet = f"10.{100 + n % 100}.{(n // 100) % 250}"
        self.bridge = f"{self.prefix}br"
        self.host_ip = f"{self.subnet}.1"
        self.namespaces = [f"{self.prefix}n{i}" for i in range(peers)]
        self._made: list[tuple[str, str]] = []

    def ip_of(self, i: int) -> str:
        return f"{self.subnet}.{10 + i}"

    def _host_end(self, i: int) -> str:
        return f"{self.prefix}h{i}"

    def prefix_of(self, i: int) -> list[str]:
        """The command prefix that runs a process inside peer ``i``'s namespace."""
        return ["ip", "netns", "exec", self.namespaces[i]]

    def __enter__(self) -> Lan:
        return self.open()

    def open(self) -> Lan:
        """Make the bridge and the namespaces (all or nothing: NetworkError, none left)."""
        try:
            _ip("link", "add", self.bridge, "type", "bridge")
            self._made.append(("link", self.bridge))
            _ip("addr", "add", f"{self.host_ip}/24", "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
            for i, ns in enumerate(self.namespaces):
                host, inner = self._host_end(i), f"{self.prefix}p{i}"
                _ip("netns", "add", ns)
                self._made.append(("netns", ns))
                _ip("link", "add", host, "type", "veth", "peer", "name", inner)
                self._made.append(("link", host))
                _ip("link", "set", inner, "netns", ns)
                _ip("link", "set", host, "master", self.bridge)
                _ip("link", "set", host, "up")
                _ip("-n", ns, "addr", "add", f"{self.ip_of(i)}/24", "dev", inner)
                _ip("-n", ns, "link", "set", inner, "up")
                _ip("-n", ns, "link", "set", "lo", "up")
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for kind, name in reversed(self._made):
            args = ["netns", "del", name] if kind == "netns" else ["link", "del", name]
            subprocess.run(["ip", *args], capture_output=True, timeout=10)
        self._made.clear()

    def cut(self, peers: Sequence[int]) -> None:
        """Take these peers' links down: everything they send or are sent is dropped."""
        for i in peers:
            _ip("link", "set", self._host_end(i), "down")

    def heal(self, peers: Sequence[int]) -> None:
        for i in peers:
            _ip("link", "set", self._host_end(i), "up")
