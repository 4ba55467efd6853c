"""Carry out ``SealKey``: give the chosen worker and verifiers the key of a private input.

A publisher stores its input with :meth:`BlobStore.put_encrypted` sealed to itself only,
and publishes a task whose ``input_cid`` is the ciphertext's CID (plus a ``PrivateInput``
stimulus to the authority). When the authority chooses the worker and verifiers it emits
``SealKey(task_cid, input_cid, recipients)``; the publisher's node answers with
:func:`seal_to`, which opens its own sealed copy of the content key and seals it to exactly
those recipients. The ciphertext (and so its CID) never changes; nobody else can open it.
"""

from __future__ import annotations

from collections.abc import Iterable

import nacl.exceptions
import nacl.public

from meshbench.core.errors import DecryptionError
from meshbench.core.identity import Identity
from meshbench.store.blobs import EncryptedBlob, SealedKey, x25519_key_of

__all__ = ["seal_to"]


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
