"""Carry out ``SealKey``: give the chosen worker and verifiers the key of a private input.

A publisher stores its input with :meth:`BlobStore.put_encrypted` sealed to itself only,
and publishes a task whose ``input_cid`` is the ciphertext's CID (plus a ``PrivateInput``
stimulus to the authority). When the authority chooses the worker and verifiers it emits
``SealKey(task_cid, input_cid, recipients)``; the publisher's node answers with
:func:`seal_to`, which opens its own sealed copy of the content key and seals it to exactly
those recipients. The ciphertext (and so its CID) never changes; nobody else can open it.

:class:`SealedMessage` does the same for signed objects on public gossip: :func:`seal_objects`
seals them to one did:key, :func:`open_sealed` opens and checks them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, ClassVar, Final

import nacl.exceptions
import nacl.public
from msgspec import Meta

from meshbench.core.encoding import CID
from meshbench.core.errors import DecryptionError, SchemaError
from meshbench.core.identity import Identity
from meshbench.core.model import DID, Model, Signed, TimestampMs, decode_object
from meshbench.core.types import TaskIntent
from meshbench.store.blobs import EncryptedBlob, SealedKey, x25519_key_of

__all__ = ["SealedMessage", "SealedObjects", "open_sealed", "seal_objects", "seal_to"]


def seal_to(envelope: EncryptedBlob, holder: Identity, recipients: Iterable[str]) -> EncryptedBlob:
    """A copy of ``envelope`` whose key is also sealed to ``recipients`` (holder kept).

    Raises :class:`DecryptionError` when ``holder`` cannot open the envelope's key.
    """
    mine = [s for s in envelope.recipients if s.recipient == holder.did]
    if not mine:
        raise DecryptionError(f"{holder.did} holds no sealed key of this blob")
    try:
        key = nacl.public.SealedBox(holder.curve25519_private_key).decrypt(mine[0].sealed_key)
    except nacl.exceptions.CryptoError as exc:
        raise DecryptionError("the sealed key does not open with the holder's identity") from exc
    have = {s.recipient: s for s in envelope.recipients}
    for did in sorted(set(recipients) - set(have)):
        box = nacl.public.SealedBox(x25519_key_of(did))
        have[did] = SealedKey(recipient=did, sealed_key=box.encrypt(key))
    return EncryptedBlob(
        cipher=envelope.cipher,
        ciphertext_cid=envelope.ciphertext_cid,
        plaintext_bytes=envelope.plaintext_bytes,
        recipients=tuple(have[d] for d in sorted(have)),
    )


#: The largest sealed payload (the gossip guard refuses messages over 256 KiB anyway).
MAX_SEALED_BYTES: Final = 192 * 1024


class SealedObjects(Model, tag="SealedObjects"):
    """The plaintext inside a :class:`SealedMessage`: encoded signed objects."""

    objects: Annotated[
        tuple[Annotated[bytes, Meta(max_length=MAX_SEALED_BYTES)], ...],
        Meta(min_length=1, max_length=16),
    ]


class SealedMessage(Signed, tag="SealedMessage"):
    """Signed objects sealed to one did:key (X25519 sealed box): public gossip that only
    ``recipient`` can read.

    Over libp2p the outputs, receipts, verdicts (with their salts) and key envelopes of a
    task travel this way, so that nobody but the ledger authority (or the one party a request
    is addressed to) sees them before the task settles; only commitments travel in the clear.
    ``sender`` signs the envelope, and each object inside carries its own signature: the
    reader checks both, and whose role the object plays, before acting on it.
    """

    SIGNER: ClassVar[str] = "sender"
    sender: DID
    recipient: DID
    task_cid: CID
    sealed: Annotated[bytes, Meta(min_length=48, max_length=MAX_SEALED_BYTES + 1024)]
    created_at: TimestampMs


def seal_objects(
    sender: Identity, recipient: str, task_cid: CID, objects: Iterable[Model], now_ms: int
) -> SealedMessage:
    """Seal ``objects`` (signed, encoded as they are) to ``recipient``, signed by ``sender``."""
    plain = SealedObjects(objects=tuple(o.encode() for o in objects)).encode()
    if len(plain) > MAX_SEALED_BYTES:
        raise SchemaError(f"{len(plain)} bytes do not fit a sealed message ({MAX_SEALED_BYTES})")
    box = nacl.public.SealedBox(x25519_key_of(recipient))
    return SealedMessage(
        sender=sender.did,
        recipient=recipient,
        task_cid=task_cid,
        sealed=box.encrypt(plain),
        created_at=now_ms,
    ).sign(sender)


def open_sealed(message: SealedMessage, reader: Identity) -> list[Model]:
    """The objects sealed in ``message``, each checked by :func:`decode_object` (CID, schema,
    signature) and about ``message.task_cid``.

    Raises :class:`DecryptionError` when ``reader`` is not the recipient or the box does not
    open, and the decoder's typed errors for a bad object.
    """
    if message.recipient != reader.did:
        raise DecryptionError(f"this message is sealed to {message.recipient}, not {reader.did}")
    try:
        plain = nacl.public.SealedBox(reader.curve25519_private_key).decrypt(message.sealed)
    except nacl.exceptions.CryptoError as exc:
        raise DecryptionError("the sealed message does not open with the reader's key") from exc
    inner = SealedObjects.decode(plain)
    objects = [decode_object(data) for data in inner.objects]
    for obj in objects:
        # a task is about itself (sent along to a peer asked again after its restart)
        about = obj.cid if isinstance(obj, TaskIntent) else getattr(obj, "task_cid", None)
        if isinstance(obj, Signed) and about != message.task_cid:
            raise SchemaError(f"a sealed {type(obj).__name__} is about another task")
    return objects
