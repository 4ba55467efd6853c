"""did:key identities and Ed25519 signatures against published vectors."""

from __future__ import annotations

import nacl.signing
import pytest
from multiformats import multibase

from meshbench.core.errors import InvalidDID, InvalidSignature
from meshbench.core.identity import Identity, did_from_public_key, public_key_from_did, verify

# did:key vectors (w3c-ccg did:key and DIF examples): did <-> base58 Ed25519 public key,
# and the X25519 key-agreement key derived from it.
DID_VECTORS = [
    (
        "did:key:z6MkmjY8GnV5i9YTDtPETC2uUAW6ejw3nk5mXF5yci5ab7th",
        "8HH5gYEeNc3z7PYXmd54d4x6qAfCNrqQqEB3nS7Zfu7K",
        "79CXkde3j8TNuMXxPdV7nLUrT2g7JAEjH5TreyVY7GEZ",
    ),
    (
        "did:key:z6MkwJSaEMnE4u6LiqrZV1BJHSkc9x8S4mTm3ArNL1m19BZR",
        "HrBXe7XnjMbscM1roSDTSMCcLNraetDQM9wSVjnzDxn3",
        "Bc2RDrL8ppNGVpA9b3Hd8S9VeWbH34KxekvdxmcfxtNc",
    ),
]

# RFC 8032, section 7.1, test 1 (empty message).
RFC8032_SECRET = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"
RFC8032_PUBLIC = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
RFC8032_SIG = (
    "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555"
    "fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
)


@pytest.mark.parametrize(("did", "pub58", "x25519_58"), DID_VECTORS)
def test_did_key_vectors(did: str, pub58: str, x25519_58: str) -> None:
    pub = multibase.decode("z" + pub58)
    assert did_from_public_key(pub) == did
    assert public_key_from_did(did) == pub
    x = nacl.signing.VerifyKey(pub).to_curve25519_public_key()
    assert bytes(x) == multibase.decode("z" + x25519_58)


def test_rfc8032_vector() -> None:
    ident = Identity.from_seed(bytes.fromhex(RFC8032_SECRET))
    assert ident.public_key.hex() == RFC8032_PUBLIC
    assert ident.sign(b"").hex() == RFC8032_SIG
    verify(ident.did, b"", bytes.fromhex(RFC8032_SIG))


def test_sign_verify_and_tamper() -> None:
    a, b = Identity.generate(), Identity.generate()
    sig = a.sign(b"message")
    verify(a.did, b"message", sig)
    with pytest.raises(InvalidSignature):
        verify(a.did, b"messagf", sig)
    with pytest.raises(InvalidSignature):
        verify(b.did, b"message", sig)  # a signature by another key
    with pytest.raises(InvalidSignature):
        verify(a.did, b"message", sig[:63])


@pytest.mark.parametrize(
    "did",
    [
        "did:web:example.com",
        "did:key:",
        "did:key:6MkmjY8GnV5i9YTDtPETC2uUAW6ejw3nk5mXF5yci5ab7th",  # no multibase prefix
        "did:key:z0OIl",  # not base58
        "did:key:zQ3shokFTS3brHcDQrn82RUDfCZESWL1ZdCEJwekUDPQiYBme",  # secp256k1
        "did:key:z6MkmjY8GnV5i9YTDtPETC2uUAW6ejw3nk5mXF5yci5ab7",  # truncated key
    ],
)
def test_invalid_dids(did: str) -> None:
    with pytest.raises(InvalidDID):
        public_key_from_did(did)


def test_wrong_key_lengths() -> None:
    with pytest.raises(InvalidDID):
        did_from_public_key(b"\x01" * 31)
    with pytest.raises(InvalidDID):
        Identity.from_seed(b"\x01" * 33)


def test_repr_hides_secret() -> None:
    ident = Identity.from_seed(b"\x07" * 32)
    assert ident.seed().hex() not in repr(ident)
    assert repr(ident) == f"Identity({ident.did})"


def test_signatures_made_and_checked_without_letting_go_of_the_gil_are_pynacl_s() -> None:
    """The signer and verifier call libsodium holding the GIL (see identity._SODIUM): the
    same signatures as PyNaCl's (Ed25519 is deterministic), the same refusals."""
    import nacl.signing

    from meshbench.core import identity as identity_mod
    from meshbench.core.errors import InvalidSignature
    from meshbench.core.identity import Identity, verify

    assert identity_mod._SODIUM is not None  # the PyNaCl pinned exports libsodium's calls
    who = Identity.from_seed(bytes(range(32)))
    pynacl = nacl.signing.SigningKey(bytes(range(32)))
    for message in (b"", b"x", bytes(range(256)) * 40, bytearray(b"mutable"), memoryview(b"v")):
        signature = who.sign(message)
        assert signature == pynacl.sign(bytes(message)).signature
        verify(who.did, message, signature)
        verify(who.did, bytes(message), bytearray(signature))
        bad = bytes([signature[0] ^ 1]) + signature[1:]
        with pytest.raises(InvalidSignature, match=r"not .*'s over this content"):
            verify(who.did, message, bad)
        with pytest.raises(InvalidSignature):
            verify(who.did, bytes(message) + b"!", signature)
        other = Identity.from_seed(bytes(32))
        with pytest.raises(InvalidSignature):
            verify(other.did, message, signature)
