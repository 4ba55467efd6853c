"""``meshbench``: the workbench CLI (content, keys, inspection, demo, benchmarks).

Example::

    meshbench put datasets/wasm/hello.wasm   # store a blob, print its CID
    meshbench key new                  # make the default identity, print its did:key
    meshbench inspect receipt.cbor     # decode, check CID and signature, print JSON
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from meshbench.cli import cluster_cmd, run_cmd
from meshbench.cli.common import (
    InputFile,
    data_dir_option,
    emit,
    group_data_dir_option,
    resolve_data_dir,
    run_cli,
)
from meshbench.core import encoding
from meshbench.core.errors import EncodingError, InvalidCID, MeshError, NoSuchFile, SchemaError
from meshbench.core.model import Signed, decode_object
from meshbench.store.blobs import BlobStore
from meshbench.store.keystore import Keystore


@click.group(name="meshbench", context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="meshbench", prog_name="meshbench")
@group_data_dir_option
def main_group() -> None:
    """Workbench and runtime for verifiable mesh compute.

    \b
    Example:
      meshbench put datasets/wasm/hello.wasm
      meshbench run --wasm datasets/wasm/sha256.wasm --input README.md
    """


@main_group.command()
@click.argument("file", type=InputFile())
def cid(file: Path) -> None:
    """Print the raw CID of FILE (stores nothing).

    \b
    Example:
      meshbench cid datasets/wasm/hello.wasm
    """
    import hashlib

    h = hashlib.sha256()
    with file.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    click.echo(str(encoding.sha256_cid(h.digest(), encoding.RAW)))


@main_group.command()
@click.argument("file", type=InputFile())
@data_dir_option
def put(file: Path, data_dir: Path | None) -> None:
    """Store FILE in the blob store and print its CID.

    \b
    Example:
      meshbench put datasets/wasm/hello.wasm
    """
    store = BlobStore(resolve_data_dir(data_dir) / "blobs")
    click.echo(str(store.put_file(file)))


@main_group.command()
@click.argument("cid_text", metavar="CID")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None)
@data_dir_option
def get(cid_text: str, output: Path | None, data_dir: Path | None) -> None:
    """Write the blob CID to stdout or to -o FILE, after checking its hash.

    \b
    Example:
      meshbench get $(meshbench put datasets/wasm/hello.wasm) -o out.wasm
    """
    store = BlobStore(resolve_data_dir(data_dir) / "blobs")
    if output is None:
        sys.stdout.buffer.write(store.get(cid_text))
        sys.stdout.buffer.flush()
    else:
        store.export(cid_text, output)


@main_group.group()
def key() -> None:
    """Manage Ed25519 identities (did:key).

    \b
    Example:
      meshbench key new --name alice
    """


@key.command("new")
@click.option("--name", default="default", show_default=True)
@data_dir_option
def key_new(name: str, data_dir: Path | None) -> None:
    """Create an identity and print its did:key (the secret stays in the keystore, 0600).

    \b
    Example:
      meshbench key new --name alice
    """
    ident = Keystore(resolve_data_dir(data_dir) / "keys").create(name)
    click.echo(ident.did)


@key.command("show")
@click.option("--name", default="default", show_default=True)
@click.option("--json", "as_json", is_flag=True)
@data_dir_option
def key_show(name: str, as_json: bool, data_dir: Path | None) -> None:
    """Print the did:key of an identity (never its secret).

    \b
    Example:
      meshbench key show --name alice
    """
    store = Keystore(resolve_data_dir(data_dir) / "keys")
    ident = store.load(name)
    if as_json:
        emit({"name": name, "did": ident.did}, as_json=True)
    else:
        click.echo(ident.did)


@main_group.command()
@click.argument("target")
@data_dir_option
def inspect(target: str, data_dir: Path | None) -> None:
    """Decode an object (a file, or a CID in the store), check CID and signature, print JSON.

    \b
    Example:
      meshbench inspect task.cbor
    """
    path = Path(target)
    if path.is_file():
        data = path.read_bytes()
        try:
            obj = decode_object(data, max_bytes=max(len(data), encoding.MAX_OBJECT_BYTES))
        except (EncodingError, SchemaError):
            if path.suffix in {".cbor", ".dagcbor"}:
                raise
            emit(
                {"kind": "blob", "cid": str(encoding.blob_cid(data)), "bytes": len(data)},
                as_json=True,
            )
            return
    else:
        try:
            c = encoding.parse_cid(target)
        except InvalidCID:
            raise NoSuchFile(
                f"{target}: no such file, and not a CID (bafyrei... or bafkrei...)"
            ) from None
        store = BlobStore(resolve_data_dir(data_dir) / "blobs")
        if c.codec == encoding.RAW:
            size = len(store.get(c))
            emit({"kind": "blob", "cid": str(c), "bytes": size, "hash": "verified"}, as_json=True)
            return
        obj = decode_object(store.get_object(c), expected_cid=c)
    report = {
        "kind": "object",
        "type": type(obj).__name__,
        "cid": str(obj.cid),
        "signature": f"valid, by {obj.signer}" if isinstance(obj, Signed) else "n/a",
        "object": obj.to_jsonable(),
    }
    emit(report, as_json=True)


@main_group.command()
@click.option("--workers", type=click.IntRange(2, 64), default=4, show_default=True)
@click.option("--threads", is_flag=True, help="Dask workers as threads, not processes.")
@click.option(
    "--seed",
    default="meshbench-demo",
    show_default=True,
    help="Keys and story derive from it: the same seed prints the same run.",
)
@data_dir_option
def demo(workers: int, threads: bool, seed: str, data_dir: Path | None) -> None:
    """Run the embedded demo mesh end to end and print what happened.

    The data dir must be empty (a fresh temporary one by default).

    \b
    Example:
      meshbench demo --workers 4 --seed meshbench-demo
    """
    from meshbench.demo import run_demo

    run_demo(data_dir, workers=workers, processes=not threads, seed=seed)


@main_group.command()
@click.argument("name", default="all")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--quick", is_flag=True, help="Fewer repetitions (for smoke tests).")
@click.option(
    "--transport",
    type=click.Choice(["dask", "p2p"]),
    default="dask",
    show_default=True,
    help="reliability: SIGKILL Dask workers and the authority, or libp2p worker peers.",
)
def bench(name: str, as_json: bool, quick: bool, transport: str) -> None:
    """Run benchmarks (ratios measured side by side in one run).

    \b
    Example:
      meshbench bench encoding --json
      meshbench bench reliability --transport p2p --quick
    """
    from meshbench.bench import BENCHMARKS, ON_DEMAND, run_benchmark

    if transport == "p2p":
        if f"{name}-p2p" not in BENCHMARKS:
            raise click.UsageError(f"benchmark {name!r} has no p2p form (try reliability)")
        name = f"{name}-p2p"
    names = [n for n in BENCHMARKS if n not in ON_DEMAND] if name == "all" else [name]
    results = {n: run_benchmark(n, quick=quick) for n in names}
    out = results[names[0]] if len(names) == 1 else results
    if as_json:
        click.echo(json.dumps(out, indent=2))
    else:
        for n, r in results.items():
            click.echo(f"== {n}")
            emit(r, as_json=False)


from meshbench.cli.ledger_cmd import ledger  # noqa: E402
from meshbench.cli.sim_cmd import sim  # noqa: E402

main_group.add_command(ledger)
main_group.add_command(sim)
main_group.add_command(run_cmd.run)
main_group.add_command(cluster_cmd.cluster)


def main(argv: list[str] | None = None) -> None:
    run_cli(main_group, argv)


__all__ = ["MeshError", "main", "main_group"]
