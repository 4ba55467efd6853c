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
@click.option("--bench-protocol", is_flag=True, hidden=True, help="Serve the bench stream.")
@click.option("-v", "--verbose", count=True, help="Log more (-vv: py-libp2p's debug log too).")
@click.option(
    "--role",
    type=click.Choice(["peer", "authority", "worker"]),
    default="peer",
    show_default=True,
    help="authority: ledger authority + publisher; worker: offers and executes tasks.",
)
@click.option("--authority", "authority_did", default=None, help="Worker: the authority's did.")
@click.option(
    "--policy-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Authority: a MeshPolicy update (JSON fragment) to activate at start.",
)
@click.option("--federation", "federation_did", default=None, help="Worker: the federation did.")
@data_dir_option
def start(
    listen: tuple[str, ...],
    bootstrap: tuple[str, ...],
    no_mdns: bool,
    key_name: str,
    muxer: str,
    gossip_rate: float,
    gossip_burst: int,
    bench_protocol: bool,
    verbose: int,
    role: str,
    authority_did: str | None,
    policy_file: Path | None,
    federation_did: str | None,
    data_dir: Path | None,
) -> None:
    """Run a mesh node in the foreground until Ctrl-C (or 'mesh-cli stop').

    With --role authority the node is its federation's ledger authority and publishes
    tasks (its key is the data dir's 'node' key); with --role worker it offers for and runs
    the tasks of the authority named by --authority.

    Prints one JSON line when ready: peer_id, did, addrs.

    \b
    Example:
      mesh-cli start --listen /ip4/0.0.0.0/tcp/9000 \\
        --bootstrap /ip4/10.0.0.2/tcp/9000/p2p/12D3KooW...
    """
    from meshbench.net.guard import GuardConfig
    from meshbench.net.service import NodeService

    _configure_logging(verbose)
    if role == "worker" and not (authority_did and federation_did):
        raise click.UsageError("--role worker needs --authority DID and --federation DID")
    service = NodeService(
        resolve_data_dir(data_dir),
        listen=listen,
        bootstrap=bootstrap,
        mdns=not no_mdns,
        key_name="node" if role == "authority" else key_name,
        muxer=muxer.upper(),
        guard=GuardConfig(rate_per_second=gossip_rate, burst=gossip_burst),
        bench_protocol=bench_protocol,
    ).start()
    try:
        from meshbench.runtime.roles import AuthorityRole, WorkerRole

        if role == "authority":
            from meshbench.core.policy import MeshPolicyFragment

            fragment = MeshPolicyFragment.from_file(policy_file) if policy_file else None
            service.role = AuthorityRole(service, policy=fragment)
        elif role == "worker":
            assert authority_did is not None and federation_did is not None
            service.role = WorkerRole(service, authority=authority_did, federation=federation_did)
    except BaseException:
        service.close()
        raise
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
@click.argument("task_cid", required=False)
@click.option("--json", "as_json", is_flag=True)
@data_dir_option
def status(task_cid: str | None, as_json: bool, data_dir: Path | None) -> None:
    """Show the running node (identity, addresses, counters, role), or one task's state.

    Example: mesh-cli status --json; mesh-cli status bafyrei... (on an authority node)
    """
    root = resolve_data_dir(data_dir)
    if task_cid is None:
        emit(control.request(root, "status"), as_json=as_json)
    else:
        emit(control.request(root, "task-status", task_cid=task_cid), as_json=as_json)


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
@click.option("--wasm-cid", required=True)
@click.option("--input-cid", required=True)
@click.option("--fee", type=int, required=True)
@click.option("--verifiers", type=click.IntRange(0, 64), default=3, show_default=True)
@click.option("--cpu-cycles", type=click.IntRange(min=1), default=1_000_000, show_default=True)
@data_dir_option
def publish_task(
    wasm_cid: str, input_cid: str, fee: int, verifiers: int, cpu_cycles: int, data_dir: Path | None
) -> None:
    """Publish a task through the running authority node (blobs provided there first).

    Example: mesh-cli publish-task --wasm-cid bafkrei... --input-cid bafkrei... --fee 100
    """
    args = {
        "wasm_cid": wasm_cid,
        "input_cid": input_cid,
        "fee": fee,
        "verifiers": verifiers,
        "cpu_cycles": cpu_cycles,
    }
    emit(control.request(resolve_data_dir(data_dir), "publish-task", **args), as_json=True)


@main_group.command("offer-execution")
@click.option("--task-cid", required=True)
@click.option("--cost", type=int, required=True)
@data_dir_option
def offer_execution(task_cid: str, cost: int, data_dir: Path | None) -> None:
    """Offer to execute a task seen on the mesh, at COST (on a --role worker node).

    Example: mesh-cli offer-execution --task-cid bafyrei... --cost 80
    """
    args = {"task_cid": task_cid, "cost": cost}
    emit(control.request(resolve_data_dir(data_dir), "offer-execution", **args), as_json=True)


@main_group.command()
@data_dir_option
def stop(data_dir: Path | None) -> None:
    """Stop the node running on the data dir."""
    control.request(resolve_data_dir(data_dir), "stop")


def _configure_logging(verbose: int) -> None:
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # py-libp2p detaches its loggers unless LIBP2P_DEBUG is set, so its warnings (dropped
    # messages, full queues) would be lost or printed raw: route them through ours.
    lib = logging.getLogger("libp2p")
    lib.propagate = True
    lib.setLevel((logging.ERROR, logging.WARNING, logging.DEBUG)[min(verbose, 2)])


def main(argv: list[str] | None = None) -> None:
    run_cli(main_group, argv)


if __name__ == "__main__":
    main()
