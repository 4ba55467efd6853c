"""Sealed messages: only the recipient opens them; tampering and mix-ups are typed errors."""

from __future__ import annotations

import msgspec
import pytest

from meshbench.core.encoding import object_cid
from meshbench.core.errors import DecryptionError, InvalidSignature, MeshError
from meshbench.core.events import WorkRequest
from meshbench.core.identity import Identity
from meshbench.core.model import decode_object
from meshbench.store.sealing import SealedMessage, open_sealed, seal_objects

TASK, OTHER = object_cid(b"\xa0"), object_cid(b"\xa1")


def _request(authority: Identity, target: str, task=TASK) -> WorkRequest:
    return WorkRequest(
        authority=authority.did, task_cid=task, target=target, action="reveal", timestamp=1
    ).sign(authority)


def test_only_the_recipient_opens_what_was_sealed_to_it() -> None:
    sender, reader, outsider = Identity.generate(), Identity.generate(), Identity.generate()
    req = _request(sender, reader.did)
    msg = seal_objects(sender, reader.did, TASK, [req], now_ms=5)
    assert decode_object(msg.encode()) == msg  # a signed object like any other
    assert req.encode() not in msg.encode()
    assert open_sealed(msg, reader) == [req]
    with pytest.raises(DecryptionError):
        open_sealed(msg, outsider)


def test_tampered_or_mislabelled_sealed_messages_are_refused() -> None:
    sender, reader = Identity.generate(), Identity.generate()
    msg = seal_objects(sender, reader.did, TASK, [_request(sender, reader.did)], now_ms=5)
    flipped = bytes([msg.sealed[0] ^ 1]) + msg.sealed[1:]
    forged = msgspec.structs.replace(msg, sealed=flipped)
    with pytest.raises(InvalidSignature):
        decode_object(forged.encode())
    resigned = SealedMessage(**{**msgspec.structs.asdict(forged), "signature": b""}).sign(sender)
    with pytest.raises(DecryptionError):
        open_sealed(resigned, reader)
    about_other = seal_objects(sender, reader.did, OTHER, [_request(sender, reader.did)], 5)
    with pytest.raises(MeshError, match="another task"):
        open_sealed(about_other, reader)
