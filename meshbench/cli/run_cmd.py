"""``meshbench run``: execute a module locally, exactly as a worker or verifier would."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import click

from meshbench.cli.common import data_dir_option, resolve_data_dir
from meshbench.core import encoding
from meshbench.core.errors import MeshError, NoSuchFile, OutOfFuel
from meshbench.core.types import CapabilityScope

__all__ = ["DEFAULT_FUEL", "run"]

#: Fuel of a local run unless --fuel says otherwise: enough for the project's own examples
#: (sha256 of README.md needs ~10^8). A task published to a mesh keeps its scope's default
#: (1,000,000 cpu_cycles), since its fee and offers are priced by cpu_cycles.
DEFAULT_FUEL = 10**9


def _read_ref(ref: str, data_dir: Path | None, what: str) -> bytes:
    """A FILE path, or the CID of a blob in the store."""
    path = Path(ref)
    if path.is_file():
        return path.read_bytes()
    try:
        cid = encoding.parse_cid(ref, codec=encoding.RAW)
    except MeshError:
        raise NoSuchFile(f"{what} {ref}: no such file (and not a raw CID, bafkrei...)") from None
    from meshbench.store.blobs import BlobStore

    return BlobStore(resolve_data_dir(data_dir) / "blobs").get(cid)


def _parse_dir(spec: str) -> tuple[Path, str]:
    """``HOST_DIR[::GUEST_DIR]`` (the wasmtime CLI's convention)."""
    host, sep, guest = spec.partition("::")
    if not sep:
        guest = host
    if not guest.startswith("/"):
        guest = "/" + guest.lstrip("./")
    guest = guest.rstrip("/") or "/"
    if guest == "/":
        raise MeshError(f"--dir {spec}: map it to a guest directory, e.g. {host}::/data")
    return Path(host), guest


def _seed(text: str | None) -> bytes:
    if text is None:
        return bytes(32)
    try:
        raw = bytes.fromhex(text)
        if len(raw) == 32:
            return raw
    except ValueError:
        pass
    return hashlib.sha256(text.encode()).digest()


@click.command("run")
@click.option("--wasm", "wasm_ref", metavar="FILE|CID", help="The module.")
@click.option(
    "--python",
    "python_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Run a Python file's function (--entry) in the sandboxed CPython instead.",
)
@click.option("--entry", default="main", show_default=True, help="With --python: the function.")
@click.option("--input", "input_ref", metavar="FILE|CID", help="Task input (the guest's stdin).")
@click.option(
    "--arg", "args", multiple=True, metavar="A",
    help="argv[1:] (with --python: the function's arguments), repeatable.",
)  # fmt: skip
@click.option(
    "--dir",
    "dirs",
    multiple=True,
    metavar="HOST_DIR[::GUEST_DIR]",
    help="Map a host directory read-only into the guest, repeatable.",
)
@click.option(
    "--fuel",
    type=click.IntRange(1),
    default=DEFAULT_FUEL,
    show_default=True,
    help="Fuel (cpu_cycles): about one per wasm instruction.",
)
@click.option("--mem-mb", type=click.IntRange(1), help="Linear memory cap; default 128.")
@click.option("--io-mb", type=click.IntRange(0), help="I/O budget; default 50.")
@click.option("--seed", help="Determinism seed: 64 hex digits, or any text (hashed).")
@click.option("--output-file", metavar="NAME", help="The result is this guest file, not stdout.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--timeout", type=float, help="Wall-clock backstop in seconds.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (output to -o).")
@data_dir_option
def run(
    wasm_ref: str | None,
    python_file: Path | None,
    entry: str,
    input_ref: str | None,
    args: tuple[str, ...],
    dirs: tuple[str, ...],
    fuel: int,
    mem_mb: int | None,
    io_mb: int | None,
    seed: str | None,
    output_file: str | None,
    output: Path | None,
    timeout: float | None,
    as_json: bool,
    data_dir: Path | None,
) -> None:
    """Run a WebAssembly module deterministically and print its result.

    Without --json the result goes to stdout (or -o FILE), the guest's stderr to stderr, and
    the exit status is the guest's.

    With --python FILE the task is FILE's function --entry, called with the --input bytes
    (if given) and then each --arg (parsed as JSON when it is JSON, else a string); its
    return value is printed as JSON ("value" under --json). Limits default to the python
    executor's (1e10 fuel, 1024 MB, 64 MB of I/O).

    \b
    Example:
      meshbench run --wasm datasets/wasm/sha256.wasm --input README.md
      meshbench run --wasm datasets/wasm/escape.wasm --dir ./datasets::/data --fuel 10000000 --json
      meshbench run --python datasets/python/stats.py --entry summary --arg '[1, 2, 3]' --json
    """
    from meshbench.exec.wasm import WasmExecutor, tree_from_host_dir

    if (wasm_ref is None) == (python_file is None):
        raise click.UsageError("give exactly one of --wasm FILE|CID and --python FILE")
    if python_file is not None:
        data = _read_ref(input_ref, data_dir, "--input") if input_ref else None
        _run_python(
            python_file, entry, data, args, (mem_mb, fuel, io_mb), seed, output, timeout, as_json
        )
        return
    assert wasm_ref is not None
    defaults = CapabilityScope()
    scope = CapabilityScope(
        memory_mb=mem_mb or defaults.memory_mb,
        cpu_cycles=fuel,
        io_mb=defaults.io_mb if io_mb is None else io_mb,
    )
    wasm = _read_ref(wasm_ref, data_dir, "--wasm")
    data = _read_ref(input_ref, data_dir, "--input") if input_ref else b""
    trees = {}
    for spec in dirs:
        host, guest = _parse_dir(spec)
        trees[guest] = tree_from_host_dir(host)
    try:
        result = WasmExecutor().run(
            wasm,
            data,
            args=args,
            dirs=trees,
            scope=scope,
            seed=_seed(seed),
            output=output_file or "stdout",
            timeout_s=timeout,
        )
    except OutOfFuel as exc:
        # the engine speaks of the scope's cpu_cycles; here the user typed --fuel
        raise OutOfFuel(
            f"the guest used all {fuel:,} fuel of this run; raise --fuel (e.g. --fuel {fuel * 10})",
            fuel_used=exc.fuel_used,
        ) from None
    if output is not None:
        output.write_bytes(result.output)
    if as_json:
        click.echo(json.dumps(result.to_jsonable(), indent=2))
        return
    if output is None:
        sys.stdout.buffer.write(result.output)
        sys.stdout.buffer.flush()
    if output_file:
        sys.stderr.buffer.write(result.stdout)
    sys.stderr.buffer.write(result.stderr)
    sys.stderr.buffer.flush()
    if result.exit_code != 0:
        sys.exit(min(result.exit_code, 255))


def _arg_value(text: str) -> object:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _run_python(
    path: Path,
    entry: str,
    data: bytes | None,
    args: tuple[str, ...],
    limits: tuple[int | None, int | None, int | None],
    seed: str | None,
    output: Path | None,
    timeout: float | None,
    as_json: bool,
) -> None:
    from meshbench.exec.python_task import (
        PYTHON_SCOPE,
        PythonCall,
        PythonExecutor,
        PythonTaskFailed,
        jsonable,
    )

    mem_mb, fuel, io_mb = limits
    scope = CapabilityScope(
        memory_mb=mem_mb or PYTHON_SCOPE.memory_mb,
        cpu_cycles=fuel or PYTHON_SCOPE.cpu_cycles,
        io_mb=PYTHON_SCOPE.io_mb if io_mb is None else io_mb,
    )
    values = ([data] if data is not None else []) + [_arg_value(a) for a in args]
    call = PythonCall.from_file(path, *values, entry=entry, scope=scope)
    result = PythonExecutor().run_call(call, seed=_seed(seed), timeout_s=timeout)
    if output is not None:
        output.write_bytes(result.output)
    try:
        value, failed = jsonable(PythonCall.result(result)), None
    except PythonTaskFailed as exc:
        value, failed = None, exc
    if as_json:
        out = result.to_jsonable()
        out["value"] = value
        if failed is not None:
            out["error"] = {"type": failed.error_type, "traceback": failed.traceback}
        click.echo(json.dumps(out, indent=2))
        return
    sys.stderr.buffer.write(result.stderr)
    sys.stderr.buffer.flush()
    if result.stdout:
        sys.stderr.buffer.write(result.stdout)
    if failed is None and output is None:
        click.echo(json.dumps(value, indent=2))
    if result.exit_code != 0:
        sys.exit(min(result.exit_code, 255))
