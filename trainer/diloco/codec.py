"""A contribution on the wire: safetensors of the compressed payload plus a JSON header in
``__metadata__["diloco"]``: format, round, base model hash, compression scheme and the shape list.

`decode_contribution` trusts nothing: size cap, safetensors table checks (protocol.safetensors_header)
before any tensor is loaded, then header fields, exact tensor names, dtypes, shapes, index ranges
and finiteness. Every refusal is a `ContributionRejected` whose ``reason`` is a short code the
validator records (docs/DILOCO.md lists them).
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass
from typing import Any

from protocol.errors import BundleError
from protocol.safetensors_header import read_tensor_table
from protocol.strict_json import loads as strict_loads
from trainer.diloco.compress import Payload, decompress
from trainer.diloco.params import Params

FORMAT = "magnet-diloco/1"
MAX_HEADER_BYTES = 1 << 20
MAX_TENSORS = 4096


class ContributionRejected(ValueError):
    """A contribution failed a check; ``reason`` is one of REASONS, the message says what failed."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


@dataclass(frozen=True)
class ContributionHeader:
    round: int
    base_model_sha256: str  # hex of the global model the miner started from
    scheme: str
    shapes: dict[str, tuple[int, ...]]

    def to_json(self) -> str:
        shapes = {n: list(s) for n, s in sorted(self.shapes.items())}
        body = {"format": FORMAT, "round": self.round, "base_model_sha256": self.base_model_sha256,
                "scheme": self.scheme, "shapes": shapes}  # fmt: skip
        return json.dumps(body, sort_keys=True)


@dataclass(frozen=True)
class Expected:
    """What the validator expects of this round's contributions."""

    round: int
    base_model_sha256: str
    scheme: str
    shapes: dict[str, tuple[int, ...]]
    max_bytes: int


def encode_contribution(payload: Payload, header: ContributionHeader) -> bytes:
    from safetensors.torch import save

    tensors = {n: payload[n].contiguous() for n in sorted(payload)}
    return save(tensors, metadata={"diloco": header.to_json()})


def decode_contribution(blob: bytes, exp: Expected) -> tuple[ContributionHeader, Params]:
    """The header and the dense pseudo-gradient, or ContributionRejected."""
    if len(blob) > exp.max_bytes:
        raise ContributionRejected("oversize", f"{len(blob)} bytes, the cap is {exp.max_bytes}")
    try:
        table = read_tensor_table(io.BytesIO(blob), len(blob), MAX_HEADER_BYTES, MAX_TENSORS)
        header = _parse_header(_metadata(blob))
    except (BundleError, ValueError, KeyError, TypeError) as exc:
        raise ContributionRejected("malformed", str(exc)) from exc
    _check_header(header, exp)
    wanted = _payload_dtypes(exp)
    got = {t.name: t.dtype for t in table}
    if got != wanted:
        bad = sorted(set(got.items()) ^ set(wanted.items()))[:3]
        raise ContributionRejected("wrong_shape", f"tensors differ from the model's, e.g. {bad}")
    for name, shape in exp.shapes.items():
        _check_part_shapes(name, math.prod(shape), {t.name: t.shape for t in table}, exp.scheme)
    from safetensors.torch import load

    payload = load(blob)
    _check_values(payload, exp)
    return header, decompress(payload, exp.shapes, exp.scheme)


def _metadata(blob: bytes) -> str:
    n = int.from_bytes(blob[:8], "little")
    head = strict_loads(blob[8 : 8 + n], "safetensors header", BundleError)
    return str(head["__metadata__"]["diloco"])


def _parse_header(text: str) -> ContributionHeader:
    body = strict_loads(text.encode("utf-8"), "diloco header", BundleError)
    if not isinstance(body, dict) or body.get("format") != FORMAT:
        raise ValueError(f"header format must be {FORMAT!r}")
    shapes = {str(n): tuple(_dim(d) for d in s) for n, s in body["shapes"].items()}
    rnd, base, scheme = body["round"], body["base_model_sha256"], body["scheme"]
    if not isinstance(rnd, int) or not isinstance(base, str) or not isinstance(scheme, str):
        raise ValueError("header round must be an integer, base_model_sha256 and scheme strings")
    return ContributionHeader(rnd, base, scheme, shapes)


def _dim(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"shape entries must be non-negative integers, got {value!r}")
    return value


def _check_header(h: ContributionHeader, exp: Expected) -> None:
    if h.base_model_sha256 != exp.base_model_sha256:
        raise ContributionRejected(
            "stale",
            f"made against model {h.base_model_sha256[:12]}, round {exp.round} uses "
            f"{exp.base_model_sha256[:12]}",
        )
    if h.round != exp.round:
        raise ContributionRejected("wrong_round", f"header says round {h.round}, expected {exp.round}")
    if h.scheme != exp.scheme:
        raise ContributionRejected("malformed", f"compression {h.scheme!r}, the round uses {exp.scheme!r}")
    if h.shapes != exp.shapes:
        raise ContributionRejected("wrong_shape", "the header's shape list differs from the model's")


def _payload_dtypes(exp: Expected) -> dict[str, str]:
    """{payload tensor name: safetensors dtype} a valid payload has, from the model's names."""
    parts = {
        "topk": {"idx": "I32", "val": "F16"}, "int8": {"q": "I8", "scale": "F32"},
        "int4": {"q4": "U8", "scale": "F32"}, "int2": {"q2": "U8", "scale": "F32"},
    }.get(exp.scheme, {})  # fmt: skip
    return {f"{name}:{key}": dtype for name in exp.shapes for key, dtype in parts.items()}


def _check_part_shapes(name: str, numel: int, shapes: dict[str, tuple[int, ...]], scheme: str) -> None:
    if scheme == "topk":
        idx, val = shapes[f"{name}:idx"], shapes[f"{name}:val"]
        ok = len(idx) == 1 and idx == val and 1 <= idx[0] <= numel
    elif scheme in ("int4", "int2"):
        # q4 [blocks, block / 2] or q2 [blocks, block / 4]: 2 or 4 entries per byte, just enough
        # blocks to hold numel entries
        key, n = ("q4", 2) if scheme == "int4" else ("q2", 4)
        q, scale = shapes[f"{name}:{key}"], shapes[f"{name}:scale"]
        per = n * q[1] if len(q) == 2 else 0
        ok = len(q) == 2 and per >= n and scale == (q[0],) and (q[0] - 1) * per < numel <= q[0] * per
    else:
        q, scale = shapes[f"{name}:q"], shapes[f"{name}:scale"]
        # q [blocks, block]: just enough blocks to hold numel entries
        ok = len(q) == 2 and q[1] >= 1 and scale == (q[0],) and (q[0] - 1) * q[1] < numel <= q[0] * q[1]
    if not ok:
        raise ContributionRejected("wrong_shape", f"payload of {name} has a wrong shape for {numel} entries")


def _check_values(payload: Payload, exp: Expected) -> None:
    import torch

    for name, shape in exp.shapes.items():
        if exp.scheme == "topk":
            idx, values = payload[f"{name}:idx"].long(), [payload[f"{name}:val"]]
            in_range = bool(((idx >= 0) & (idx < math.prod(shape))).all())
            if not in_range or bool((idx[1:] <= idx[:-1]).any()):
                raise ContributionRejected("malformed", f"{name}: indices out of range, repeated or unsorted")
        else:
            values = [payload[f"{name}:scale"]]
        for tensor in values:
            if not bool(torch.isfinite(tensor.float()).all()):
                raise ContributionRejected("non_finite", f"{name} has NaN or infinite values")
