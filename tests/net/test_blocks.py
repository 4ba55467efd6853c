"""The blocks protocol's two ends, over an in-memory byte pipe and over real libp2p."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import trio

from meshbench.core import encoding
from meshbench.core.errors import BlobNotFound, BlobTooLarge, CIDMismatch, NetworkError
from meshbench.net.blocks import OK, fetch_from_stream, serve_stream
from meshbench.net.wire import uvarint
from meshbench.store.blobs import BlobStore
from meshbench.testing.streams import Pipe


def response(payload: bytes, size: int | None = None) -> bytes:
    return bytes([OK]) + uvarint(len(payload) if size is None else size) + payload


def stored(store: BlobStore) -> list:
    return list(store.cids())


def test_fetch_stores_exactly_the_blob_it_asked_for(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    data = os.urandom(1_000_003)
    cid = encoding.blob_cid(data)
    pipe = Pipe(response(data))
    assert trio.run(fetch_from_stream, pipe, cid, store, 10**9) == len(data)
    assert store.get(cid) == data
    assert pipe.written == uvarint(len(bytes(cid))) + bytes(cid)


def test_wrong_bytes_are_refused_and_nothing_is_stored(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    cid = encoding.blob_cid(b"the module you asked for")
    with pytest.raises(CIDMismatch):
        trio.run(fetch_from_stream, Pipe(response(b"something else entirely")), cid, store, 10**9)
    assert stored(store) == [] and list((tmp_path / "tmp").iterdir()) == []


def test_a_blob_over_the_limit_is_refused_on_its_announced_size(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    cid = encoding.blob_cid(b"x" * 100)
    pipe = Pipe(response(b"x" * 100))
    with pytest.raises(BlobTooLarge):
        trio.run(fetch_from_stream, pipe, cid, store, 99)
    assert stored(store) == [] and list((tmp_path / "tmp").iterdir()) == []


@pytest.mark.parametrize("extra", [-10, +10], ids=["truncated", "overlong"])
def test_a_stream_with_the_wrong_length_stores_nothing(tmp_path: Path, extra: int) -> None:
    store = BlobStore(tmp_path)
    data = os.urandom(50_000)
    body = data[:extra] if extra < 0 else data + os.urandom(extra)
    with pytest.raises(NetworkError):
        trio.run(
            fetch_from_stream, Pipe(response(body, size=len(data))), encoding.blob_cid(data),
            store, 10**9,
        )  # fmt: skip
    assert stored(store) == [] and list((tmp_path / "tmp").iterdir()) == []


def test_not_found_and_refusals_are_typed(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    cid = encoding.blob_cid(b"absent")
    with pytest.raises(BlobNotFound):
        trio.run(fetch_from_stream, Pipe(b"\x01"), cid, store, 10**9)
    with pytest.raises(NetworkError, match="refused"):
        trio.run(fetch_from_stream, Pipe(b"\x02\x03bad"), cid, store, 10**9)
    with pytest.raises(NetworkError):
        trio.run(fetch_from_stream, Pipe(b"\x07"), cid, store, 10**9)


def test_server_streams_a_stored_blob_and_answers_not_found(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    data = os.urandom(700_000)
    cid = store.put(data)
    request = uvarint(len(bytes(cid))) + bytes(cid)
    pipe = Pipe(request)
    assert trio.run(serve_stream, pipe, store) == len(data)
    assert bytes(pipe.written) == response(data)
    missing = encoding.blob_cid(b"missing")
    pipe = Pipe(uvarint(len(bytes(missing))) + bytes(missing))
    trio.run(serve_stream, pipe, store)
    assert bytes(pipe.written) == b"\x01"
    pipe = Pipe(b"\x05hello")  # not a CID
    trio.run(serve_stream, pipe, store)
    assert pipe.written[0] == 2


def test_round_trip_server_to_client(tmp_path: Path) -> None:
    server, client = BlobStore(tmp_path / "s"), BlobStore(tmp_path / "c")
    data = os.urandom(3 * 1024 * 1024 + 5)
    cid = server.put(data)
    out = Pipe(uvarint(len(bytes(cid))) + bytes(cid))
    trio.run(serve_stream, out, server)
    trio.run(fetch_from_stream, Pipe(bytes(out.written), chunk=65536), cid, client, 10**9)
    assert hashlib.sha256(client.get(cid)).digest() == hashlib.sha256(data).digest()
