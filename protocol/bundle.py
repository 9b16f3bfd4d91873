"""The artifact bundle: one file holding a JSON manifest and the files it lists.

Layout (docs/PROTOCOL.md, "Artifact bundle")::

    "MAGNETB" 0x01 | manifest length, u32 big-endian | manifest (canonical JSON) | file bytes, in order

A bundle comes from an untrusted peer. Nothing in it is trusted until checked: :func:`read_manifest`
checks the header and the file size alone; :func:`extract_bundle` writes regular files only, into a
fresh directory, checks every size and sha256 and every safetensors header against the manifest, and
leaves nothing behind when anything fails. Pickle-based formats are refused outright: they run code
when loaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import BinaryIO

from protocol.bundle_manifest import (
    FORMAT_VERSION,
    MAGIC,
    BundleCaps,
    BundleFile,
    Manifest,
    check_kind,
    check_meta,
    check_path,
    manifest_bytes,
    parse_manifest,
)
from protocol.errors import BundleError
from protocol.safetensors_header import TensorInfo, read_tensor_table
from protocol.strict_json import nesting_within

__all__ = [
    "FORMAT_VERSION",
    "BundleCaps",
    "BundleFile",
    "Manifest",
    "TensorInfo",
    "extract_bundle",
    "file_sha256",
    "read_manifest",
    "read_manifest_from",
    "write_bundle",
]

CHUNK = 1 << 20
JSON_FILE_MAX_DEPTH = 64
PREFIX_BYTES = len(MAGIC) + 4


def write_bundle(
    src_dir: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    kind: str,
    meta: dict[str, str] | None = None,
    caps: BundleCaps | None = None,
    skip_other_extensions: bool = False,
) -> Manifest:
    """Pack every regular file under ``src_dir`` into the bundle ``out_path`` (written atomically).

    The same checks as extraction apply, so a bundle we write is one a peer can extract.
    ``skip_other_extensions``: leave out files whose extension a bundle does not admit (a model
    directory's README.md) instead of refusing the directory.
    """
    caps = caps or BundleCaps()
    src, out = Path(src_dir), Path(out_path)
    if not src.is_dir() or src.is_symlink():
        raise BundleError(f"bundle source {src} is not a directory")
    if out.resolve().is_relative_to(src.resolve()):
        raise BundleError(f"bundle output {out} must not be inside the source directory {src}")
    check_kind(kind)
    check_meta(meta or {}, caps)
    listed = _list_files(src, caps)
    if skip_other_extensions:
        listed = [rel for rel in listed if Path(rel).suffix.lower() in caps.allowed_extensions]
        if not listed:
            raise BundleError(f"{src} holds no files a bundle admits")
    files = tuple(_describe_file(src, rel, caps) for rel in listed)
    manifest = Manifest(kind=kind, meta=dict(meta or {}), files=files)
    manifest.check_caps(caps)
    _write_atomically(out, manifest, src)
    return manifest


def read_manifest(path: str | os.PathLike[str], caps: BundleCaps | None = None) -> Manifest:
    """Read and check the manifest of a bundle without reading the files' bytes."""
    with open(path, "rb") as f:
        return read_manifest_from(f, os.fstat(f.fileno()).st_size, caps)


def read_manifest_from(f: BinaryIO, total_size: int, caps: BundleCaps | None = None) -> Manifest:
    """Read and check the manifest from a stream positioned at a bundle's start whose full size is
    ``total_size`` (e.g. the first bytes of an upload, to refuse it before the rest arrives)."""
    manifest = _read_header(f, caps or BundleCaps())
    _check_total_size(total_size, manifest)
    return manifest


def extract_bundle(
    path: str | os.PathLike[str], dest_dir: str | os.PathLike[str], caps: BundleCaps | None = None
) -> Manifest:
    """Extract a bundle into ``dest_dir``, which must not exist yet or be an empty directory.

    Everything is written to a private temporary directory beside ``dest_dir`` and renamed into place
    only after every check passed; on any failure the temporary directory is removed.
    """
    caps = caps or BundleCaps()
    dest = Path(dest_dir)
    _check_fresh_destination(dest)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.partial-", dir=dest.parent))
    try:
        with open(path, "rb") as f:
            manifest = _read_header(f, caps)
            _check_total_size(os.fstat(f.fileno()).st_size, manifest)
            for entry in manifest.files:
                _extract_file(f, entry, staging)
            if f.read(1):
                raise BundleError("bundle has trailing bytes after its last file")
        for entry in manifest.files:
            _verify_content(staging / entry.path, entry, caps)
        _move_into_place(staging, dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest


def file_sha256(path: str | os.PathLike[str]) -> bytes:
    """sha256 of a whole file (the artifact hash of a bundle in Commitment and Reveal)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.digest()


# ---------------------------------------------------------------------------------------------------
# Writing


def _list_files(src: Path, caps: BundleCaps) -> list[str]:
    """Relative POSIX paths of the regular files under ``src``, sorted; symlinks and specials refused."""
    found: list[str] = []
    for root, dirs, names in os.walk(src, followlinks=False):
        for name in sorted(dirs + names):
            full = Path(root) / name
            rel = full.relative_to(src).as_posix()
            if full.is_symlink():
                raise BundleError(f"{rel} is a symbolic link; bundles hold regular files only")
            if name in names and not full.is_file():
                raise BundleError(f"{rel} is not a regular file")
            if name in names:
                found.append(rel)
        if len(found) > caps.max_files:
            raise BundleError(f"{src} holds more than {caps.max_files} files")
    if not found:
        raise BundleError(f"{src} holds no files to bundle")
    return sorted(found)


def _describe_file(src: Path, rel: str, caps: BundleCaps) -> BundleFile:
    check_path(rel, caps)
    full = src / rel
    size = full.stat().st_size
    tensors: tuple[TensorInfo, ...] | None = None
    if rel.lower().endswith(".safetensors"):
        with open(full, "rb") as f:
            tensors = read_tensor_table(f, size, caps.max_safetensors_header_bytes, caps.max_tensors_per_file)
    entry = BundleFile(path=rel, size=size, sha256=file_sha256(full), tensors=tensors)
    entry.check_caps(caps)
    return entry


def _write_atomically(out: Path, manifest: Manifest, src: Path) -> None:
    tmp_fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    try:
        with os.fdopen(tmp_fd, "wb") as f:
            header = manifest_bytes(manifest)
            f.write(MAGIC + len(header).to_bytes(4, "big") + header)
            for entry in manifest.files:
                _copy_checked(src / entry.path, f, entry)
        os.replace(tmp_name, out)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def _copy_checked(path: Path, out: BinaryIO, entry: BundleFile) -> None:
    """Copy a source file, re-hashing it: a file changed since it was described must not slip in."""
    digest, copied = hashlib.sha256(), 0
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
            out.write(chunk)
            copied += len(chunk)
    if copied != entry.size or digest.digest() != entry.sha256:
        raise BundleError(f"{entry.path} changed while the bundle was being written; try again")


# ---------------------------------------------------------------------------------------------------
# Reading and extracting


def _read_header(f: BinaryIO, caps: BundleCaps) -> Manifest:
    prefix = f.read(PREFIX_BYTES)
    if len(prefix) < PREFIX_BYTES or prefix[: len(MAGIC) - 1] != MAGIC[:-1]:
        raise BundleError("not a MAGNET bundle (bad magic bytes)")
    if prefix[len(MAGIC) - 1] != MAGIC[-1]:
        raise BundleError(f"bundle format {prefix[len(MAGIC) - 1]} is not supported (this node reads 1)")
    length = int.from_bytes(prefix[len(MAGIC) :], "big")
    if length > caps.max_manifest_bytes:
        raise BundleError(f"bundle manifest of {length} bytes exceeds the cap of {caps.max_manifest_bytes}")
    raw = f.read(length)
    if len(raw) != length:
        raise BundleError("bundle is truncated inside its manifest")
    return parse_manifest(raw, caps)


def _check_total_size(actual: int, manifest: Manifest) -> None:
    expected = PREFIX_BYTES + len(manifest_bytes(manifest)) + manifest.total_bytes
    if actual < expected:
        raise BundleError(f"bundle is truncated: {actual} bytes, the manifest needs {expected}")
    if actual > expected:
        raise BundleError(f"bundle has {actual - expected} trailing bytes after its last file")


def _check_fresh_destination(dest: Path) -> None:
    if dest.is_symlink():
        raise BundleError(f"extraction target {dest} is a symbolic link; give a fresh directory")
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise BundleError(f"extraction target {dest} exists and is not an empty directory; give a fresh one")
    if not dest.parent.is_dir():
        raise BundleError(f"parent directory of the extraction target {dest} does not exist")


def _extract_file(f: BinaryIO, entry: BundleFile, staging: Path) -> None:
    target = staging / entry.path
    target.parent.mkdir(parents=True, exist_ok=True)
    # O_EXCL | O_NOFOLLOW: never write through a link or over something already there.
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
    digest, remaining = hashlib.sha256(), entry.size
    with os.fdopen(os.open(target, flags, 0o644), "wb") as out:
        while remaining:
            chunk = f.read(min(CHUNK, remaining))
            if not chunk:
                raise BundleError(f"bundle is truncated inside {entry.path}")
            digest.update(chunk)
            out.write(chunk)
            remaining -= len(chunk)
    if digest.digest() != entry.sha256:
        raise BundleError(f"{entry.path}: sha256 does not match the manifest (corrupt or tampered bundle)")


def _verify_content(path: Path, entry: BundleFile, caps: BundleCaps) -> None:
    """The manifest's claims about a file's content must hold: tensor tables, JSON and text."""
    if entry.tensors is not None:
        with open(path, "rb") as f:
            actual = read_tensor_table(
                f, entry.size, caps.max_safetensors_header_bytes, caps.max_tensors_per_file
            )
        if actual != entry.tensors:
            raise BundleError(f"{entry.path}: tensor table differs from the manifest")
    elif entry.path.endswith((".json", ".txt")):
        _check_text(path, entry.path)


def _check_text(path: Path, rel: str) -> None:
    kind = "JSON" if rel.endswith(".json") else "text"
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise BundleError(f"{rel} is not valid UTF-8 {kind}") from None
    if kind == "JSON":
        # Configs and tokenizers nest a few levels; the bound keeps json's C scanner off a deep stack.
        if not nesting_within(text, JSON_FILE_MAX_DEPTH):
            raise BundleError(
                f"{rel} is not valid UTF-8 JSON or nests deeper than {JSON_FILE_MAX_DEPTH} levels"
            )
        try:
            json.loads(text)
        except (ValueError, RecursionError):
            raise BundleError(f"{rel} is not valid UTF-8 JSON") from None


def _move_into_place(staging: Path, dest: Path) -> None:
    if dest.exists():
        dest.rmdir()  # checked empty above; rename() cannot replace a directory on every platform
    os.rename(staging, dest)
