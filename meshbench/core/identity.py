"""Ed25519 identities as ``did:key`` and the one signer/verifier of meshbench.

A ``did:key`` is ``did:key:z`` + base58btc(0xed 0x01 + the 32-byte public key). The secret
key never leaves :class:`Identity`: it is not in its ``repr``, not in its JSON, not logged.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Callable
from typing import Final

import nacl.exceptions
import nacl.public
import nacl.signing
from multiformats import multibase

from meshbench.core.errors import InvalidDID, InvalidSignature

__all__ = ["DID_KEY_PREFIX", "Identity", "did_from_public_key", "public_key_from_did", "verify"]

DID_KEY_PREFIX: Final = "did:key:"
_ED25519_MULTICODEC: Final = b"\xed\x01"
SIGNATURE_BYTES: Final = 64


def _libsodium_holding_the_gil() -> tuple[Callable[..., int], Callable[..., int]] | None:
    """libsodium's ``crypto_sign_detached`` and ``crypto_sign_verify_detached``, called
    without letting go of the GIL: the very library PyNaCl loaded (its ``_sodium`` module
    links it in and exports it), through :class:`ctypes.PyDLL`. PyNaCl's calls (cffi) let
    go of the GIL for each signature; beside one busy Python thread, getting it back cost
    the caller 3-5 ms for a 30 us signature (the interpreter's switch interval), and the
    node's driver signs ~7 objects a task. None where the module does not export them (the
    PyNaCl calls are used then)."""
    try:
        import nacl._sodium as sodium  # its file is the library to load

        lib = ctypes.PyDLL(sodium.__file__)
        sign, check = lib.crypto_sign_detached, lib.crypto_sign_verify_detached
    except (ImportError, OSError, AttributeError):
        return None
    buf, size = ctypes.c_char_p, ctypes.c_ulonglong
    sign.argtypes = [buf, ctypes.c_void_p, buf, size, buf]
    check.argtypes = [buf, buf, size, buf]
    sign.restype = check.restype = ctypes.c_int
    return sign, check


_SODIUM: Final = _libsodium_holding_the_gil()


def did_from_public_key(public_key: bytes) -> str:
    """The ``did:key`` naming an Ed25519 public key."""
    if len(public_key) != 32:
        raise InvalidDID(f"an Ed25519 public key is 32 bytes, not {len(public_key)}")
    return DID_KEY_PREFIX + multibase.encode(_ED25519_MULTICODEC + public_key, "base58btc")


@functools.lru_cache(maxsize=4096)
def _verify_key(did: str) -> nacl.signing.VerifyKey:
    if not isinstance(did, str) or not did.startswith(DID_KEY_PREFIX + "z"):
        raise InvalidDID(f"{did!r} is not a did:key in base58btc (expected 'did:key:z6Mk...')")
    try:
        raw = multibase.decode(did[len(DID_KEY_PREFIX) :])
    except Exception as exc:
        raise InvalidDID(f"{did!r} is not valid base58btc: {exc}") from exc
    if raw[:2] != _ED25519_MULTICODEC:
        raise InvalidDID(f"{did!r} is not an Ed25519 key (multicodec prefix {raw[:2].hex()})")
    if len(raw) != 34:
        raise InvalidDID(f"{did!r} holds a key of {len(raw) - 2} bytes; Ed25519 keys are 32")
    return nacl.signing.VerifyKey(raw[2:])


def public_key_from_did(did: str) -> bytes:
    """The 32-byte Ed25519 public key named by ``did`` (raises :class:`InvalidDID`)."""
    return bytes(_verify_key(did))


def verify(did: str, message: bytes, signature: bytes) -> None:
    """Raise :class:`InvalidSignature` unless ``signature`` is ``did``'s over ``message``."""
    key = _verify_key(did)
    if not isinstance(signature, bytes | bytearray) or len(signature) != SIGNATURE_BYTES:
        size = len(signature) if isinstance(signature, bytes | bytearray) else "no"
        raise InvalidSignature(f"an Ed25519 signature is {SIGNATURE_BYTES} bytes, got {size}")
    if _SODIUM is not None:
        if _SODIUM[1](bytes(signature), bytes(message), len(message), bytes(key)) != 0:
            raise InvalidSignature(f"signature is not {did}'s over this content")
        return
    try:
        key.verify(message, bytes(signature))
    except nacl.exceptions.BadSignatureError as exc:
        raise InvalidSignature(f"signature is not {did}'s over this content") from exc


class Identity:
    """An Ed25519 signing identity. Create with :meth:`generate` or :meth:`from_seed`."""

    __slots__ = ("_did", "_key", "_secret")

    def __init__(self, signing_key: nacl.signing.SigningKey) -> None:
        self._key = signing_key
        self._did = did_from_public_key(bytes(signing_key.verify_key))
        # libsodium's form of the secret key: the seed, then the public key
        self._secret = bytes(signing_key) + bytes(signing_key.verify_key)

    @classmethod
    def generate(cls) -> Identity:
        return cls(nacl.signing.SigningKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> Identity:
        if len(seed) != 32:
            raise InvalidDID(f"an Ed25519 seed is 32 bytes, not {len(seed)}")
        return cls(nacl.signing.SigningKey(bytes(seed)))

    @property
    def did(self) -> str:
        return self._did

    @property
    def public_key(self) -> bytes:
        return bytes(self._key.verify_key)

    def seed(self) -> bytes:
        """The 32-byte secret seed, for the keystore only. Never print or log it."""
        return bytes(self._key)

    def sign(self, message: bytes) -> bytes:
        if _SODIUM is None:
            return self._key.sign(message).signature
        out = ctypes.create_string_buffer(SIGNATURE_BYTES)
        if _SODIUM[0](out, None, bytes(message), len(message), self._secret) != 0:
            raise InvalidSignature("libsodium could not sign")  # it never fails for Ed25519
        return out.raw

    @property
    def curve25519_private_key(self) -> nacl.public.PrivateKey:  # for sealed blob keys
        return self._key.to_curve25519_private_key()

    def __repr__(self) -> str:
        return f"Identity({self._did})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Identity) and other._did == self._did

    def __hash__(self) -> int:
        return hash(self._did)
