"""A content-addressed blob store (sha256) in the data directory, with a quota and GC.

Layout under the store root::

    objects/<first two hex>/<sha256>        the verified bytes (read-only once visible)
    objects/<first two hex>/<sha256>.json   {"public": bool, "pinned": bool, "used": time}
    partial/<sha256>.part                   bytes of a download in progress (resumable)

A blob becomes visible only after its hash is checked: bytes land in ``partial/`` and are
renamed into ``objects/`` atomically. Public blobs (train data, base models) may be served to
any peer; private ones (artifacts) never are. Pinned blobs survive garbage collection.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import time
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

HASH_RE = re.compile(r"^[0-9a-f]{64}$")
READ_CHUNK = 1 << 20
WRITEV_MAX = 1024  # buffers per writev call (Linux IOV_MAX)


class BlobError(Exception):
    """A blob operation failed; the message says why and what to do."""


class BlobHashMismatch(BlobError):
    """Received bytes do not hash to the blob id they were requested under."""


class BlobQuotaExceeded(BlobError):
    """The store cannot make room for a blob without deleting pinned ones."""


def check_hash(blob_hash: str) -> str:
    """Validate a blob id: 64 lowercase hex characters (sha256)."""
    if not isinstance(blob_hash, str) or not HASH_RE.match(blob_hash):
        raise BlobError(f"blob id {blob_hash!r} is not a lowercase hex sha256 (64 characters)")
    return blob_hash


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(READ_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _as_float(value: object) -> float:
    return float(value) if isinstance(value, int | float) else 0.0


@dataclass(frozen=True)
class BlobInfo:
    blob_hash: str
    size: int
    public: bool
    pinned: bool
    used: float


class PartialBlob:
    """An in-progress download of one blob, appended to in order and verified at the end.

    The hash is computed as bytes arrive (the bytes already on disk are hashed once when a
    download resumes), so verification costs nothing extra at the end.
    """

    def __init__(self, store: BlobStore, blob_hash: str, size: int) -> None:
        self.store = store
        self.blob_hash = blob_hash
        self.size = size
        self.path = store.partial_dir / f"{blob_hash}.part"
        self._handle: BinaryIO | None = None
        self._digest: hashlib._Hash | None = None
        self._offset = self.path.stat().st_size if self.path.exists() else 0
        if self._offset > size:
            self.truncate(0)

    @property
    def offset(self) -> int:
        """Bytes already held: where a resumed download starts."""
        return self._offset

    def append(self, chunk: bytes) -> None:
        if self._offset + len(chunk) > self.size:
            raise BlobError(f"blob {self.blob_hash[:12]}: more bytes than the stated size {self.size}")
        if self._handle is None:
            self._digest = sha256_prefix(self.path, self._offset)
            self._handle = self.path.open("ab")
        assert self._digest is not None
        self._handle.write(chunk)
        self._digest.update(chunk)
        self._offset += len(chunk)

    def append_many(self, chunks: list[bytes]) -> None:
        """Append ``chunks`` in order: hashed, then written with one ``writev`` per 1024 of them
        (one system call, and one release of the GIL, for a whole batch). If the write fails, the
        state is rebuilt from the file on the next append, so ``offset`` and the hash stay exact."""
        total = sum(len(chunk) for chunk in chunks)
        if self._offset + total > self.size:
            raise BlobError(f"blob {self.blob_hash[:12]}: more bytes than the stated size {self.size}")
        if self._handle is None:
            self._digest = sha256_prefix(self.path, self._offset)
            self._handle = self.path.open("ab")
        assert self._digest is not None
        try:
            if hasattr(os, "writev"):
                self._handle.flush()
                fd = self._handle.fileno()
                for start in range(0, len(chunks), WRITEV_MAX):
                    _writev_all(fd, chunks[start:start + WRITEV_MAX])
            else:  # Windows has no writev
                self._handle.writelines(chunks)
        except OSError:
            self.close()
            self._digest = None
            self._offset = self.path.stat().st_size
            raise
        for chunk in chunks:
            self._digest.update(chunk)
        self._offset += total

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def truncate(self, offset: int) -> None:
        """Drop bytes past ``offset`` (used when a provider's bytes cannot be trusted)."""
        self.close()
        self._digest = None
        if self.path.exists():
            with self.path.open("r+b") as handle:
                handle.truncate(offset)
        self._offset = min(offset, self.path.stat().st_size) if self.path.exists() else 0

    def discard(self) -> None:
        self.close()
        self._digest = None
        self.path.unlink(missing_ok=True)
        self._offset = 0

    def finish(self, public: bool) -> BlobInfo:
        """Verify the hash and make the blob visible; on mismatch delete the bytes and raise."""
        digest = self._digest
        self.close()
        if self._offset != self.size:
            raise BlobError(f"blob {self.blob_hash[:12]}: have {self._offset} of {self.size} bytes")
        actual = digest.hexdigest() if digest is not None else sha256_file(self.path)
        if actual != self.blob_hash:
            self.discard()
            raise BlobHashMismatch(f"blob {self.blob_hash[:12]}: bytes hash to {actual[:12]}; deleted")
        return self.store.adopt(self.path, self.blob_hash, public=public)


def _writev_all(fd: int, chunks: list[bytes]) -> None:
    """``os.writev`` until every byte of ``chunks`` is written (it may write fewer)."""
    views = [memoryview(chunk) for chunk in chunks if chunk]
    while views:
        written = os.writev(fd, views)
        while views and written >= len(views[0]):
            written -= len(views[0])
            views.pop(0)
        if views and written:
            views[0] = views[0][written:]


def sha256_prefix(path: Path, length: int) -> hashlib._Hash:
    """sha256 state over the first ``length`` bytes of ``path`` (empty state if none)."""
    digest = hashlib.sha256()
    if length and path.exists():
        with path.open("rb") as handle:
            left = length
            while left > 0 and (chunk := handle.read(min(READ_CHUNK, left))):
                digest.update(chunk)
                left -= len(chunk)
    return digest


class BlobStore:
    """Blobs by sha256 under ``root``, at most ``quota_bytes`` in all."""

    def __init__(self, root: Path, quota_bytes: int, max_blob_bytes: int) -> None:
        self.root = root
        self.quota_bytes = quota_bytes
        self.max_blob_bytes = max_blob_bytes
        self.objects_dir = root / "objects"
        self.partial_dir = root / "partial"
        self.objects_dir.mkdir(parents=True, exist_ok=True)
        self.partial_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    # --- lookup -------------------------------------------------------------------------------
    def path(self, blob_hash: str) -> Path:
        check_hash(blob_hash)
        return self.objects_dir / blob_hash[:2] / blob_hash

    def _meta_path(self, blob_hash: str) -> Path:
        return self.path(blob_hash).with_suffix(".json")

    def has(self, blob_hash: str) -> bool:
        return self.path(blob_hash).is_file()

    def info(self, blob_hash: str) -> BlobInfo | None:
        path = self.path(blob_hash)
        if not path.is_file():
            return None
        meta = self._read_meta(blob_hash)
        return BlobInfo(blob_hash, path.stat().st_size, bool(meta.get("public")),
                        bool(meta.get("pinned")), _as_float(meta.get("used")))

    def _read_meta(self, blob_hash: str) -> dict[str, object]:
        try:
            data = json.loads(self._meta_path(blob_hash).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _write_meta(self, blob_hash: str, **changes: object) -> None:
        meta = self._read_meta(blob_hash)
        meta.update(changes)
        tmp = self._meta_path(blob_hash).with_suffix(".json.tmp")
        tmp.write_text(json.dumps(meta), encoding="utf-8")
        os.replace(tmp, self._meta_path(blob_hash))

    def all(self) -> list[BlobInfo]:
        infos = []
        for path in self.objects_dir.glob("*/*"):
            if path.suffix == "" and HASH_RE.match(path.name):
                info = self.info(path.name)
                if info is not None:
                    infos.append(info)
        return infos

    def used_bytes(self) -> int:
        return sum(info.size for info in self.all())

    # --- writing ------------------------------------------------------------------------------
    def put_bytes(self, data: bytes, public: bool, pinned: bool = False) -> str:
        blob_hash = hashlib.sha256(data).hexdigest()
        if self.has(blob_hash):
            self._write_meta(blob_hash, public=public or self.is_public(blob_hash), pinned=pinned)
            return blob_hash
        partial = self.partial(blob_hash, len(data))
        partial.truncate(0)
        partial.append(data)
        partial.finish(public=public)
        if pinned:
            self.pin(blob_hash)
        return blob_hash

    def put_file(self, source: Path, public: bool, pinned: bool = False) -> str:
        """Copy ``source`` into the store (hashing as it goes) and return its blob id."""
        digest = hashlib.sha256()
        tmp = self.partial_dir / f"import-{os.getpid()}-{threading.get_ident()}.part"
        with source.open("rb") as src, tmp.open("wb") as dst:
            while chunk := src.read(READ_CHUNK):
                digest.update(chunk)
                dst.write(chunk)
        blob_hash = digest.hexdigest()
        self.make_room(tmp.stat().st_size)
        self.adopt(tmp, blob_hash, public=public)
        if pinned:
            self.pin(blob_hash)
        return blob_hash

    def partial(self, blob_hash: str, size: int) -> PartialBlob:
        """The partial download of ``blob_hash`` (``size`` bytes), room made for it in the quota."""
        check_hash(blob_hash)
        if size < 0 or size > self.max_blob_bytes:
            raise BlobError(f"blob {blob_hash[:12]} states {size} bytes; the cap is {self.max_blob_bytes} "
                            "(raise p2p.blob_max_bytes to accept it)")
        self.make_room(size)
        return PartialBlob(self, blob_hash, size)

    def adopt(self, verified: Path, blob_hash: str, public: bool) -> BlobInfo:
        """Move an already verified file into place atomically."""
        target = self.path(blob_hash)
        target.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            if target.exists():
                verified.unlink(missing_ok=True)
            else:
                os.chmod(verified, 0o444)
                os.replace(verified, target)
            self._write_meta(blob_hash, public=public or self.is_public(blob_hash), used=time.time())
        info = self.info(blob_hash)
        assert info is not None
        return info

    # --- flags, reading, deletion -------------------------------------------------------------
    def is_public(self, blob_hash: str) -> bool:
        return bool(self._read_meta(blob_hash).get("public"))

    def pin(self, blob_hash: str) -> None:
        self._write_meta(blob_hash, pinned=True)

    def unpin(self, blob_hash: str) -> None:
        self._write_meta(blob_hash, pinned=False)

    def touch(self, blob_hash: str) -> None:
        self._write_meta(blob_hash, used=time.time())

    def read_range(
        self, blob_hash: str, offset: int, length: int, chunk: int
    ) -> Generator[bytes, None, None]:
        """Bytes ``[offset, offset + length)`` in chunks of at most ``chunk`` (close it to close the file)."""
        with self.path(blob_hash).open("rb") as handle:
            handle.seek(offset)
            left = length
            while left > 0:
                data = handle.read(min(chunk, left))
                if not data:
                    raise BlobError(f"blob {blob_hash[:12]} ended early at {length - left} of {length}")
                left -= len(data)
                yield data

    def delete(self, blob_hash: str) -> None:
        with self._lock:
            self.path(blob_hash).unlink(missing_ok=True)
            self._meta_path(blob_hash).unlink(missing_ok=True)

    def make_room(self, incoming: int) -> None:
        """Collect unpinned blobs, least recently used first, until ``incoming`` bytes fit."""
        infos = self.all()
        used = sum(info.size for info in infos) + self._partial_bytes()
        if used + incoming <= self.quota_bytes:
            return
        for info in sorted((i for i in infos if not i.pinned), key=lambda i: i.used):
            self.delete(info.blob_hash)
            used -= info.size
            if used + incoming <= self.quota_bytes:
                return
        raise BlobQuotaExceeded(
            f"blob store {self.root} needs {incoming} more bytes but holds {used} of its "
            f"{self.quota_bytes}-byte quota in pinned blobs; raise p2p.blob_quota_bytes or unpin blobs"
        )

    def gc(self) -> int:
        """Enforce the quota now; returns the bytes freed."""
        before = self.used_bytes()
        self.make_room(0)
        return before - self.used_bytes()

    def _partial_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.partial_dir.glob("*.part"))
