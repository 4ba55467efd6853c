"""``mesh-cli``: run a libp2p mesh node and talk to it.

Example::

    mesh-cli start --listen /ip4/0.0.0.0/tcp/9000            # terminal 1 (foreground)
    mesh-cli start --data-dir b --listen /ip4/0.0.0.0/tcp/9001 \\
        --bootstrap /ip4/127.0.0.1/tcp/9000/p2p/12D3KooW...    # terminal 2
    mesh-cli list-peers --json                                 # terminal 3

Every command but ``start`` talks to the node started on the same data dir, through its
control socket (``<data dir>/mesh-node.sock``).
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import click

import meshbench
from meshbench.cli.common import data_dir_option, emit, print_table, resolve_data_dir, run_cli
from meshbench.net import control

__all__ = ["main", "main_group"]


@click.group(name="mesh-cli", context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(meshbench.__version__, prog_name="mesh-cli")
def main_group() -> None:
    """Run a mesh node on libp2p and drive it.

    \b
    Example:
      mesh-cli start --listen /ip4/0.0.0.0/tcp/9000
      mesh-cli list-peers --json
    """


@main_group.command()
@click.option(
    "--listen",
    multiple=True,
    default=["/ip4/0.0.0.0/tcp/9000"],
    show_default=True,
    help="Multiaddr to listen on (repeatable).",
)
@click.option("--bootstrap", multiple=True, help="Peer multiaddr ending in /p2p/<id> (repeatable).")
@click.option("--no-mdns", is_flag=True, help="Do not discover or announce peers on the LAN.")
@click.option("--key", "key_name", default="default", show_default=True, help="Keystore identity.")
@click.option("--muxer", type=click.Choice(["yamux", "mplex"]), default="yamux", show_default=True)
@click.option(
    "--gossip-rate",
    type=float,
    default=100.0,
    show_default=True,
    help="New gossip messages per second a peer may send before it is penalised.",
)
@click.option("--gossip-burst", type=int, default=1000, show_default=True)
@click.option(
    "--authority",
    is_flag=True,
    help="Run as the federation's ledger authority and publisher (the runtime's Mesh.join).",
)
@click.option(
    "--policy",
    "policy_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="With --authority: a JSON MeshPolicy fragment for the federation's genesis policy.",
)
@click.option("--bench-protocol", is_flag=True, hidden=True, help="Serve the bench stream.")
@click.option("-v", "--verbose", count=True, help="Log more (-vv: py-libp2p's debug log too).")
@data_dir_option
def start(
    listen: tuple[str, ...],
    bootstrap: tuple[str, ...],
    no_mdns: bool,
    key_name: str,
    muxer: str,
    gossip_rate: float,
    gossip_burst: int,
    authority: bool,
    policy_file: Path | None,
    bench_protocol: bool,
    verbose: int,
    data_dir: Path | None,
) -> None:
    """Run a mesh node in the foreground until Ctrl-C (or 'mesh-cli stop').

    Prints one JSON line when ready: peer_id, did, addrs.

    \b
    Example:
      mesh-cli start --listen /ip4/0.0.0.0/tcp/9000 \\
        --bootstrap /ip4/10.0.0.2/tcp/9000/p2p/12D3KooW...
    """
    import libp2p.network.auto_connector  # noqa: F401 - its logger exists before we tune levels

    from meshbench.cli.mesh_node import NodeService
    from meshbench.net.guard import GuardConfig

    _configure_logging(verbose)
    service = NodeService(
        resolve_data_dir(data_dir),
        listen=listen,
        bootstrap=bootstrap,
        mdns=not no_mdns,
        key_name=key_name,
        muxer=muxer.upper(),
        guard=GuardConfig(rate_per_second=gossip_rate, burst=gossip_burst),
        bench_protocol=bench_protocol,
        authority=authority,
        policy=json.loads(policy_file.read_text()) if policy_file else None,
    ).start()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: service.stopped.set())
    try:
        click.echo(json.dumps({"ready": True, **service.info()}))
        sys.stdout.flush()
        service.stopped.wait()
    finally:
        service.close()


@main_group.command("list-peers")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of peer objects.")
@data_dir_option
def list_peers(as_json: bool, data_dir: Path | None) -> None:
    """List the peers the running node is connected to.

    Example: mesh-cli list-peers --json
    """
    peers = control.request(resolve_data_dir(data_dir), "list-peers")
    if as_json:
        emit(peers, as_json=True)
    else:
        rows = [{**p, "addrs": " ".join(p["addrs"]), "did": p["did"][:24] + "..."} for p in peers]
        print_table(rows, ["peer_id", "did", "agent", "addrs"])


@main_group.command()
@click.option("--json", "as_json", is_flag=True)
@data_dir_option
def status(as_json: bool, data_dir: Path | None) -> None:
    """Show the running node: identity, addresses, gossip and content counters.

    Example: mesh-cli status --json
    """
    emit(control.request(resolve_data_dir(data_dir), "status"), as_json=as_json)


@main_group.command()
@click.argument("addr")
@data_dir_option
def connect(addr: str, data_dir: Path | None) -> None:
    """Connect the running node to a peer multiaddr ending in /p2p/<id>.

    Example: mesh-cli connect /ip4/127.0.0.1/tcp/9001/p2p/12D3KooW...
    """
    click.echo(control.request(resolve_data_dir(data_dir), "connect", addr=addr)["peer_id"])


@main_group.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@data_dir_option
def publish(files: tuple[str, ...], data_dir: Path | None) -> None:
    """Gossip signed objects (DAG-CBOR files), each on the topic of its type.

    Example: mesh-cli publish task.cbor
    """
    objects = [Path(f).read_bytes().hex() for f in files]
    result = control.request(resolve_data_dir(data_dir), "publish", objects=objects)
    emit(result, as_json=True)


@main_group.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@data_dir_option
def provide(file: Path, data_dir: Path | None) -> None:
    """Store FILE in the node's blob store and announce it in the DHT; print its CID.

    Example: mesh-cli provide module.wasm
    """
    result = control.request(resolve_data_dir(data_dir), "provide", path=str(file.resolve()))
    click.echo(result["cid"])


@main_group.command()
@click.argument("cid")
@click.option("--peer", "peers", multiple=True, help="Ask this PeerID (repeatable).")
@click.option("--json", "as_json", is_flag=True)
@data_dir_option
def fetch(cid: str, peers: tuple[str, ...], as_json: bool, data_dir: Path | None) -> None:
    """Fetch a blob by CID from the mesh into the node's store.

    Example: mesh-cli fetch bafkrei...
    """
    result = control.request(resolve_data_dir(data_dir), "fetch", cid=cid, peers=list(peers))
    emit(result, as_json=as_json)


@main_group.command()
@click.option("--json", "as_json", is_flag=True)
@data_dir_option
def events(as_json: bool, data_dir: Path | None) -> None:
    """List the events the node accepted (gossip and sync), oldest first.

    Example: mesh-cli events --json
    """
    rows = control.request(resolve_data_dir(data_dir), "events")
    if as_json:
        emit(rows, as_json=True)
    else:
        print_table(rows, ["topic", "type", "cid"])


@main_group.command("publish-task")
@click.option("--wasm-cid", required=True, help="A module in the node's store (mesh-cli provide).")
@click.option("--input-cid", required=True, help="An input in the node's store.")
@click.option("--fee", type=int, required=True)
@click.option("--verifiers", type=int, default=3, show_default=True)
@data_dir_option
def publish_task(
    wasm_cid: str, input_cid: str, fee: int, verifiers: int, data_dir: Path | None
) -> None:
    """Publish a TaskIntent through the running authority node; print its CID.

    \b
    Example:
      mesh-cli provide hello.wasm; mesh-cli provide input.txt
      mesh-cli publish-task --wasm-cid bafkrei... --input-cid bafkrei... --fee 100
    """
    args = {"wasm_cid": wasm_cid, "input_cid": input_cid, "fee": fee, "verifiers": verifiers}
    emit(control.request(resolve_data_dir(data_dir), "publish-task", **args), as_json=True)


@main_group.command("offer-execution")
@click.option("--task-cid", required=True)
@click.option("--cost", type=int, required=True)
@data_dir_option
def offer_execution(task_cid: str, cost: int, data_dir: Path | None) -> None:
    """Offer to execute a task at a chosen cost (not wired yet: workers offer on their own).

    Example: mesh-cli offer-execution --task-cid bafyrei... --cost 80
    """
    args = {"task_cid": task_cid, "cost": cost}
    _needs_runtime(control.request, resolve_data_dir(data_dir), "offer-execution", args)


@main_group.command()
@data_dir_option
def stop(data_dir: Path | None) -> None:
    """Stop the node running on the data dir."""
    control.request(resolve_data_dir(data_dir), "stop")


def _needs_runtime(send: Any, data_dir: Path, cmd: str, args: dict[str, Any]) -> None:
    try:
        emit(send(data_dir, cmd, **args), as_json=True)
    except NotImplementedError as exc:
        click.echo(f"error: NotImplementedError: {exc}", err=True)
        sys.exit(2)


def _configure_logging(verbose: int) -> None:
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # py-libp2p detaches its loggers unless LIBP2P_DEBUG is set, so its warnings (dropped
    # messages, full queues) would be lost or printed raw: route them through ours.
    lib = logging.getLogger("libp2p")
    lib.propagate = True
    lib.setLevel((logging.ERROR, logging.WARNING, logging.DEBUG)[min(verbose, 2)])
    # Some py-libp2p modules pin their own level (auto_connector logs INFO every 10 s):
    # let every libp2p logger follow the one above.
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if name.startswith("libp2p.") and isinstance(logger, logging.Logger):
            logger.setLevel(logging.NOTSET)


def main(argv: list[str] | None = None) -> None:
    run_cli(main_group, argv)


if __name__ == "__main__":
    main()
