"""Building, loading and checking BitNet b1.58 llama-style models.

Two architectures: "base" keeps the base model's widths; "llama_cpp" rounds the hidden and MLP
widths up to multiples of 256 so llama.cpp's TQ2_0 / TQ1_0 kernels can run the export. Two starts:
"pretrained" copies the base model's full-precision weights (when the widths match) and ramps
quantisation in; "scratch" initialises randomly and trains ternary from the first step.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from trainer.bitnet.gguf_export import TQ_BLOCK
from trainer.bitnet.layers import convert_to_bitnet
from trainer.bitnet.packing import HF_BITNET_QUANT_CONFIG, VALUES_PER_BYTE, WEIGHTS_FILE

ARCHITECTURES = ("base", "llama_cpp")
INITS = ("pretrained", "scratch")
_LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


class BitnetModelError(ValueError):
    """A base model or artifact does not fit the BitNet recipe (architecture, shapes, config)."""


def round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def bitnet_config_dict(base_config: dict[str, Any], architecture: str) -> dict[str, Any]:
    """The trained model's config: the base's, with widths rounded up for llama.cpp when asked."""
    if architecture not in ARCHITECTURES:
        raise BitnetModelError(f"architecture {architecture!r} is not one of {ARCHITECTURES}")
    if base_config.get("model_type") != "llama":
        raise BitnetModelError(
            f"base model_type {base_config.get('model_type')!r}: bitnet needs a llama model"
        )
    config = {k: v for k, v in base_config.items() if k not in ("quantization_config", "auto_map")}
    if architecture == "llama_cpp":
        heads = config["num_attention_heads"]
        config["hidden_size"] = round_up(config["hidden_size"], TQ_BLOCK)
        config["intermediate_size"] = round_up(config["intermediate_size"], TQ_BLOCK)
        config["head_dim"] = config["hidden_size"] // heads
        config["hidden_act"] = "silu"
    return config


def reuses_base_weights(base_dir: Path, architecture: str) -> bool:
    """Whether the base's weights fit the architecture (llama_cpp widths may differ from the base's)."""
    base_config = json.loads((base_dir / "config.json").read_text(encoding="utf-8"))
    config = bitnet_config_dict(base_config, architecture)
    keys = ("hidden_size", "intermediate_size", "head_dim")
    return all(config.get(k) == base_config.get(k) for k in keys)


def build_model(base_dir: Path, architecture: str, init: str, seed: int) -> Any:
    """A LlamaForCausalLM with BitLinear decoder layers (full-precision latent weights)."""
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

    if init not in INITS:
        raise BitnetModelError(f"init {init!r} is not one of {INITS}")
    base_config = json.loads((base_dir / "config.json").read_text(encoding="utf-8"))
    config = bitnet_config_dict(base_config, architecture)
    model: Any
    if init == "pretrained" and reuses_base_weights(base_dir, architecture):
        model = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32)
    else:
        # Widths changed (or scratch asked): the base weights cannot be reused, start from random.
        torch.manual_seed(seed)
        model = LlamaForCausalLM(LlamaConfig(**config))
    convert_to_bitnet(model)
    return model


def expected_tensor_shapes(config: dict[str, Any]) -> dict[str, tuple[str, tuple[int, ...]]]:
    """name -> (safetensors dtype, shape) of a packed artifact for `config` (see `packing`)."""
    hidden, inter = config["hidden_size"], config["intermediate_size"]
    heads, kv_heads = (
        config["num_attention_heads"],
        config.get("num_key_value_heads") or config["num_attention_heads"],
    )
    head_dim = config.get("head_dim") or hidden // heads
    out_in = {
        "q_proj": (heads * head_dim, hidden),
        "k_proj": (kv_heads * head_dim, hidden),
        "v_proj": (kv_heads * head_dim, hidden),
        "o_proj": (hidden, heads * head_dim),
        "gate_proj": (inter, hidden),
        "up_proj": (inter, hidden),
        "down_proj": (hidden, inter),
    }
    shapes: dict[str, tuple[str, tuple[int, ...]]] = {
        "model.embed_tokens.weight": ("F32", (config["vocab_size"], hidden))
    }
    shapes["model.norm.weight"] = ("F32", (hidden,))
    if not config.get("tie_word_embeddings", False):
        shapes["lm_head.weight"] = ("F32", (config["vocab_size"], hidden))
    for i in range(config["num_hidden_layers"]):
        prefix = f"model.layers.{i}"
        shapes[f"{prefix}.input_layernorm.weight"] = ("F32", (hidden,))
        shapes[f"{prefix}.post_attention_layernorm.weight"] = ("F32", (hidden,))
        for name in _LINEARS:
            out_features, in_features = out_in[name]
            group = "self_attn" if name.endswith(("q_proj", "k_proj", "v_proj", "o_proj")) else "mlp"
            shapes[f"{prefix}.{group}.{name}.weight"] = ("U8", (out_features // VALUES_PER_BYTE, in_features))
            shapes[f"{prefix}.{group}.{name}.weight_scale"] = ("F32", (1,))
    return shapes


def check_artifact_config(artifact_config: dict[str, Any], base_config: dict[str, Any]) -> str:
    """Which architecture the artifact's config.json is; raise unless it is one the recipe makes."""
    if artifact_config.get("quantization_config") != HF_BITNET_QUANT_CONFIG:
        raise BitnetModelError("artifact config.json lacks the packed BitNet quantization_config")
    if artifact_config.get("auto_map"):
        raise BitnetModelError("artifact config.json names remote code (auto_map); refused")
    for architecture in ARCHITECTURES:
        expected = bitnet_config_dict(base_config, architecture)
        keys = (
            "hidden_size",
            "intermediate_size",
            "num_hidden_layers",
            "num_attention_heads",
            "num_key_value_heads",
            "vocab_size",
            "model_type",
            "tie_word_embeddings",
        )
        if all(artifact_config.get(k) == expected.get(k) for k in keys):
            return architecture
    raise BitnetModelError(
        "artifact config.json widths match neither the base model nor its llama_cpp variant"
    )


def load_artifact(artifact_dir: Path, device: str) -> Any:
    """The packed artifact through transformers' own BitNet loader (ternary weights, int8 activations)."""
    from transformers import AutoModelForCausalLM

    # transformers' BitLinear helpers are wrapped in torch.compile; compiling them on CPU takes
    # minutes and needs a C compiler, so run them eagerly.
    torch._dynamo.config.disable = True
    if not (artifact_dir / WEIGHTS_FILE).is_file():
        raise BitnetModelError(f"{artifact_dir} holds no {WEIGHTS_FILE}")
    model: Any = AutoModelForCausalLM.from_pretrained(str(artifact_dir), trust_remote_code=False)
    return model.to(device)
