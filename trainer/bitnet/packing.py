"""2-bit packing of ternary weights, in the layout transformers' BitNet loader reads.

A ternary matrix T (out, in) with values {-1, 0, 1} is stored as uint8 P (out / 4, in): row r of
block i (rows i*out/4 .. (i+1)*out/4) sits in bits 2i..2i+1 of P[r], as T + 1 in {0, 1, 2}.
The scale is stored as `weight_scale` = 1 / s, because transformers' `BitLinear` divides its output
by it. A directory written by `save_packed_model` therefore loads with
`AutoModelForCausalLM.from_pretrained` (quantization_config quant_method "bitnet", offline).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

from trainer.bitnet.layers import bit_linears, ternarize

VALUES_PER_BYTE = 4
WEIGHTS_FILE = "model.safetensors"

# The quantization_config that makes transformers build its packed `BitLinear` on load.
HF_BITNET_QUANT_CONFIG: dict[str, Any] = {
    "quant_method": "bitnet",
    "linear_class": "bitlinear",
    "quantization_mode": "offline",
    "modules_to_not_convert": ["lm_head"],
    "use_rms_norm": False,
}


def pack_ternary(ternary: torch.Tensor) -> torch.Tensor:
    """uint8 (out/4, in) from int8 ternary (out, in); out must be a multiple of 4."""
    out_features = ternary.shape[0]
    if out_features % VALUES_PER_BYTE:
        raise ValueError(f"out_features {out_features} is not a multiple of {VALUES_PER_BYTE}")
    if ternary.abs().max() > 1:
        raise ValueError("pack_ternary takes values in {-1, 0, 1} only")
    codes = (ternary.to(torch.int16) + 1).to(torch.uint8)
    # (out, in) -> (4, out/4, in): block i holds rows i*out/4 .. (i+1)*out/4 - 1.
    blocks = codes.reshape(VALUES_PER_BYTE, out_features // VALUES_PER_BYTE, *ternary.shape[1:])
    packed = torch.zeros_like(blocks[0])
    for i in range(VALUES_PER_BYTE):
        packed |= blocks[i] << (2 * i)
    return packed


def unpack_ternary(packed: torch.Tensor, dtype: torch.dtype = torch.int8) -> torch.Tensor:
    """The inverse of `pack_ternary`: (out/4, in) uint8 -> (out, in) ternary in `dtype`."""
    blocks = [((packed >> (2 * i)) & 0x03).to(torch.int16) - 1 for i in range(VALUES_PER_BYTE)]
    return torch.cat(blocks, dim=0).to(dtype)


def packed_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's state with every BitLinear weight ternarised and packed; the rest as is."""
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    for name, layer in bit_linears(model):
        ternary, scale = ternarize(layer.weight)
        state[f"{name}.weight"] = pack_ternary(ternary)
        state[f"{name}.weight_scale"] = (1.0 / scale).reshape(1).to(layer.weight.dtype)
    return state


def save_packed_model(model: Any, out_dir: Path) -> Path:
    """Write config.json (with the BitNet quantization_config) and packed safetensors to `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    state = packed_state_dict(model)
    if getattr(model.config, "tie_word_embeddings", False):
        state.pop("lm_head.weight", None)  # tied: transformers restores it from the embeddings
    save_file(state, str(out_dir / WEIGHTS_FILE), metadata={"format": "pt"})
    config = model.config.to_dict()
    config["quantization_config"] = dict(HF_BITNET_QUANT_CONFIG)
    config.pop("dtype", None)
    config["torch_dtype"] = "float32"
    (out_dir / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
    return out_dir / WEIGHTS_FILE


def dense_state_dict(weights_path: Path, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """A packed checkpoint's state with every ternary weight expanded to s * T (plain linear weights)."""
    from safetensors import safe_open

    state: dict[str, torch.Tensor] = {}
    with safe_open(str(weights_path), framework="pt") as weights:
        names = list(weights.keys())
        for name in names:
            if name.endswith(".weight_scale"):
                continue
            tensor = weights.get_tensor(name)
            if tensor.dtype == torch.uint8:
                scale = 1.0 / weights.get_tensor(name + "_scale").float().reshape(())
                tensor = unpack_ternary(tensor, torch.float32) * scale
            state[name] = tensor.to(dtype)
    return state
