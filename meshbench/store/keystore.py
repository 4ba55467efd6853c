"""Ed25519 identities on disk, one file per key, readable by the owner only (0600).

A key file holds the did:key and the 32-byte seed (base64). Secrets are never printed or
logged: :class:`~meshbench.core.identity.Identity` shows only its DID.
"""

from __future__ import annotations

import base64
import json
import os
import re
from pathlib import Path
from typing import Final

from meshbench.core.errors import IdentityError, InvalidDID, KeyNotFound
from meshbench.core.identity import Identity

__all__ = ["Keystore"]

_NAME: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class Keystore:
    """The ``keys/`` folder of a data dir."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def _path(self, name: str) -> Path:
        if not _NAME.match(name):
            raise IdentityError(f"key name {name!r} must be 1-64 letters, digits, '_', '.' or '-'")
        return self.root / f"{name}.key"

    def create(self, name: str = "default", *, identity: Identity | None = None) -> Identity:
        """Make (or store the given) identity under ``name``; refuses to overwrite."""
        path = self._path(name)
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        ident = identity or Identity.generate()
        body = json.dumps(
            {"did": ident.did, "ed25519_seed": base64.b64encode(ident.seed()).decode()}
        ).encode()
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise IdentityError(f"a key named {name!r} already exists in {self.root}") from None
        try:
            os.write(fd, body)
            os.fsync(fd)
        finally:
            os.close(fd)
        return ident

    def load(self, name: str = "default") -> Identity:
        path = self._path(name)
        try:
            data = json.loads(path.read_bytes())
            ident = Identity.from_seed(base64.b64decode(data["ed25519_seed"], validate=True))
        except FileNotFoundError:
            raise KeyNotFound(
                f"no key named {name!r} in {self.root}; create one with 'meshbench key new'"
            ) from None
        except (ValueError, KeyError, TypeError, InvalidDID) as exc:
            raise IdentityError(f"key file {path.name} is damaged: {type(exc).__name__}") from None
        if ident.did != data.get("did"):
            raise IdentityError(f"key file {path.name}: its seed does not match its did")
        return ident

    def load_or_create(self, name: str = "default") -> Identity:
        try:
            return self.load(name)
        except KeyNotFound:
            return self.create(name)

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.stem for p in self.root.glob("*.key"))
