"""The blob store: content addressing, verification on read, limits, atomicity, encryption."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest

import meshbench as mb
from meshbench.core import encoding
from meshbench.testing.factories import make_identity


def test_put_get_roundtrip(tmp_path: Path) -> None:
    store = mb.BlobStore(tmp_path)
    cid = store.put(b"hello world")
    assert str(cid) == "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e"
    assert store.get(cid) == b"hello world" and store.has(cid) and store.size(cid) == 11
    assert store.put(io.BytesIO(b"hello world")) == cid  # same content, same CID, one file
    assert store.put([b"hello", b" ", b"world"]) == cid
    assert list(store.cids()) == [cid]


def test_corruption_detected_on_read(tmp_path: Path) -> None:
    store = mb.BlobStore(tmp_path)
    cid = store.put(b"payload")
    store.path(cid).write_bytes(b"pAyload")
    with pytest.raises(mb.CIDMismatch):
        store.get(cid)
    with pytest.raises(mb.CIDMismatch):
        b"".join(store.iter_chunks(cid))
    with pytest.raises(mb.CIDMismatch):
        store.export(cid, tmp_path / "out.bin")
    assert not (tmp_path / "out.bin").exists()


def test_handoff_serves_the_first_read_only(tmp_path: Path) -> None:
    store = mb.BlobStore(tmp_path, handoff_bytes=64)
    cid = store.put(b"payload")
    big = store.put(b"x" * 17)  # over a quarter of the handoff: not kept
    store.path(cid).write_bytes(b"pAyload")
    store.path(big).write_bytes(b"y" * 17)
    assert store.get(cid) == b"payload"  # the bytes as written, hashed when put
    with pytest.raises(mb.CIDMismatch):  # every later read is from disk, checked
        store.get(cid)
    with pytest.raises(mb.CIDMismatch):
        store.get(big)
    kept = [store.put(bytes([i]) * 16) for i in range(5)]  # 80 bytes: the oldest leaves
    store.delete(kept[4])
    with pytest.raises(mb.BlobNotFound):
        store.get(kept[4])
    assert [store.get(c) for c in kept[:4]] == [bytes([i]) * 16 for i in range(4)]


def test_a_staged_blob_is_stored_only_once_kept(tmp_path: Path) -> None:
    store = mb.BlobStore(tmp_path)
    kept, dropped = store.stage(b"kept"), store.stage(b"dropped")
    assert not store.has(kept.cid) and not store.has(dropped.cid)
    assert kept.keep() == encoding.blob_cid(b"kept") and store.get(kept.cid) == b"kept"
    dropped.discard()
    assert not store.has(dropped.cid) and list(store.cids()) == [kept.cid]
    assert not list((tmp_path / "tmp").iterdir())  # nothing left behind
    with pytest.raises(mb.CIDMismatch):
        store.stage(b"other", expected=kept.cid)
    assert not list((tmp_path / "tmp").iterdir())


@pytest.mark.parametrize("hold_gil", [False, True])
def test_a_blob_is_kept_the_same_whether_its_rename_holds_the_gil(
    tmp_path: Path, hold_gil: bool
) -> None:
    """The driver's renames keep the GIL (fsops), every other thread's let go of it: the
    store ends the same, new shard folders and all."""
    store = mb.BlobStore(tmp_path)
    cids = [store.put(bytes([i]) * 64, hold_gil=hold_gil) for i in range(20)]
    staged = store.stage(b"staged")
    assert staged.keep(hold_gil=hold_gil) == encoding.blob_cid(b"staged")
    assert sorted(store.cids()) == sorted([*cids, staged.cid])
    assert [store.get(c) for c in cids] == [bytes([i]) * 64 for i in range(20)]
    assert store.put(bytes([3]) * 64, hold_gil=not hold_gil) == cids[3]  # held: replaced
    assert not list((tmp_path / "tmp").iterdir())


def test_missing_and_bad_cids(tmp_path: Path) -> None:
    store = mb.BlobStore(tmp_path)
    with pytest.raises(mb.BlobNotFound):
        store.get(encoding.blob_cid(b"absent"))
    with pytest.raises(mb.InvalidCID):
        store.get("bafkrei")
    with pytest.raises(mb.InvalidCID):
        store.get(mb.MeshPolicy().cid)  # a dag-cbor CID is not a blob


def test_size_limit_leaves_nothing(tmp_path: Path) -> None:
    store = mb.BlobStore(tmp_path, max_blob_bytes=1000)
    with pytest.raises(mb.BlobTooLarge):
        store.put(iter([b"x" * 600, b"x" * 600]))
    assert list(store.cids()) == [] and list((tmp_path / "tmp").iterdir()) == []


def test_streaming_large_blob_bounded_memory(tmp_path: Path) -> None:
    store = mb.BlobStore(tmp_path)
    chunk = os.urandom(1 << 20)
    tracemalloc.start()
    cid = store.put(chunk for _ in range(32))  # 32 MiB streamed
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert store.size(cid) == 32 << 20
    assert peak < 8 << 20, f"peak {peak} bytes while streaming 32 MiB"


def test_crash_mid_write_leaves_no_blob(tmp_path: Path) -> None:
    code = (
        "import os, meshbench as mb\n"
        f"s = mb.BlobStore({str(tmp_path)!r})\n"
        "def chunks():\n"
        "    yield b'x' * 1000\n"
        "    os._exit(9)\n"
        "s.put(chunks())\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], timeout=60)
    assert proc.returncode == 9
    store = mb.BlobStore(tmp_path)  # reopening cleans stale temp files
    assert list(store.cids()) == [] and list((tmp_path / "tmp").iterdir()) == []


def test_objects_beside_blobs(tmp_path: Path) -> None:
    store = mb.BlobStore(tmp_path)
    policy = mb.MeshPolicy()
    cid = store.put_object(policy.encode())
    assert cid == policy.cid
    assert mb.decode_object(store.get_object(cid), expected_cid=cid) == policy


def test_encrypted_blob(tmp_path: Path) -> None:
    store = mb.BlobStore(tmp_path)
    alice, bob, eve = make_identity(1), make_identity(2), make_identity(3)
    secret = os.urandom(200_000)
    env = store.put_encrypted(secret, [alice.did, bob.did])
    assert env.plaintext_bytes == len(secret)
    ciphertext = store.get(env.ciphertext_cid)  # the CID is over the ciphertext
    assert secret[:64] not in ciphertext
    assert store.get_decrypted(env, alice) == secret == store.get_decrypted(env, bob)
    with pytest.raises(mb.DecryptionError, match="not a recipient"):
        store.get_decrypted(env, eve)
    assert mb.EncryptedBlob.decode(env.encode()) == env


def test_encrypted_empty_blob(tmp_path: Path) -> None:
    store = mb.BlobStore(tmp_path)
    alice = make_identity(1)
    env = store.put_encrypted(b"", [alice.did])
    assert store.get_decrypted(env, alice) == b""


def test_encrypted_blob_tamper_and_truncation(tmp_path: Path) -> None:
    store = mb.BlobStore(tmp_path)
    alice = make_identity(1)
    env = store.put_encrypted(os.urandom(150_000), [alice.did])
    ct = store.get(env.ciphertext_cid)
    for bad in (ct[:-1000], ct[:-17] + bytes(17), ct[:24]):
        cid = store.put(bad)
        forged = mb.EncryptedBlob(
            ciphertext_cid=cid, plaintext_bytes=env.plaintext_bytes, recipients=env.recipients
        )
        with pytest.raises(mb.DecryptionError):
            store.get_decrypted(forged, alice)


def test_a_blob_is_kept_even_after_its_folder_was_removed_by_hand(tmp_path):
    import shutil

    store = mb.BlobStore(tmp_path / "store")
    cid = store.put(b"kept twice")
    shutil.rmtree(tmp_path / "store" / "blobs")  # the shard folder the store knows is gone
    assert not store.has(cid)
    assert store.put(b"kept twice") == cid
    assert store.get(cid) == b"kept twice"
