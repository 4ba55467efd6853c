"""Factories for tests, notebooks and extensions: deterministic identities and objects."""

from __future__ import annotations

import hashlib

from meshbench.core.encoding import blob_cid
from meshbench.core.identity import Identity
from meshbench.core.types import CapabilityScope, TaskIntent

__all__ = ["make_identity", "make_task"]

T0 = 1_700_000_000_000  # a fixed epoch (ms) for reproducible objects


def make_identity(n: int) -> Identity:
    """The n-th deterministic test identity (same keys in every process)."""
    return Identity.from_seed(hashlib.sha256(f"meshbench-test-identity-{n}".encode()).digest())


def make_task(
    publisher: Identity,
    *,
    federation: Identity | None = None,
    wasm: bytes = b"\x00asm\x01\x00\x00\x00",
    data: bytes = b"hello world",
    fee: int = 100,
    verifiers: int = 3,
    scope: CapabilityScope | None = None,
    nonce: int = 0,
    created_at: int = T0,
    sign: bool = False,
) -> TaskIntent:
    task = TaskIntent(
        publisher=publisher.did,
        federation=(federation or make_identity(0)).did,
        wasm_cid=blob_cid(wasm),
        input_cid=blob_cid(data),
        fee=fee,
        verifier_count=verifiers,
        scope=scope or CapabilityScope(),
        created_at=created_at,
        deadline=created_at + 30 * 60 * 1000,
        nonce=nonce,
    )
    return task.sign(publisher) if sign else task
