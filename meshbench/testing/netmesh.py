"""Real multi-process meshes on loopback, for tests, benchmarks and notebooks.

Each node is a separate OS process running ``mesh-cli start`` on its own data dir (mDNS off,
127.0.0.1, a free port). The parent drives it through the node's control socket. Every wait
is a condition polled against a deadline, never a bare sleep.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from meshbench.core.errors import NetworkError
from meshbench.net import control

__all__ = ["NodeProcess", "WorkerProcess", "spawn_mesh", "spawn_node", "spawn_worker", "wait_until"]

T = TypeVar("T")


def wait_until(condition: Callable[[], T], timeout: float, what: str, interval: float = 0.05) -> T:
    """Return ``condition()``'s first truthy value; NetworkError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = condition()
        if last:
            return last
        if time.monotonic() > deadline:
            raise NetworkError(
                f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})"
            )
        time.sleep(interval)


class NodeProcess:
    """A ``mesh-cli start`` child process and the info line it printed when ready."""

    def __init__(self, proc: subprocess.Popen[bytes], data_dir: Path, info: dict[str, Any]):
        self.proc = proc
        self.data_dir = data_dir
        self.info = info
        self.peer_id: str = info["peer_id"]
        self.did: str = info["did"]
        self.addr: str = info["addrs"][0]

    def request(self, cmd: str, timeout: float = 120, **args: Any) -> Any:
        return control.request(self.data_dir, cmd, timeout=timeout, **args)

    def events(self) -> list[dict[str, Any]]:
        return self.request("events")

    def cids(self, topic: str | None = None) -> set[str]:
        return {e["cid"] for e in self.events() if topic is None or e["topic"] == topic}

    def peers(self) -> list[dict[str, Any]]:
        return self.request("list-peers")

    def stop(self, timeout: float = 20) -> None:
        if self.proc.poll() is None:
            try:
                self.request("stop", timeout=5)
            except Exception:
                self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def spawn_node(
    data_dir: str | os.PathLike[str],
    *,
    bootstrap: Sequence[str] = (),
    extra: Sequence[str] = (),
    timeout: float = 60,
    listen: str = "/ip4/127.0.0.1/tcp/0",
    mdns: bool = False,
    prefix: Sequence[str] = (),
) -> NodeProcess:
    """Start a node process; ``prefix`` wraps the command (e.g. ``ip netns exec NS``)."""
    data = Path(data_dir)
    data.mkdir(parents=True, exist_ok=True)
    argv = [*prefix, sys.executable, "-m", "meshbench.cli.mesh_cli", "start"]
    argv += ["--data-dir", str(data), "--listen", listen, *extra]
    argv.append("--mdns" if mdns else "--no-mdns")
    for addr in bootstrap:
        argv += ["--bootstrap", addr]
    log = open(data / "node.log", "wb")  # noqa: SIM115 - lives as long as the process
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=log)
    lines: queue.Queue[bytes] = queue.Queue()
    assert proc.stdout is not None
    threading.Thread(target=lambda: lines.put(proc.stdout.readline()), daemon=True).start()
    try:
        line = lines.get(timeout=timeout)
        info = json.loads(line)
    except (queue.Empty, json.JSONDecodeError):
        proc.kill()
        proc.wait(5)
        tail = (data / "node.log").read_text(errors="replace")[-2000:]
        raise NetworkError(f"mesh node in {data} did not start:\n{tail}") from None
    return NodeProcess(proc, data, info)


def spawn_mesh(
    root: str | os.PathLike[str], n: int, *, extra: Sequence[str] = ()
) -> list[NodeProcess]:
    """``n`` nodes; node 0 starts first and the others bootstrap from it (in parallel)."""
    root = Path(root)
    first = spawn_node(root / "node0", extra=extra)
    nodes = [first]
    if n > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(n - 1) as pool:
            futures = [
                pool.submit(spawn_node, root / f"node{i}", bootstrap=[first.addr], extra=extra)
                for i in range(1, n)
            ]
            errors = []
            for f in futures:
                try:
                    nodes.append(f.result())
                except Exception as exc:
                    errors.append(exc)
        if errors:
            for node in nodes:
                node.stop()
            raise errors[0]
    return nodes


class WorkerProcess:
    """A ``python -m meshbench.runtime.p2p worker`` child process (a libp2p worker peer)."""

    def __init__(
        self,
        data_dir: Path,
        argv: list[str],
        timeout: float = 60,
        env: dict[str, str] | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.argv = argv
        self.env = env
        data_dir.mkdir(parents=True, exist_ok=True)
        log = open(data_dir / "worker.log", "ab")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=log, env=env)
        lines: queue.Queue[bytes] = queue.Queue()
        assert self.proc.stdout is not None
        out = self.proc.stdout
        threading.Thread(target=lambda: lines.put(out.readline()), daemon=True).start()
        try:
            line = lines.get(timeout=timeout).decode()
        except queue.Empty:
            line = ""
        if not line.startswith("worker did:key:"):
            self.kill()
            tail = (data_dir / "worker.log").read_text(errors="replace")[-2000:]
            raise NetworkError(f"worker in {data_dir} did not start:\n{tail}")
        self.did = line.split()[1]

    def kill(self) -> None:
        """SIGKILL: no goodbye, nothing flushed."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)

    def stop(self, timeout: float = 20) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()

    def restart(self, timeout: float = 60) -> WorkerProcess:
        """The same peer again: same data dir (key, bond marker, blobs), same arguments."""
        self.kill()
        return WorkerProcess(self.data_dir, self.argv, timeout, self.env)


def spawn_worker(
    data_dir: str | os.PathLike[str],
    *,
    bootstrap: str,
    authority: str,
    federation: str,
    extra: Sequence[str] = (),
    log_level: str | None = None,
) -> WorkerProcess:
    """A worker peer process that bootstraps from ``bootstrap`` and serves ``authority``;
    ``log_level`` (e.g. ``"INFO"``): what its ``worker.log`` keeps of the peer's own log."""
    argv = [sys.executable, "-m", "meshbench.runtime.p2p", "worker",
            "--data-dir", str(data_dir), "--bootstrap", bootstrap,
            "--authority", authority, "--federation", federation, *extra]  # fmt: skip
    env = None if log_level is None else {**os.environ, "MESHBENCH_LOG_LEVEL": log_level}
    return WorkerProcess(Path(data_dir), argv, env=env)
