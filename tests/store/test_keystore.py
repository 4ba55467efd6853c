from __future__ import annotations

import stat
from pathlib import Path

import pytest

import meshbench as mb


def test_create_load_permissions(tmp_path: Path) -> None:
    ks = mb.Keystore(tmp_path / "keys")
    ident = ks.create("alice")
    path = tmp_path / "keys" / "alice.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert ks.load("alice") == ident and ks.names() == ["alice"]
    with pytest.raises(mb.IdentityError, match="already exists"):
        ks.create("alice")


def test_missing_damaged_and_bad_names(tmp_path: Path) -> None:
    ks = mb.Keystore(tmp_path)
    with pytest.raises(mb.KeyNotFound):
        ks.load("nobody")
    with pytest.raises(mb.IdentityError):
        ks.load("../etc/passwd")
    (tmp_path / "broken.key").write_text('{"did": "x", "ed25519_seed": "AAAA"}')
    with pytest.raises(mb.IdentityError, match="damaged"):
        ks.load("broken")


def test_secret_not_in_repr(tmp_path: Path) -> None:
    ident = mb.Keystore(tmp_path).create("k")
    assert ident.seed().hex() not in repr(ident)
