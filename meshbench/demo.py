"""The embedded demo that ``make demo`` runs: it grows with each capability that lands."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import click

from meshbench.cli.common import resolve_data_dir
from meshbench.core.encoding import blob_cid
from meshbench.core.model import decode_object
from meshbench.core.types import CapabilityScope, TaskIntent
from meshbench.store.blobs import BlobStore
from meshbench.store.keystore import Keystore


def run_demo(data_dir: str | os.PathLike[str] | None = None) -> None:
    root = Path(data_dir) if data_dir else None
    if root is None and not os.environ.get("MESHBENCH_HOME"):
        root = Path(tempfile.mkdtemp(prefix="meshbench-demo-"))
    root = resolve_data_dir(root)
    say = click.echo
    say(f"meshbench demo, data dir {root}")
    keys = Keystore(root / "keys")
    publisher = keys.load_or_create("publisher")
    federation = keys.load_or_create("federation")
    say(f"  publisher  {publisher.did}")
    say(f"  federation {federation.did}")
    store = BlobStore(root / "blobs")
    module = b"\x00asm\x01\x00\x00\x00"  # the smallest valid module; real tasks come later
    wasm = store.put(module)
    data = store.put(b"hello world")
    say(f"  stored module {wasm} and input {data}")
    task = TaskIntent(
        publisher=publisher.did,
        federation=federation.did,
        wasm_cid=wasm,
        input_cid=data,
        fee=100,
        verifier_count=3,
        scope=CapabilityScope(),
        created_at=1_700_000_000_000,
        deadline=1_700_000_600_000,
    ).sign(publisher)
    cid = store.put_object(task.encode())
    say(f"  signed TaskIntent {cid} ({len(task.encode())} bytes of DAG-CBOR)")
    back = decode_object(store.get_object(cid), expected_cid=cid)
    assert back == task and blob_cid(b"hello world") == data
    say(f"  inspected: CID checked, signature valid, by {back.signer}")
    tampered = bytearray(task.encode())
    tampered[-3] ^= 0x01
    try:
        decode_object(bytes(tampered))
    except Exception as exc:
        say(f"  one flipped bit is refused: {type(exc).__name__}")
    say("demo done")
