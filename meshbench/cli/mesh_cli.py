"""``mesh-cli``: run a libp2p mesh node and talk to it.

Example::

    mesh-cli start --listen /ip4/127.0.0.1/tcp/9000          # terminal 1 (foreground)
    mesh-cli --data-dir b start --listen /ip4/127.0.0.1/tcp/9001 \\
        --bootstrap /ip4/127.0.0.1/tcp/9000/p2p/12D3KooW...    # terminal 2
    mesh-cli list-peers --json                                 # terminal 3

Every command but ``start`` talks to the node started on the same data dir, through its
control socket (``<data dir>/mesh-node.sock``). Those client commands import only click and
the control socket's client (no libp2p, no runtime), so they answer in a fraction of a
second; ``start`` loads the rest.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import click

from meshbench.cli.common import (
    InputFile,
    data_dir_option,
    emit,
    group_data_dir_option,
    print_table,
    resolve_data_dir,
    run_cli,
)
from meshbench.core.errors import ProtocolError, SchemaError
from meshbench.net import control

#: Where ``mesh-cli start`` listens unless told otherwise: this machine only. Listening on
#: the LAN (``--listen /ip4/0.0.0.0/tcp/9000``) and mDNS (``--mdns``) are explicit choices.
DEFAULT_LISTEN = "/ip4/127.0.0.1/tcp/9000"

__all__ = ["main", "main_group"]


@click.group(name="mesh-cli", context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="meshbench", prog_name="mesh-cli")
@group_data_dir_option
def main_group() -> None:
    """Run a mesh node on libp2p and drive it.

    \b
    Example:
      mesh-cli start --listen /ip4/127.0.0.1/tcp/9000
      mesh-cli list-peers --json
    """


@main_group.command()
@click.option(
    "--listen",
    multiple=True,
    default=[DEFAULT_LISTEN],
    show_default=True,
    help="Multiaddr to listen on (repeatable); /ip4/0.0.0.0/tcp/PORT to accept LAN peers.",
)
@click.option("--bootstrap", multiple=True, help="Peer multiaddr ending in /p2p/<id> (repeatable).")
@click.option(
    "--mdns/--no-mdns",
    default=False,
    show_default=True,
    help="Discover and announce peers on the LAN with mDNS.",
)
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
    type=InputFile(),
    default=None,
    help="Authority: a MeshPolicy update (JSON fragment) to activate at start.",
)
@click.option("--federation", "federation_did", default=None, help="Worker: the federation did.")
@data_dir_option
def start(
    listen: tuple[str, ...],
    bootstrap: tuple[str, ...],
    mdns: bool,
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

    By default it listens on 127.0.0.1 only, with mDNS off: other machines reach it only
    with --listen /ip4/0.0.0.0/tcp/PORT (and --mdns to be found on the LAN).

    Prints one JSON line when ready: peer_id, did, addrs.

    \b
    Example:
      mesh-cli start --listen /ip4/127.0.0.1/tcp/9000
      mesh-cli start --role authority --listen /ip4/0.0.0.0/tcp/9000 --mdns
    """
    import signal
    import threading

    import libp2p.network.auto_connector  # noqa: F401 - its logger exists before we tune levels

    from meshbench.cli.peer_service import NodeService
    from meshbench.net.guard import GuardConfig

    _configure_logging(verbose)
    if role == "worker" and not (authority_did and federation_did):
        raise click.UsageError("--role worker needs --authority DID and --federation DID")
    service = NodeService(
        resolve_data_dir(data_dir),
        listen=listen,
        bootstrap=bootstrap,
        mdns=mdns,
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

    \b
    Example:
      mesh-cli list-peers --json
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
@click.option("--wait", is_flag=True, help="With a task CID: wait until it settles.")
@click.option("--follow", is_flag=True, help="With a task CID: a line per state change.")
@click.option("--timeout", type=float, default=600, show_default=True, help="For --wait/--follow.")
@click.option(
    "--field",
    metavar="PATH",
    default=None,
    help="Print one field only, e.g. did, addrs.0, protocol.federation (for scripts).",
)
@data_dir_option
def status(
    task_cid: str | None,
    as_json: bool,
    wait: bool,
    follow: bool,
    timeout: float,
    field: str | None,
    data_dir: Path | None,
) -> None:
    """Show the running node (identity, addresses, counters, role), or one task's state.

    With --wait, wait until the task settles and print its outcome; with --follow, also
    print a line each time its state changes (exit status 1 if it does not settle within
    --timeout seconds).

    \b
    Example:
      mesh-cli status
      mesh-cli status --field addrs.0          (this node's address, for --bootstrap)
      mesh-cli status bafyrei... --follow      (on an authority node)
    """
    root = resolve_data_dir(data_dir)
    if task_cid is None:
        if wait or follow:
            raise click.UsageError("--wait and --follow need a task CID")
        info = control.request(root, "status")
    else:
        info = control.request(root, "task-status", task_cid=task_cid)
        if wait or follow:
            info = _follow(root, info, timeout, print_changes=follow and not as_json)
    if field is not None:
        value = _field(info, field)
        emit(value, as_json=as_json or isinstance(value, dict | list))
    else:
        emit(info, as_json=as_json)
    if (wait or follow) and not info.get("done"):
        raise ProtocolError(f"task {task_cid} is still {info['state']} after {timeout:g} s")


def _follow(root: Path, info: dict, timeout: float, *, print_changes: bool) -> dict:
    """Ask the node again each time the task's state changes, until it is done."""
    deadline = time.monotonic() + timeout
    if print_changes:
        click.echo(f"{_clock()}  {info['state']}")
    while not info.get("done"):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        before = info["state"]
        info = control.request(
            root,
            "task-status",
            timeout=min(left, 30.0) + 30,  # the node answers within its own wait
            task_cid=info["task_cid"],
            since=before,
            wait_s=min(left, 30.0),
        )
        if print_changes and info["state"] != before:
            click.echo(f"{_clock()}  {info['state']}")
    return info


def _field(info: Any, path: str) -> Any:
    """``a.b.0``: key ``a``, then ``b``, then item 0 of a list."""
    value = info
    for part in path.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            known = ", ".join(value) if isinstance(value, dict) else f"0..{len(value) - 1}"
            raise SchemaError(f"no field {path!r} in the status (at {part!r}; there: {known})")
    return value


def _clock() -> str:
    return time.strftime("%H:%M:%S")


@main_group.command()
@click.argument("addr")
@data_dir_option
def connect(addr: str, data_dir: Path | None) -> None:
    """Connect the running node to a peer multiaddr ending in /p2p/<id>.

    \b
    Example:
      mesh-cli connect /ip4/127.0.0.1/tcp/9001/p2p/12D3KooW...
    """
    click.echo(control.request(resolve_data_dir(data_dir), "connect", addr=addr)["peer_id"])


@main_group.command()
@click.argument("files", nargs=-1, required=True, type=InputFile())
@data_dir_option
def publish(files: tuple[Path, ...], data_dir: Path | None) -> None:
    """Gossip signed objects (DAG-CBOR files), each on the topic of its type.

    Nothing is sent unless every file is a signed object.

    \b
    Example:
      mesh-cli publish task.cbor
    """
    objects = [f.read_bytes().hex() for f in files]
    names = [str(f) for f in files]
    result = control.request(resolve_data_dir(data_dir), "publish", objects=objects, names=names)
    emit(result, as_json=True)


@main_group.command()
@click.argument("file", type=InputFile())
@data_dir_option
def provide(file: Path, data_dir: Path | None) -> None:
    """Store FILE in the node's blob store and announce it in the DHT; print its CID.

    \b
    Example:
      mesh-cli provide datasets/wasm/hello.wasm
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

    \b
    Example:
      mesh-cli fetch bafkrei...
    """
    result = control.request(resolve_data_dir(data_dir), "fetch", cid=cid, peers=list(peers))
    emit(result, as_json=as_json)


@main_group.command()
@click.option("--json", "as_json", is_flag=True)
@data_dir_option
def events(as_json: bool, data_dir: Path | None) -> None:
    """List the events the node accepted (gossip and sync), oldest first.

    \b
    Example:
      mesh-cli events --json
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
@click.option("--verifiers", type=click.IntRange(1, 64), default=3, show_default=True)
@click.option("--cpu-cycles", type=click.IntRange(min=1), default=1_000_000, show_default=True)
@click.option(
    "--full-verification",
    is_flag=True,
    help="Ask for the full quorum even where the policy samples its audits.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the task CID, state and notes.")
@data_dir_option
def publish_task(
    wasm_cid: str,
    input_cid: str,
    fee: int,
    verifiers: int,
    cpu_cycles: int,
    full_verification: bool,
    as_json: bool,
    data_dir: Path | None,
) -> None:
    """Publish a task through the running authority node (blobs provided there first);
    print its CID. The policy may raise or cap the verifiers: a warning says so.

    \b
    Example:
      mesh-cli publish-task --wasm-cid bafkrei... --input-cid bafkrei... --fee 100
    """
    args = {
        "wasm_cid": wasm_cid,
        "input_cid": input_cid,
        "fee": fee,
        "verifiers": verifiers,
        "cpu_cycles": cpu_cycles,
        "full_verification": full_verification,
    }
    result = control.request(resolve_data_dir(data_dir), "publish-task", **args)
    if as_json:
        emit(result, as_json=True)
        return
    for note in result.get("warnings", ()):
        click.echo(f"warning: {note}", err=True)
    click.echo(result["task_cid"])


@main_group.command("offer-execution")
@click.option("--task-cid", required=True)
@click.option("--cost", type=int, required=True)
@data_dir_option
def offer_execution(task_cid: str, cost: int, data_dir: Path | None) -> None:
    """Offer to execute a task seen on the mesh, at COST (on a --role worker node).

    \b
    Example:
      mesh-cli offer-execution --task-cid bafyrei... --cost 80
    """
    args = {"task_cid": task_cid, "cost": cost}
    emit(control.request(resolve_data_dir(data_dir), "offer-execution", **args), as_json=True)


@main_group.command()
@data_dir_option
def stop(data_dir: Path | None) -> None:
    """Stop the node running on the data dir.

    \b
    Example:
      mesh-cli stop --data-dir node1
    """
    control.request(resolve_data_dir(data_dir), "stop")


def _configure_logging(verbose: int) -> None:
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # py-libp2p detaches its loggers unless LIBP2P_DEBUG is set, so its warnings (dropped
    # messages, full queues) would be lost or printed raw: route them through ours.
    lib = logging.getLogger("libp2p")
    lib.propagate = True
    lib_level = (logging.ERROR, logging.WARNING, logging.DEBUG)[min(verbose, 2)]
    lib.setLevel(lib_level)
    # Some py-libp2p modules pin their own logger at INFO (the auto-connector logs every
    # 10 s): below -vv they follow the level chosen here.
    for name, logger in list(logging.root.manager.loggerDict.items()):
        pinned = isinstance(logger, logging.Logger) and logging.NOTSET < logger.level < lib_level
        if name.startswith("libp2p.") and pinned:
            logger.setLevel(logging.NOTSET)


def main(argv: list[str] | None = None) -> None:
    run_cli(main_group, argv)


if __name__ == "__main__":
    main()
