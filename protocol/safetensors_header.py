"""Read the tensor table of a safetensors file from its header, without loading any tensor.

Format (https://github.com/huggingface/safetensors): 8 bytes little-endian u64 N, then N bytes of
UTF-8 JSON ``{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {str: str}}``,
then the tensor bytes. We check everything the loader would trust: known dtypes, byte counts that
match the shapes, offsets that tile the data region exactly (no gaps, overlaps or trailing bytes).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, BinaryIO

from protocol import strict_json
from protocol.errors import BundleError

DTYPE_BYTES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1,
    "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4,
    "I64": 8, "U64": 8, "F64": 8,
}  # fmt: skip
MAX_RANK = 8
_NAME_RE = re.compile(r"[A-Za-z0-9_.:/\-\[\]]{1,256}\Z")


@dataclass(frozen=True)
class TensorInfo:
    """One tensor of a safetensors file, as its header describes it."""

    name: str
    dtype: str
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * DTYPE_BYTES[self.dtype]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}


def read_tensor_table(
    f: BinaryIO, file_size: int, max_header_bytes: int, max_tensors: int
) -> tuple[TensorInfo, ...]:
    """Parse and check the header of the safetensors file open in ``f`` (positioned at its start).

    Returns the tensors sorted by name. Raises BundleError naming what is wrong.
    """
    if file_size < 8:
        raise BundleError("safetensors file is shorter than its 8-byte header length")
    header_len = int.from_bytes(f.read(8), "little")
    if header_len > max_header_bytes or header_len > file_size - 8:
        raise BundleError(f"safetensors header length {header_len} exceeds the cap or the file size")
    raw = f.read(header_len)
    if len(raw) != header_len:
        raise BundleError("safetensors header is truncated")
    header = _parse_header_json(raw)
    entries = {k: v for k, v in header.items() if k != "__metadata__"}
    if len(entries) > max_tensors:
        raise BundleError(f"safetensors file has {len(entries)} tensors, at most {max_tensors} allowed")
    _check_metadata(header.get("__metadata__", {}))
    tensors, spans = [], []
    for name, entry in entries.items():
        info, span = _check_entry(name, entry)
        tensors.append(info)
        spans.append(span)
    _check_tiling(spans, file_size - 8 - header_len)
    return tuple(sorted(tensors, key=lambda t: t.name))


def _parse_header_json(raw: bytes) -> dict[str, Any]:
    header = strict_json.loads(raw, "safetensors header", BundleError)
    if not isinstance(header, dict):
        raise BundleError("safetensors header must be a JSON object")
    return header


def _check_metadata(meta: Any) -> None:
    if not isinstance(meta, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in meta.items()
    ):
        raise BundleError("safetensors __metadata__ must map strings to strings")


def check_tensor_name(name: Any) -> None:
    """Tensor names: 1-256 characters of letters, digits and ``_ . : / - [ ]`` (what models use)."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise BundleError(f"tensor name {str(name)[:60]!r} has unexpected characters or length")


def _check_entry(name: str, entry: Any) -> tuple[TensorInfo, tuple[int, int]]:
    check_tensor_name(name)
    if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
        raise BundleError(f"safetensors tensor {name!r}: expected exactly dtype, shape and data_offsets")
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if not isinstance(dtype, str) or dtype not in DTYPE_BYTES:
        raise BundleError(f"safetensors tensor {name!r}: unsupported dtype {str(dtype)[:20]!r}")
    if not (isinstance(shape, list) and len(shape) <= MAX_RANK and all(_is_count(d) for d in shape)):
        raise BundleError(f"safetensors tensor {name!r}: shape must be a list of at most {MAX_RANK} sizes")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_count(o) for o in offsets)):
        raise BundleError(f"safetensors tensor {name!r}: data_offsets must be [begin, end]")
    info = TensorInfo(name, dtype, tuple(shape))
    if offsets[1] - offsets[0] != info.nbytes:
        raise BundleError(
            f"safetensors tensor {name!r}: {offsets[1] - offsets[0]} bytes do not fit shape {shape}"
        )
    return info, (offsets[0], offsets[1])


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**48


def _check_tiling(spans: list[tuple[int, int]], data_len: int) -> None:
    """The tensors' byte ranges must cover the data region exactly, in order, without overlap."""
    position = 0
    for begin, end in sorted(spans):
        if begin != position:
            raise BundleError("safetensors tensor data has gaps or overlaps")
        position = end
    if position != data_len:
        raise BundleError(f"safetensors data region is {data_len} bytes but tensors cover {position}")
