"""Fuzz targets: every decoder and wire parser that bytes from outside reach.

Each target takes one input (``bytes``) and feeds it to the real code the way the network,
a file or the control socket would. The contract under test: bad input raises a subclass
of :class:`~meshbench.core.errors.MeshError` (a target lets those through; the runner counts
them as handled) and anything else that escapes is a bug. Where a decoder accepts an input,
the target also checks what acceptance promises (a canonical codec re-encodes to the same
bytes, a CID or did:key spells back to its input), raising :class:`FuzzFinding` if not.

The targets are plain functions, deterministic, with no state kept between inputs beyond
caches that the real code keeps too, so the corpus replay in ``tests/fuzz`` is exact.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import Any, Final

import trio

from meshbench.core import dagcbor, encoding
from meshbench.core.cid import CID
from meshbench.core.errors import EncodingError, MeshError
from meshbench.core.identity import did_from_public_key, public_key_from_did, verify
from meshbench.core.model import Signed, decode_object
from meshbench.net import blocks, control, sync
from meshbench.net.guard import GossipGuard, GuardConfig, Verdict
from meshbench.net.topics import Topic
from meshbench.net.wire import StreamReader
from meshbench.store.blobs import BlobStore

__all__ = ["TARGETS", "FuzzFinding", "seeds"]

Target = Callable[[bytes], None]


class FuzzFinding(AssertionError):
    """A target's own check failed: the code accepted an input and broke its promise."""


# --- codecs and identifiers --------------------------------------------------------------
def fuzz_dagcbor(data: bytes) -> None:
    """Strict DAG-CBOR: the native fast path and the reference codec make the same of every
    input, and an accepted input re-encodes to exactly the same bytes."""
    try:
        reference: Any = dagcbor.reference_loads(data)
    except EncodingError as exc:
        reference = exc
    try:
        value = dagcbor.loads(data)
    except EncodingError as exc:
        if type(exc) is not type(reference) or str(exc) != str(reference):
            said = f"the fast path says {exc!r}, not {reference!r}"
            raise FuzzFinding(f"{data.hex()}: {said}") from None
        raise
    if isinstance(reference, EncodingError) or value != reference:
        raise FuzzFinding(f"{data.hex()}: the fast path decodes {value!r}, not {reference!r}")
    again = dagcbor.dumps(value)
    if again != data or dagcbor.reference_dumps(value) != data:
        raise FuzzFinding(f"decoded {data.hex()} re-encodes as {again.hex()}")


def fuzz_cid(data: bytes) -> None:
    """A CID in binary form, and (when the bytes are ASCII) in text form."""
    try:
        cid = CID.decode(data)
    except Exception as exc:
        _typed(exc)
    else:
        if bytes(cid) != data or CID.decode(str(cid)) != cid:
            raise FuzzFinding(f"CID {data.hex()} does not round-trip")
    if data.isascii():
        text = data.decode("ascii")
        cid = CID.decode(text)
        if str(cid) != text:
            raise FuzzFinding(f"CID text {text!r} accepted but spelled {cid}")
        encoding.parse_cid(text, codec=encoding.RAW)


def fuzz_did(data: bytes) -> None:
    """A did:key (text), then a signature check with it: bytes after a NUL are the signature."""
    text_part, _, signature = data.partition(b"\x00")
    did = text_part.decode("utf-8", errors="replace")
    key = public_key_from_did(did)
    if did_from_public_key(key) != did:
        raise FuzzFinding(f"did {did!r} accepted but names the key as {did_from_public_key(key)}")
    verify(did, b"meshbench fuzz", signature)


def fuzz_envelope(data: bytes) -> None:
    """A signed object from outside: CID, strict decoding, schema, canonical form, signature."""
    obj = decode_object(data)
    if obj.encode() != data:
        raise FuzzFinding(f"{type(obj).__name__} accepted from bytes it does not encode to")
    if isinstance(obj, Signed):
        obj.verify()


# --- gossip -------------------------------------------------------------------------------
_TOPICS: Final = tuple(Topic)


def fuzz_gossip(data: bytes) -> None:
    """A gossip message through the guard, as the libp2p validator hands it over.

    The first byte picks the topic and the forwarder; the guard never raises, whatever comes.
    """
    if not data:
        return
    guard = _guard()
    topic = _TOPICS[data[0] % len(_TOPICS)]
    peer = f"peer-{data[0] >> 4}"
    outcome = guard.check(topic, data[1:], peer, 0.0, origin=peer)
    if outcome.verdict is Verdict.ACCEPT and outcome.obj is None:
        raise FuzzFinding("accepted without an object")
    guard.banned.clear()  # a fresh standing for the next input; the dedupe cache stays


@cache
def _guard() -> GossipGuard:
    return GossipGuard(GuardConfig(burst=10**9, forward_burst=10**9))


# --- streams: blocks and sync ------------------------------------------------------------
class MemoryStream:
    """A libp2p stream stand-in: reads come from ``incoming`` in uneven pieces, writes pile up."""

    def __init__(self, incoming: bytes) -> None:
        self._incoming = memoryview(incoming)
        self._pos = 0
        self._sizes = _piece_sizes(incoming)
        self.written = bytearray()

    async def read(self, n: int | None = None) -> bytes:
        await trio.lowlevel.checkpoint()
        want = next(self._sizes)
        if n is not None:
            want = min(want, n)
        chunk = bytes(self._incoming[self._pos : self._pos + want])
        self._pos += len(chunk)
        return chunk

    async def write(self, data: bytes) -> None:
        await trio.lowlevel.checkpoint()
        self.written += data

    async def close(self) -> None:
        await trio.lowlevel.checkpoint()


def _piece_sizes(data: bytes) -> Iterator[int]:
    """Deterministic, uneven read sizes (1..4096), so framing is tested across splits."""
    i = 0
    while True:
        yield 1 + (data[i % len(data)] * 17 + i) % 4096 if data else 1
        i += 1


_BLOB: Final = b"meshbench fuzz blob\n" * 10
BLOB_CID: Final = encoding.blob_cid(_BLOB)


@cache
def _stores() -> tuple[BlobStore, BlobStore]:
    """A store holding the one known blob (served) and an empty one (fetched into)."""
    root = Path(tempfile.mkdtemp(prefix="meshbench-fuzz-"))
    served = BlobStore(root / "served")
    served.put(_BLOB)
    return served, BlobStore(root / "fetched", max_blob_bytes=1 << 16)


def fuzz_blocks_request(data: bytes) -> None:
    """The server side of ``/meshbench/blocks/1.0.0``: a request from a peer."""
    stream = MemoryStream(data)
    trio.run(blocks.serve_stream, stream, _stores()[0])
    if stream.written[:1] not in (b"\x00", b"\x01", b"\x02"):
        raise FuzzFinding(f"the server answered with status {bytes(stream.written[:1])!r}")


def fuzz_blocks_response(data: bytes) -> None:
    """The client side: a peer's answer to our request for ``BLOB_CID``.

    A fetch that succeeds must have stored exactly the blob asked for.
    """
    store = _stores()[1]
    try:
        size = trio.run(blocks.fetch_from_stream, MemoryStream(data), BLOB_CID, store, 1 << 16)
    finally:
        stored = [c for c in store.cids() if c != BLOB_CID]
        for cid in store.cids():
            store.delete(cid)
    if stored:
        raise FuzzFinding(f"a fetch stored {stored}, not the blob it asked for")
    if size != len(_BLOB):
        raise FuzzFinding(f"fetched {size} bytes of a {len(_BLOB)}-byte blob")


def fuzz_sync(data: bytes) -> None:
    """A late joiner reading a peer's event log: frames, then every object through the guard."""
    guard = GossipGuard()

    async def read_all() -> None:
        reader = StreamReader(MemoryStream(data))
        for _ in range(10_000):
            frame = await sync.read_frame(reader, guard.config.max_message_bytes)
            if frame is None:
                return
            guard.check(*frame, "sync-peer", 0.0, rate_limited=False)
        raise FuzzFinding("more than 10,000 frames from one input")

    trio.run(read_all)


# --- the control socket --------------------------------------------------------------------
def _control_handlers() -> dict[str, control.Handler]:
    """Handlers shaped like the node's: typed arguments pulled out of the request."""

    def publish(args: dict[str, Any]) -> dict[str, Any]:
        objects = [decode_object(bytes.fromhex(str(h))) for h in args.get("objects", [])]
        return {"published": [str(o.cid) for o in objects]}

    def fetch(args: dict[str, Any]) -> dict[str, Any]:
        return {"cid": str(encoding.parse_cid(args["cid"], codec=encoding.RAW))}

    return {"status": lambda args: {"ok": True}, "publish": publish, "fetch": fetch}


_HANDLERS: Final = _control_handlers()


def fuzz_control(data: bytes) -> None:
    """A request line on the control socket: the server always answers one JSON reply line,
    and the client reads that reply back as a result or a typed error."""
    reply = control.answer(data.split(b"\n", 1)[0], _HANDLERS)
    if not reply.endswith(b"\n") or b"\n" in reply[:-1]:
        raise FuzzFinding(f"reply is not one line: {reply[:80]!r}")
    parsed = json.loads(reply)
    if not isinstance(parsed, dict) or not isinstance(parsed.get("ok"), bool):
        raise FuzzFinding(f"reply has no ok flag: {reply[:80]!r}")
    with contextlib.suppress(NotImplementedError):
        control.parse_reply(reply, "fuzz")


def fuzz_control_reply(data: bytes) -> None:
    """What the client makes of whatever comes back on the socket."""
    with contextlib.suppress(NotImplementedError):
        control.parse_reply(data, "fuzz")


def _typed(exc: Exception) -> None:
    if not isinstance(exc, MeshError):
        raise exc


TARGETS: Final[dict[str, Target]] = {
    "dagcbor": fuzz_dagcbor,
    "cid": fuzz_cid,
    "did": fuzz_did,
    "envelope": fuzz_envelope,
    "gossip": fuzz_gossip,
    "blocks_request": fuzz_blocks_request,
    "blocks_response": fuzz_blocks_response,
    "sync": fuzz_sync,
    "control": fuzz_control,
    "control_reply": fuzz_control_reply,
}


# --- seeds ------------------------------------------------------------------------------------
def seeds() -> dict[str, list[bytes]]:
    """Valid inputs per target, the starting points the fuzzer mutates from."""
    from meshbench.core.varint import uvarint
    from meshbench.testing.factories import make_identity

    objects = _signed_objects()
    ident = make_identity(7)
    dag = [
        encoding.encode(v)
        for v in (0, -1, 2**64 - 1, 1.5, "x", b"\x00", [1, [2]], {"a": 1, "bb": None}, True)
    ]
    dag.append(encoding.encode({"cid": BLOB_CID, "f": [1.0, False, {"k": b"v"}]}))
    blob_cid = bytes(BLOB_CID)
    frames = b"".join(sync.encode_frame(topic, obj.encode()) for topic, obj in objects)
    return {
        "dagcbor": dag + [obj.encode() for _, obj in objects[:3]],
        "cid": [blob_cid, str(BLOB_CID).encode(), str(objects[0][1].cid).encode()],
        "did": [
            ident.did.encode() + b"\x00" + ident.sign(b"meshbench fuzz"),
            make_identity(8).did.encode(),
        ],
        "envelope": [obj.encode() for _, obj in objects],
        "gossip": [bytes([i]) + obj.encode() for i, (topic, obj) in enumerate(objects)],
        "blocks_request": [uvarint(len(blob_cid)) + blob_cid, b"\x04abcd"],
        "blocks_response": [
            b"\x00" + uvarint(len(_BLOB)) + _BLOB,
            b"\x01",
            b"\x02\x05hello",
        ],
        "sync": [frames, sync.encode_frame(objects[0][0], objects[0][1].encode())],
        "control": [
            b'{"cmd": "status", "args": {}}',
            json.dumps(
                {"cmd": "publish", "args": {"objects": [objects[0][1].encode().hex()]}}
            ).encode(),
            json.dumps({"cmd": "fetch", "args": {"cid": str(BLOB_CID)}}).encode(),
        ],
        "control_reply": [
            b'{"ok": true, "result": {"a": 1}}\n',
            b'{"ok": false, "error": "InvalidCID", "message": "bad"}\n',
            b'{"ok": false, "error": "NotImplementedError", "message": "later"}\n',
        ],
    }


def _signed_objects() -> list[tuple[Topic, Signed]]:
    """One of each signed object a task's life produces, from the protocol harness."""
    from meshbench.core.protocol import AppendToLedger, Broadcast
    from meshbench.net.topics import topic_for_type
    from meshbench.testing.protocol import ProtocolHarness, output_cid

    h = ProtocolHarness(peers=4)
    task, _ = h.publish_and_assign()
    good = output_cid("good")
    rec = h.state.tasks[task.cid]
    h.execute(task, dict.fromkeys(rec.verifiers, good), worker_output=good)
    found: dict[str, Signed] = {}
    for command in h.log:
        candidates: tuple[Any, ...] = ()
        if isinstance(command, Broadcast):
            candidates = (command.obj,)
        elif isinstance(command, AppendToLedger):
            candidates = command.events
        for obj in candidates:
            if isinstance(obj, Signed):
                found.setdefault(obj.__struct_config__.tag, obj)
    extra = [task, h.offer(task, h.peers[1]), h.stake(h.peers[2], "bond", 5)]
    for obj in extra:
        found.setdefault(obj.__struct_config__.tag, obj)
    out = []
    for tag, obj in sorted(found.items()):
        try:
            out.append((topic_for_type(tag), obj))
        except Exception:  # a type no gossip topic carries: still a signed envelope
            out.append((Topic.TASKS, obj))
    return out
