"""The bundle manifest: its caps, its canonical JSON form and the checks on every path and entry.

Manifest JSON (canonical: sorted keys, no whitespace, UTF-8)::

    {"files":[{"path":"adapter_model.safetensors","sha256":"<64 hex>","size":123,
               "tensors":[{"dtype":"F32","name":"w","shape":[4,8]}]},
              {"path":"adapter_config.json","sha256":"<64 hex>","size":45}],
     "format":1,"kind":"lora","meta":{"base_model_sha256":"..."}}

``tensors`` is present exactly for ``.safetensors`` files, sorted by name. Files appear in the bundle
body in manifest order.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from protocol import strict_json
from protocol.errors import BundleError
from protocol.safetensors_header import DTYPE_BYTES, MAX_RANK, TensorInfo, check_tensor_name

FORMAT_VERSION = 1
MAGIC = b"MAGNETB" + bytes([FORMAT_VERSION])

GiB = 1 << 30
MiB = 1 << 20

# Formats that execute code when loaded (pickle and friends): refused whatever the caps say.
PICKLE_EXTENSIONS = frozenset({".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib", ".npy", ".npz"})
_COMPONENT_RE = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}\Z")
_KIND_RE = re.compile(r"[a-z][a-z0-9_-]{0,31}\Z")
_META_KEY_RE = re.compile(r"[a-z][a-z0-9_]{0,63}\Z")
_SHA256_RE = re.compile(r"[0-9a-f]{64}\Z")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
_WINDOWS_RESERVED = frozenset(
    {"CON", "PRN", "AUX", "NUL"} | {f"COM{i}" for i in range(1, 10)} | {f"LPT{i}" for i in range(1, 10)}
)


@dataclass(frozen=True)
class BundleCaps:
    """Limits applied to a bundle before anything is written; validators tighten them per task."""

    max_files: int = 64
    max_total_bytes: int = 16 * GiB
    max_file_bytes: int = 16 * GiB
    max_small_file_bytes: int = 64 * MiB
    max_manifest_bytes: int = 4 * MiB
    max_safetensors_header_bytes: int = 16 * MiB
    max_tensors_per_file: int = 20_000
    max_path_bytes: int = 255
    max_depth: int = 4
    max_meta_entries: int = 32
    max_meta_value_bytes: int = 1024
    allowed_extensions: frozenset[str] = field(
        default_factory=lambda: frozenset({".safetensors", ".json", ".txt", ".model"})
    )

    def limited_to(self, max_total_bytes: int) -> BundleCaps:
        """These caps with the total (and so every file) capped, e.g. at a task's max_artifact_bytes."""
        total = min(self.max_total_bytes, max_total_bytes)
        return replace(self, max_total_bytes=total, max_file_bytes=min(self.max_file_bytes, total))


@dataclass(frozen=True)
class BundleFile:
    """One file of a bundle: its relative path, size, sha256 and (safetensors) tensor table."""

    path: str
    size: int
    sha256: bytes
    tensors: tuple[TensorInfo, ...] | None = None

    def check_caps(self, caps: BundleCaps) -> None:
        if self.size > caps.max_file_bytes:
            raise BundleError(
                f"{self.path}: {self.size} bytes exceeds the per-file cap of {caps.max_file_bytes}"
            )
        if self.tensors is None and self.size > caps.max_small_file_bytes:
            raise BundleError(
                f"{self.path}: {self.size} bytes exceeds the cap of {caps.max_small_file_bytes} for "
                "non-safetensors files"
            )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path, "size": self.size, "sha256": self.sha256.hex()}
        if self.tensors is not None:
            out["tensors"] = [t.to_json() for t in self.tensors]
        return out


@dataclass(frozen=True)
class Manifest:
    """What a bundle holds: its kind, free-form string metadata and its files in body order."""

    kind: str
    meta: Mapping[str, str]
    files: tuple[BundleFile, ...]
    format: int = FORMAT_VERSION

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    def file(self, path: str) -> BundleFile:
        for entry in self.files:
            if entry.path == path:
                return entry
        raise KeyError(path)

    def check_caps(self, caps: BundleCaps) -> None:
        if len(self.files) > caps.max_files:
            raise BundleError(f"bundle lists {len(self.files)} files, at most {caps.max_files} allowed")
        if self.total_bytes > caps.max_total_bytes:
            raise BundleError(
                f"bundle holds {self.total_bytes} bytes, more than the cap {caps.max_total_bytes}"
            )
        _check_unique_paths([f.path for f in self.files])

    def to_json(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "kind": self.kind,
            "meta": dict(self.meta),
            "files": [f.to_json() for f in self.files],
        }


def manifest_bytes(manifest: Manifest) -> bytes:
    return json.dumps(manifest.to_json(), sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


# ---------------------------------------------------------------------------------------------------
# Checks


def check_path(path: str, caps: BundleCaps) -> None:
    """A relative POSIX path of plain components under the caps, with an allowed extension."""
    if not isinstance(path, str) or not path:
        raise BundleError("bundle file path must be a non-empty string")
    shown = path[:80]
    if path.startswith("/") or re.match(r"[A-Za-z]:", path):
        raise BundleError(f"bundle file path {shown!r} is absolute; only relative paths are allowed")
    if "\\" in path:
        raise BundleError(f"bundle file path {shown!r} contains a backslash; use / as the separator")
    parts = path.split("/")
    if ".." in parts:
        raise BundleError(f"bundle file path {shown!r} contains '..' and would escape the bundle directory")
    if len(path.encode("utf-8", "replace")) > caps.max_path_bytes or len(parts) > caps.max_depth:
        raise BundleError(f"bundle file path {shown!r} is too long or too deep")
    for part in parts:
        _check_component(part, shown)
    _check_extension(parts[-1], shown, caps)


def _check_component(part: str, shown: str) -> None:
    if not _COMPONENT_RE.match(part) or part.endswith("."):
        raise BundleError(
            f"bundle file path {shown!r}: component {part[:40]!r} must be 1-128 characters of "
            "letters, digits, '.', '_' or '-', not starting or ending with '.'"
        )
    if part.split(".")[0].upper() in _WINDOWS_RESERVED:
        raise BundleError(f"bundle file path {shown!r}: {part!r} is a reserved device name on Windows")


def _check_extension(name: str, shown: str, caps: BundleCaps) -> None:
    ext = "." + name.rsplit(".", 1)[-1].lower() if "." in name else ""
    if ext in PICKLE_EXTENSIONS:
        raise BundleError(
            f"bundle file {shown!r} is a pickle-based format ({ext}), which can run code when loaded; "
            "save weights as .safetensors instead"
        )
    if ext not in caps.allowed_extensions:
        allowed = ", ".join(sorted(caps.allowed_extensions))
        raise BundleError(
            f"bundle file {shown!r}: extension {ext or '(none)'!r} is not allowed (allowed: {allowed})"
        )


def _check_unique_paths(paths: list[str]) -> None:
    """No duplicates (case-insensitively, for macOS and Windows) and no file that is also a directory."""
    folded = [p.lower() for p in paths]
    if len(set(folded)) != len(folded):
        raise BundleError("bundle lists the same file path twice (compared case-insensitively)")
    directories = {"/".join(p.split("/")[:i]) for p in folded for i in range(1, p.count("/") + 1)}
    clash = directories & set(folded)
    if clash:
        raise BundleError(f"bundle path {sorted(clash)[0]!r} is both a file and a directory")


def check_kind(kind: Any) -> None:
    if not isinstance(kind, str) or not _KIND_RE.match(kind):
        raise BundleError(
            "bundle kind must be 1-32 characters of a-z, 0-9, '_' or '-', starting with a letter"
        )


def check_meta(meta: Any, caps: BundleCaps) -> None:
    if not isinstance(meta, dict) or len(meta) > caps.max_meta_entries:
        raise BundleError(f"bundle meta must be an object of at most {caps.max_meta_entries} entries")
    for key, value in meta.items():
        if not isinstance(key, str) or not _META_KEY_RE.match(key):
            raise BundleError(f"bundle meta key {str(key)[:40]!r} must be lower_snake_case (1-64 characters)")
        if not isinstance(value, str) or _CONTROL_RE.search(value):
            raise BundleError(f"bundle meta {key!r} must be a string without control characters")
        if len(value.encode("utf-8", "replace")) > caps.max_meta_value_bytes:
            raise BundleError(f"bundle meta {key!r} is longer than {caps.max_meta_value_bytes} bytes")


# ---------------------------------------------------------------------------------------------------
# Parsing


def parse_manifest(raw: bytes, caps: BundleCaps) -> Manifest:
    """Parse canonical manifest bytes strictly; BundleError on anything unexpected."""
    doc = _strict_json(raw)
    if not isinstance(doc, dict) or set(doc) != {"format", "kind", "meta", "files"}:
        raise BundleError('bundle manifest must be an object with exactly "format", "kind", "meta", "files"')
    if doc["format"] != FORMAT_VERSION or isinstance(doc["format"], bool):
        raise BundleError(
            f"bundle manifest format {str(doc['format'])[:10]} is not supported (this node reads 1)"
        )
    check_kind(doc["kind"])
    check_meta(doc["meta"], caps)
    if not isinstance(doc["files"], list) or not 0 < len(doc["files"]) <= caps.max_files:
        raise BundleError(f"bundle manifest must list 1 to {caps.max_files} files")
    files = tuple(_parse_file(entry, caps) for entry in doc["files"])
    manifest = Manifest(kind=doc["kind"], meta=doc["meta"], files=files)
    manifest.check_caps(caps)
    if manifest_bytes(manifest) != raw:
        raise BundleError("bundle manifest is not in canonical form (sorted keys, no whitespace)")
    return manifest


def _strict_json(raw: bytes) -> Any:
    return strict_json.loads(raw, "bundle manifest", BundleError)


def _parse_file(entry: Any, caps: BundleCaps) -> BundleFile:
    if not isinstance(entry, dict) or not {"path", "size", "sha256"} <= set(entry) <= {
        "path", "size", "sha256", "tensors"
    }:  # fmt: skip
        raise BundleError('bundle file entry must have "path", "size", "sha256" and optionally "tensors"')
    path, size, sha = entry["path"], entry["size"], entry["sha256"]
    check_path(path, caps)
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise BundleError(f"{path}: size must be a non-negative integer")
    if not isinstance(sha, str) or not _SHA256_RE.match(sha):
        raise BundleError(f"{path}: sha256 must be 64 lowercase hex digits")
    is_safetensors = path.lower().endswith(".safetensors")
    if is_safetensors != ("tensors" in entry):
        raise BundleError(f"{path}: a tensor table is required for .safetensors files and only for them")
    tensors = _parse_tensors(path, entry["tensors"], size, caps) if is_safetensors else None
    result = BundleFile(path=path, size=size, sha256=bytes.fromhex(sha), tensors=tensors)
    result.check_caps(caps)
    return result


def _parse_tensors(path: str, raw: Any, size: int, caps: BundleCaps) -> tuple[TensorInfo, ...]:
    if not isinstance(raw, list) or len(raw) > caps.max_tensors_per_file:
        raise BundleError(f"{path}: tensors must be a list of at most {caps.max_tensors_per_file} entries")
    tensors = tuple(_parse_tensor(path, t) for t in raw)
    names = [t.name for t in tensors]
    if names != sorted(set(names)):
        raise BundleError(f"{path}: tensor names must be unique and sorted")
    if sum(t.nbytes for t in tensors) > size:
        raise BundleError(f"{path}: tensor shapes need more bytes than the file's size")
    return tensors


def _parse_tensor(path: str, raw: Any) -> TensorInfo:
    if not isinstance(raw, dict) or set(raw) != {"name", "dtype", "shape"}:
        raise BundleError(f'{path}: each tensor must have exactly "name", "dtype" and "shape"')
    name, dtype, shape = raw["name"], raw["dtype"], raw["shape"]
    check_tensor_name(name)
    if not isinstance(dtype, str) or dtype not in DTYPE_BYTES:
        raise BundleError(f"{path}: tensor {name[:60]!r} has unsupported dtype {str(dtype)[:20]!r}")
    if not isinstance(shape, list) or len(shape) > MAX_RANK or not all(_is_dim(d) for d in shape):
        raise BundleError(f"{path}: tensor {name[:60]!r} shape must be at most {MAX_RANK} non-negative sizes")
    return TensorInfo(name, dtype, tuple(shape))


def _is_dim(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**48
