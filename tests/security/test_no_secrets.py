"""No secret leaves the keystore: not in any output, error, log line, or file of the data dir.

Keys are generated, then ``meshbench``, ``icn-wallet`` and ``mesh-cli`` are driven through
their commands (``--json`` where they have it, a node with ``-vv``, error paths too), with
every log record captured at DEBUG. All of it, and every file the data dir holds besides the
key files, is searched for each key's secrets: the 32-byte seed, the 64-byte signing key
(seed and public key), and the X25519 private key derived from it, spelled in hex (both
cases), base64 (standard and URL-safe, with and without padding) and base58btc; and a
private input's symmetric key and plaintext.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import nacl.public
import pytest
from multiformats import multibase

from meshbench.cli import icn_wallet, mesh_cli
from meshbench.cli import meshbench as meshbench_cli
from meshbench.core.errors import DecryptionError
from meshbench.core.identity import Identity
from meshbench.store.blobs import BlobStore
from meshbench.store.keystore import Keystore
from meshbench.store.sealing import seal_to
from meshbench.testing.netmesh import spawn_node


def _spellings(secret: bytes) -> set[str]:
    b64 = base64.b64encode(secret).decode()
    url = base64.urlsafe_b64encode(secret).decode()
    return {
        secret.hex(),
        secret.hex().upper(),
        b64,
        b64.rstrip("="),
        url,
        url.rstrip("="),
        multibase.encode(secret, "base58btc")[1:],
    }


def _secrets(ident: Identity) -> set[str]:
    seed = ident.seed()
    x25519 = bytes(ident.curve25519_private_key)
    out: set[str] = set()
    for secret in (seed, seed + ident.public_key, x25519):
        out |= _spellings(secret)
    return out


class _Cli:
    """Runs CLI entry points in this process and keeps everything they print."""

    def __init__(self, home: Path, capsys: pytest.CaptureFixture[str]) -> None:
        self.home, self.capsys = home, capsys
        self.transcript: list[str] = []

    def __call__(self, main: object, *argv: str, ok: bool = True) -> str:
        code = 0
        try:
            main([*argv, "--data-dir", str(self.home)])  # type: ignore[operator]
        except SystemExit as exc:
            code = int(exc.code or 0)
        out, err = self.capsys.readouterr()
        self.transcript += [out, err]
        assert (code == 0) == ok, (argv, code, out, err)
        return out


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    caplog.set_level(logging.DEBUG)
    yield caplog


def test_keystore_files_are_private(tmp_path: Path) -> None:
    store = Keystore(tmp_path / "keys")
    store.create("alice")
    assert stat.S_IMODE((tmp_path / "keys").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "keys" / "alice.key").stat().st_mode) == 0o600
    old = os.umask(0)  # a permissive umask does not loosen them
    try:
        store.create("bob")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "keys" / "bob.key").stat().st_mode) == 0o600


def test_no_secret_in_outputs_logs_or_data_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], debug_logs: pytest.LogCaptureFixture
) -> None:
    home = tmp_path / "home"
    cli = _Cli(home, capsys)
    mb, wallet, mesh = meshbench_cli.main, icn_wallet.main, mesh_cli.main
    cli(mb, "key", "new", "--name", "alice")
    cli(mb, "key", "show", "--name", "alice", "--json")
    cli(mb, "key", "show", "--name", "alice")
    cli(mb, "key", "new", "--name", "alice", ok=False)  # exists: an error that names the key
    cli(mb, "key", "show", "--name", "nobody", ok=False)
    blob = tmp_path / "input.bin"
    blob.write_bytes(b"some input")
    cid = cli(mb, "put", str(blob)).strip()
    cli(mb, "inspect", cid)
    cli(wallet, "federation", "create", "coop", "--as", "founder")
    for member in ("alice", "bob"):
        cli(wallet, "federation", "join", "--federation", "coop", "--as", member)
    cli(wallet, "faucet", "--to", "alice", "--amount", "500")
    cli(wallet, "stake", "--amount", "50", "--as", "alice")
    cli(wallet, "balance", "--as", "alice", "--json")
    cli(wallet, "stake", "--amount", "10**9", "--as", "alice", ok=False)  # bad amount
    cli(wallet, "unstake", "--amount", "999999", "--as", "alice", ok=False)  # too much
    cli(wallet, "federation", "members", "--json")
    cli(wallet, "mesh", "policy", "view", "--json")

    # a damaged key file: the error must say so without echoing what it holds
    keys = home / "keys"
    good = json.loads((keys / "alice.key").read_text())
    damaged = keys / "broken.key"
    damaged.write_text(json.dumps({"did": "did:key:z6Mkx", "ed25519_seed": good["ed25519_seed"]}))
    damaged.chmod(0o600)
    cli(mb, "key", "show", "--name", "broken", ok=False)
    damaged.unlink()

    # a private input: neither its plaintext nor its symmetric key may land anywhere
    store = BlobStore(home / "blobs")
    alice, bob = Keystore(keys).load("alice"), Keystore(keys).load("bob")
    plaintext = b"private-input-" + os.urandom(24).hex().encode()
    envelope = store.put_encrypted(plaintext, [alice.did])
    envelope = seal_to(envelope, alice, [bob.did])
    assert store.get_decrypted(envelope, bob) == plaintext
    with pytest.raises(DecryptionError) as refused:
        store.get_decrypted(envelope, Identity.generate())
    cli.transcript.append(str(refused.value))
    [mine] = [r for r in envelope.recipients if r.recipient == alice.did]
    sym_key = nacl.public.SealedBox(alice.curve25519_private_key).decrypt(mine.sealed_key)

    node_dir = home  # the node uses the same data dir and keystore ("node" key)
    node = spawn_node(node_dir, extra=["-vv", "--role", "authority"])
    try:
        cli(mesh, "status", "--json")
        cli(mesh, "list-peers", "--json")
    finally:
        node.stop()

    idents = {p.stem: Keystore(keys).load(p.stem) for p in keys.glob("*.key")}
    assert {"alice", "bob", "node", "publisher"} <= set(idents)
    for path in keys.glob("*.key"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    haystacks = {"cli output": "\n".join(cli.transcript), "log records": debug_logs.text}
    for path in home.rglob("*"):
        if path.is_file() and path.parent != keys:
            haystacks[str(path.relative_to(home))] = path.read_bytes().decode("latin-1")
    assert " DEBUG " in haystacks["node.log"]  # the node logged at debug level: searched too
    for secret in (*_spellings(sym_key), plaintext.decode()):
        for where, text in haystacks.items():
            assert secret not in text, f"a private input's key or plaintext is in {where}"
    for name, ident in idents.items():
        for secret in _secrets(ident):
            for where, text in haystacks.items():
                assert secret not in text, f"a secret of key {name!r} is in {where}"
