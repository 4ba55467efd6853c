"""Content-addressed blob store on disk (modules, inputs, outputs), with optional encryption.

* ``put`` streams: bytes are hashed while they are written to a temporary file in the same
  folder, fsynced, then renamed into place, so a crash mid-write leaves no blob (only a temp
  file that the next start removes), and a 100 MB module is never held twice in memory.
* ``get`` re-hashes on every read and raises :class:`CIDMismatch` for a corrupted file.
* A size limit (``max_blob_bytes``) is enforced while streaming: :class:`BlobTooLarge`.
* Encryption (the spec's "data privacy"): XChaCha20-Poly1305 secretstream (libsodium, via
  PyNaCl) in 64 KiB chunks; the blob's CID is taken over the ciphertext; the symmetric key
  is sealed (X25519 sealed box) to each recipient's key, derived from their Ed25519 did:key.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import io
import os
import tempfile
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Annotated, BinaryIO, Final

import nacl.bindings as sodium
import nacl.exceptions
import nacl.public
import nacl.signing
from msgspec import Meta

from meshbench.core import encoding
from meshbench.core.encoding import CID
from meshbench.core.errors import BlobNotFound, BlobTooLarge, CIDMismatch, DecryptionError
from meshbench.core.identity import Identity, public_key_from_did
from meshbench.core.model import DID, Count, Model
from meshbench.store import fsops

__all__ = [
    "DEFAULT_MAX_BLOB_BYTES",
    "BlobStore",
    "EncryptedBlob",
    "SealedKey",
    "StagedBlob",
    "decrypt",
    "decrypt_stream",
    "x25519_key_of",
]

DEFAULT_MAX_BLOB_BYTES: Final = 1024 * 1024 * 1024  # 1 GiB
CHUNK: Final = 64 * 1024
_ABYTES: Final = sodium.crypto_secretstream_xchacha20poly1305_ABYTES
_HEADER: Final = sodium.crypto_secretstream_xchacha20poly1305_HEADERBYTES
_TAG_FINAL: Final = sodium.crypto_secretstream_xchacha20poly1305_TAG_FINAL
_TAG_MESSAGE: Final = sodium.crypto_secretstream_xchacha20poly1305_TAG_MESSAGE
CIPHER: Final = "xchacha20poly1305-secretstream/64KiB"

Source = bytes | bytearray | memoryview | BinaryIO | Iterable[bytes]


class SealedKey(Model, tag="SealedKey"):
    recipient: DID
    sealed_key: Annotated[bytes, Meta(min_length=80, max_length=80)]


class EncryptedBlob(Model, tag="EncryptedBlob"):
    """How to open an encrypted blob: its ciphertext CID and its key, sealed per recipient."""

    cipher: Annotated[str, Meta(max_length=64)] = CIPHER
    ciphertext_cid: CID
    plaintext_bytes: Count
    recipients: Annotated[tuple[SealedKey, ...], Meta(min_length=1, max_length=1024)]


class BlobStore:
    """Blobs under ``root``, addressed by ``raw`` CIDv1 (sha2-256)."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        max_blob_bytes: int = DEFAULT_MAX_BLOB_BYTES,
        handoff_bytes: int = 0,
    ) -> None:
        """``handoff_bytes``: up to that many bytes of blobs put from memory (:meth:`put`,
        each at most a quarter of it) are kept until their first :meth:`get`, which takes
        them without reading the file back and hashing it again (they were hashed as they
        were written); every later read is from disk and checked. 0 (the default): none."""
        self.root = Path(root)
        self.max_blob_bytes = max_blob_bytes
        self.handoff_bytes = handoff_bytes
        self._handoff: collections.OrderedDict[CID, bytes] = collections.OrderedDict()
        self._handoff_size = 0
        self._handoff_lock = threading.Lock()
        self._tmp = self.root / "tmp"
        self._blobs = os.path.join(self.root, "blobs")  # str paths on the hot path (no pathlib)
        self._tmp.mkdir(parents=True, exist_ok=True)
        #: shard folders known to exist (blobs are never removed, nor their folders): a blob
        #: kept needs no mkdir (each syscall of the node's driver let go of the GIL)
        self._shards: set[str] = set()  # their names (a Path each cost ~200 bytes)
        for stale in self._tmp.glob("put-*"):  # left by a crash mid-write
            stale.unlink(missing_ok=True)

    # --- writing ---------------------------------------------------------------------
    def put(self, source: Source, *, expected: CID | None = None, hold_gil: bool = False) -> CID:
        """Store bytes, a binary file object or an iterable of chunks; return the CID.

        With ``expected``, bytes that hash to another CID raise :class:`CIDMismatch` and
        nothing is stored (the temporary file is removed before it is ever renamed).
        ``hold_gil``: see :meth:`StagedBlob.keep`.
        """
        cid = self.stage(source, expected=expected).keep(hold_gil=hold_gil)
        if isinstance(source, bytes) and 4 * len(source) <= self.handoff_bytes:
            self._hand_off(cid, source)
        return cid

    def stage(self, source: Source, *, expected: CID | None = None) -> StagedBlob:
        """Write and hash a blob as :meth:`put` does (fsynced, checked against ``expected``),
        but leave it out of the store until :meth:`StagedBlob.keep` (a rename) or
        :meth:`StagedBlob.discard`: the costly part can run on another thread than the one
        that decides whether the blob is kept. A staged blob never kept is removed at the
        next start, as any temporary file."""
        fd, tmp = tempfile.mkstemp(prefix="put-", dir=self._tmp)
        try:
            digest = hashlib.sha256()
            size = 0
            with os.fdopen(fd, "wb") as out:
                for chunk in _chunks(source):
                    size += len(chunk)
                    if size > self.max_blob_bytes:
                        raise BlobTooLarge(
                            f"blob is over the store's limit of {self.max_blob_bytes} bytes"
                        )
                    digest.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            cid = encoding.sha256_cid(digest.digest(), encoding.RAW)
            if expected is not None and cid != expected:
                raise CIDMismatch(f"the bytes hash to {cid}, not to the expected {expected}")
        except BaseException:
            _remove(tmp)
            raise
        return StagedBlob(self, cid, tmp)

    def _place(self, staged: StagedBlob, *, hold_gil: bool) -> None:
        rename, mkdir = (fsops.rename, fsops.mkdir) if hold_gil else (os.replace, os.mkdir)
        try:
            dest = self._file(staged.cid)
            shard, name = os.path.split(dest)
            if name[-2:] not in self._shards:
                try:
                    mkdir(shard)
                except FileExistsError:
                    pass
                except FileNotFoundError:  # no blobs/ folder yet
                    os.makedirs(shard, exist_ok=True)
                self._shards.add(name[-2:])
            # one syscall: a blob already held is replaced by the same bytes (its name is
            # their hash; a reader that has it open keeps reading the file it opened)
            try:
                rename(staged.tmp, dest)
            except FileNotFoundError:  # its folder went after all (removed by hand)
                os.makedirs(shard, exist_ok=True)
                rename(staged.tmp, dest)
        except BaseException:
            _remove(staged.tmp)
            raise

    def put_file(self, path: str | os.PathLike[str]) -> CID:
        with open(path, "rb") as f:
            return self.put(f)

    # --- reading ----------------------------------------------------------------------
    def path(self, cid: CID | str) -> Path:
        return Path(self._file(cid))

    def _file(self, cid: CID | str) -> str:
        """The path of ``cid``'s file, as text (``blobs/<last two characters>/<cid>``)."""
        text = str(encoding.parse_cid(cid, codec=encoding.RAW))
        return f"{self._blobs}{os.sep}{text[-2:]}{os.sep}{text}"

    def has(self, cid: CID | str) -> bool:
        return os.path.isfile(self._file(cid))

    def size(self, cid: CID | str) -> int:
        try:
            return self.path(cid).stat().st_size
        except FileNotFoundError:
            raise BlobNotFound(f"no blob {cid} in this store") from None

    def _hand_off(self, cid: CID, data: bytes) -> None:
        with self._handoff_lock:
            if cid in self._handoff:
                return
            self._handoff[cid] = data
            self._handoff_size += len(data)
            while self._handoff_size > self.handoff_bytes:
                _, old = self._handoff.popitem(last=False)
                self._handoff_size -= len(old)

    def _take_handoff(self, cid: CID) -> bytes | None:
        with self._handoff_lock:
            data = self._handoff.pop(cid, None)
            if data is not None:
                self._handoff_size -= len(data)
            return data

    def get(self, cid: CID | str) -> bytes:
        """The blob's bytes, verified against its CID."""
        c = encoding.parse_cid(cid, codec=encoding.RAW)
        if self._handoff:
            handed = self._take_handoff(c)
            if handed is not None:
                return handed
        try:
            data = self.path(c).read_bytes()
        except FileNotFoundError:
            raise BlobNotFound(f"no blob {c} in this store") from None
        actual = encoding.blob_cid(data)
        if actual != c:
            raise CIDMismatch(f"stored blob {c} is corrupted: its content hashes to {actual}")
        return data

    def iter_chunks(self, cid: CID | str, chunk_size: int = 1024 * 1024) -> Iterator[bytes]:
        """Stream the blob; the hash is checked at the end (CIDMismatch on corruption)."""
        c = encoding.parse_cid(cid, codec=encoding.RAW)
        digest = hashlib.sha256()
        try:
            f = open(self.path(c), "rb")  # noqa: SIM115  (closed below, generator)
        except FileNotFoundError:
            raise BlobNotFound(f"no blob {c} in this store") from None
        with f:
            while chunk := f.read(chunk_size):
                digest.update(chunk)
                yield chunk
        if encoding.sha256_cid(digest.digest(), encoding.RAW) != c:
            raise CIDMismatch(f"stored blob {c} is corrupted")

    def export(self, cid: CID | str, dest: str | os.PathLike[str]) -> None:
        """Write the blob to ``dest`` atomically, only once its hash has checked out."""
        dest = Path(dest)
        fd, tmp_name = tempfile.mkstemp(prefix=".export-", dir=dest.parent or ".")
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in self.iter_chunks(cid):
                    out.write(chunk)
            os.replace(tmp_name, dest)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise

    def delete(self, cid: CID | str) -> None:
        self._take_handoff(encoding.parse_cid(cid, codec=encoding.RAW))
        self.path(cid).unlink(missing_ok=True)

    def cids(self) -> Iterator[CID]:
        for p in sorted((self.root / "blobs").glob("*/*")):
            yield encoding.parse_cid(p.name)

    # --- protocol objects (DAG-CBOR), kept beside the blobs -------------------------------
    def put_object(self, encoded: bytes) -> CID:
        """Keep an encoded protocol object under its ``dag-cbor`` CID (atomic write)."""
        cid = encoding.object_cid(encoded)
        dest = self._object_path(cid)
        if not dest.exists():
            dest.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(prefix="put-", dir=self._tmp)
            with os.fdopen(fd, "wb") as out:
                out.write(encoded)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp_name, dest)
        return cid

    def get_object(self, cid: CID | str) -> bytes:
        """The encoded object with that CID, its hash checked."""
        c = encoding.parse_cid(cid, codec=encoding.DAG_CBOR)
        try:
            data = self._object_path(c).read_bytes()
        except FileNotFoundError:
            raise BlobNotFound(f"no object {c} in this store") from None
        if encoding.object_cid(data) != c:
            raise CIDMismatch(f"stored object {c} is corrupted")
        return data

    def _object_path(self, cid: CID) -> Path:
        text = str(cid)
        return self.root / "objects" / text[-2:] / text

    # --- encryption -------------------------------------------------------------------
    def put_encrypted(self, source: Source, recipients: Iterable[str]) -> EncryptedBlob:
        """Encrypt while storing; only ``recipients`` (did:keys) can open the result."""
        dids = sorted(set(recipients))
        if not dids:
            raise DecryptionError("an encrypted blob needs at least one recipient")
        key = sodium.crypto_secretstream_xchacha20poly1305_keygen()
        sealed = tuple(
            SealedKey(recipient=d, sealed_key=nacl.public.SealedBox(x25519_key_of(d)).encrypt(key))
            for d in dids
        )
        plain_size = 0

        def ciphertext() -> Iterator[bytes]:
            nonlocal plain_size
            state = sodium.crypto_secretstream_xchacha20poly1305_state()
            yield sodium.crypto_secretstream_xchacha20poly1305_init_push(state, key)
            pending: bytes | None = None
            for chunk in _rechunk(_chunks(source), CHUNK):
                plain_size += len(chunk)
                if pending is not None:
                    yield sodium.crypto_secretstream_xchacha20poly1305_push(
                        state, pending, None, _TAG_MESSAGE
                    )
                pending = chunk
            yield sodium.crypto_secretstream_xchacha20poly1305_push(
                state, pending or b"", None, _TAG_FINAL
            )

        cid = self.put(ciphertext())
        return EncryptedBlob(ciphertext_cid=cid, plaintext_bytes=plain_size, recipients=sealed)

    def get_decrypted(self, envelope: EncryptedBlob, reader: Identity) -> bytes:
        """Open an encrypted blob with ``reader``'s key (DecryptionError if not a recipient)."""
        out = io.BytesIO()
        for chunk in self.iter_decrypted(envelope, reader):
            out.write(chunk)
        return out.getvalue()

    def iter_decrypted(self, envelope: EncryptedBlob, reader: Identity) -> Iterator[bytes]:
        return decrypt_stream(self.iter_chunks(envelope.ciphertext_cid), envelope, reader)


def decrypt(ciphertext: bytes, envelope: EncryptedBlob, reader: Identity) -> bytes:
    """Open an encrypted blob held in memory (its CID checked against the envelope)."""
    if encoding.blob_cid(ciphertext) != envelope.ciphertext_cid:
        raise CIDMismatch("the ciphertext does not hash to the envelope's ciphertext_cid")
    return b"".join(decrypt_stream([ciphertext], envelope, reader))


def decrypt_stream(
    chunks: Iterable[bytes], envelope: EncryptedBlob, reader: Identity
) -> Iterator[bytes]:
    """Decrypt a ciphertext stream with ``reader``'s sealed copy of the key."""
    if envelope.cipher != CIPHER:
        raise DecryptionError(f"unknown cipher {envelope.cipher!r}; expected {CIPHER}")
    mine = [s for s in envelope.recipients if s.recipient == reader.did]
    if not mine:
        raise DecryptionError(f"{reader.did} is not a recipient of this blob")
    box = nacl.public.SealedBox(reader.curve25519_private_key)
    try:
        key = box.decrypt(mine[0].sealed_key)
    except nacl.exceptions.CryptoError as exc:
        raise DecryptionError("the sealed key does not open with this identity") from exc
    state = sodium.crypto_secretstream_xchacha20poly1305_state()
    blocks = _split_first(chunks, _HEADER)
    header = next(blocks, b"")
    if len(header) != _HEADER:
        raise DecryptionError("ciphertext is truncated (no stream header)")
    sodium.crypto_secretstream_xchacha20poly1305_init_pull(state, header, key)
    tag = None
    for block in _rechunk(blocks, CHUNK + _ABYTES):
        if tag == _TAG_FINAL:
            raise DecryptionError("data after the final chunk")
        try:
            plain, tag = sodium.crypto_secretstream_xchacha20poly1305_pull(state, block, None)
        except nacl.exceptions.CryptoError as exc:
            raise DecryptionError("ciphertext was tampered with") from exc
        yield plain
    if tag != _TAG_FINAL:
        raise DecryptionError("ciphertext is truncated (no final chunk)")


def x25519_key_of(did: str) -> nacl.public.PublicKey:
    """The X25519 key a ``did:key`` (Ed25519) is sealed to: its signing key, converted."""
    return nacl.signing.VerifyKey(public_key_from_did(did)).to_curve25519_public_key()


class StagedBlob:
    """A blob written and hashed but not yet in its store (see :meth:`BlobStore.stage`)."""

    def __init__(self, store: BlobStore, cid: CID, tmp: str) -> None:
        self.store = store
        self.cid = cid
        self.tmp = tmp
        self._done = False

    def keep(self, *, hold_gil: bool = False) -> CID:
        """Move it into the store (a rename); returns its CID.

        ``hold_gil``: make the rename (and a new shard folder's mkdir) keep the GIL
        (:mod:`~meshbench.store.fsops`), for the node's driver thread, which would otherwise
        wait for the GIL after each. Any other thread lets go of it, as ``os.replace`` does:
        under load a rename took ~300 us of wall time (~150 of CPU in the kernel, beside
        other threads' fsyncs), during which a held GIL stopped every thread of the node."""
        if not self._done:
            self._done = True
            self.store._place(self, hold_gil=hold_gil)
        return self.cid

    def discard(self) -> None:
        """Drop it: the store is as if it had never been staged."""
        if not self._done:
            self._done = True
            _remove(self.tmp)


def _remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _chunks(source: Source) -> Iterator[bytes]:
    if isinstance(source, bytes | bytearray | memoryview):
        view = memoryview(source)
        for i in range(0, len(view), 1024 * 1024):
            yield bytes(view[i : i + 1024 * 1024])
    elif hasattr(source, "read"):
        while chunk := source.read(1024 * 1024):  # type: ignore[union-attr]
            yield chunk
    else:
        for chunk in source:
            if not isinstance(chunk, bytes | bytearray | memoryview):
                raise TypeError(f"blob chunks must be bytes, not {type(chunk).__name__}")
            yield bytes(chunk)


def _rechunk(chunks: Iterable[bytes], size: int) -> Iterator[bytes]:
    """Regroup a byte stream into pieces of exactly ``size`` (the last may be shorter)."""
    buf = bytearray()
    for chunk in chunks:
        buf += chunk
        while len(buf) >= size:
            yield bytes(buf[:size])
            del buf[:size]
    if buf:
        yield bytes(buf)


def _split_first(chunks: Iterable[bytes], size: int) -> Iterator[bytes]:
    """Yield the first ``size`` bytes as one piece, then the rest as it comes."""
    head = bytearray()
    it = iter(chunks)
    for chunk in it:
        head += chunk
        if len(head) >= size:
            yield bytes(head[:size])
            if len(head) > size:
                yield bytes(head[size:])
            yield from it
            return
    yield bytes(head)
