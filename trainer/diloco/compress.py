"""Pseudo-gradient compression with error feedback.

The miner adds the residual of its last compression to the new pseudo-gradient before compressing,
and keeps what was not sent for next time, so nothing is lost for good, only delayed (the buffer
lives across rounds; `ErrorFeedback.save` / `load` keep it across restarts as safetensors).

Payload tensors per parameter ``name`` (what goes on the wire):
  * topk: ``name:idx`` int32 [k] (flat positions) and ``name:val`` float16 [k];
  * int8: ``name:q`` int8 [blocks, block] and ``name:scale`` float32 [blocks] (absmax / 127 per block);
  * int4: ``name:q4`` uint8 [blocks, block / 2], two values per byte (low nibble first, each stored
    as q + 8 with q in [-7, 7]) and ``name:scale`` float32 [blocks] (absmax / 7 per block);
  * int2: ``name:q2`` uint8 [blocks, block / 4], four 2-bit codes per byte (lowest bits first) for
    the levels INT2_LEVELS x scale (the Lloyd-Max quantizer of a Gaussian) and ``name:scale`` float32
    [blocks] (root mean square per block).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from trainer.diloco.config import CompressionConfig
from trainer.diloco.params import Params

if TYPE_CHECKING:
    import torch

Payload = dict[str, "torch.Tensor"]
INT2_LEVELS = (-1.510, -0.4528, 0.4528, 1.510)  # x the block's RMS: Lloyd-Max for a Gaussian


def compress(delta: Params, cfg: CompressionConfig) -> Payload:
    """The wire payload of ``delta`` (see the module docstring for names and shapes)."""
    out: Payload = {}
    for name, tensor in delta.items():
        if cfg.scheme == "topk":
            part = _topk(tensor, cfg.topk_fraction)
        elif cfg.scheme == "int4":
            part = _int4(tensor, cfg.block)
        elif cfg.scheme == "int2":
            part = _int2(tensor, cfg.block)
        else:
            part = _int8(tensor, cfg.block)
        out.update({f"{name}:{key}": value for key, value in part.items()})
    return out


def decompress(payload: Payload, shapes: dict[str, tuple[int, ...]], scheme: str) -> Params:
    """Dense float32 tensors from a payload already checked by `codec.decode_contribution`."""
    import torch

    dense: Params = {}
    for name, shape in shapes.items():
        numel = math.prod(shape)
        if scheme == "topk":
            flat = torch.zeros(numel, dtype=torch.float32)
            flat[payload[f"{name}:idx"].long()] = payload[f"{name}:val"].float()
        elif scheme == "int2":
            packed, scale = payload[f"{name}:q2"], payload[f"{name}:scale"]
            q = torch.stack([(packed >> s) & 0x03 for s in (0, 2, 4, 6)], dim=2).reshape(packed.shape[0], -1)
            levels = torch.tensor(INT2_LEVELS, dtype=torch.float32)
            flat = (levels[q.long()] * scale.float().unsqueeze(1)).reshape(-1)[:numel]
        elif scheme == "int4":
            packed, scale = payload[f"{name}:q4"], payload[f"{name}:scale"]
            q = torch.stack([packed & 0x0F, packed >> 4], dim=2).reshape(packed.shape[0], -1)
            flat = ((q.float() - 8.0) * scale.float().unsqueeze(1)).reshape(-1)[:numel]
        else:
            # q [blocks, block] x scale [blocks, 1] -> flat [blocks * block], padding cut off
            q, scale = payload[f"{name}:q"], payload[f"{name}:scale"]
            flat = (q.float() * scale.float().unsqueeze(1)).reshape(-1)[:numel]
        dense[name] = flat.view(shape)
    return dense


def _topk(tensor: torch.Tensor, fraction: float) -> Payload:
    flat = tensor.reshape(-1)
    k = max(1, math.ceil(fraction * flat.numel()))
    idx = flat.abs().topk(k, sorted=False).indices
    idx = idx.sort().values  # sorted positions: a canonical payload, and duplicates easy to spot
    return {"idx": idx.to(dtypes()["int32"]), "val": flat[idx].half()}


def _int8(tensor: torch.Tensor, block: int) -> Payload:
    import torch

    flat = tensor.reshape(-1).float()
    blocks = math.ceil(flat.numel() / block)
    padded = torch.zeros(blocks * block, dtype=torch.float32)
    padded[: flat.numel()] = flat
    rows = padded.view(blocks, block)  # [blocks, block]
    scale = rows.abs().amax(dim=1) / 127.0
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))
    q = torch.round(rows / safe.unsqueeze(1)).clamp(-127, 127).to(torch.int8)
    return {"q": q, "scale": scale}


def _int4(tensor: torch.Tensor, block: int) -> Payload:
    import torch

    flat = tensor.reshape(-1).float()
    blocks = math.ceil(flat.numel() / block)
    padded = torch.zeros(blocks * block, dtype=torch.float32)
    padded[: flat.numel()] = flat
    rows = padded.view(blocks, block)
    scale = rows.abs().amax(dim=1) / 7.0
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))
    q = (torch.round(rows / safe.unsqueeze(1)).clamp(-7, 7) + 8).to(torch.uint8)  # 1..15
    pairs = q.view(blocks, block // 2, 2)
    return {"q4": pairs[:, :, 0] | (pairs[:, :, 1] << 4), "scale": scale}


def _int2(tensor: torch.Tensor, block: int) -> Payload:
    import torch

    flat = tensor.reshape(-1).float()
    blocks = math.ceil(flat.numel() / block)
    padded = torch.zeros(blocks * block, dtype=torch.float32)
    padded[: flat.numel()] = flat
    rows = padded.view(blocks, block)
    scale = rows.square().mean(dim=1).sqrt()
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))
    bounds = torch.tensor(
        [-(INT2_LEVELS[3] + INT2_LEVELS[2]) / 2, 0.0, (INT2_LEVELS[3] + INT2_LEVELS[2]) / 2]
    )
    q = torch.bucketize(rows / safe.unsqueeze(1), bounds).to(torch.uint8)  # 0..3, nearest level
    quads = q.view(blocks, block // 4, 4)
    packed = quads[:, :, 0] | (quads[:, :, 1] << 2) | (quads[:, :, 2] << 4) | (quads[:, :, 3] << 6)
    return {"q2": packed, "scale": scale}


def dtypes() -> dict[str, torch.dtype]:
    import torch

    return {"int32": torch.int32, "float16": torch.float16, "int8": torch.int8, "float32": torch.float32}


class ErrorFeedback:
    """The residual buffer: compress(delta + residual), keep what was not sent."""

    def __init__(self, cfg: CompressionConfig) -> None:
        self.cfg = cfg
        self.residual: Params = {}

    def step(self, delta: Params) -> tuple[Payload, Params]:
        """(payload to send, the dense tensors the receiver will reconstruct)."""
        acc = {n: t + self.residual[n] if n in self.residual else t.clone() for n, t in delta.items()}
        payload = compress(acc, self.cfg)
        sent = decompress(payload, {n: tuple(t.shape) for n, t in acc.items()}, self.cfg.scheme)
        self.residual = {n: acc[n] - sent[n] for n in acc}
        return payload, sent

    def save(self, path: Path) -> None:
        from safetensors.torch import save_file

        save_file({n: t.contiguous() for n, t in self.residual.items()}, str(path))

    def load(self, path: Path) -> None:
        from safetensors.torch import load_file

        self.residual = dict(load_file(str(path)))
