"""Export a ternary llama-style model to GGUF with llama.cpp's TQ2_0 / TQ1_0 types (`gguf` package).

llama.cpp runs these types on CPU. Its requirements shape this module: the `llama` architecture
(SiLU-gated MLP), every quantised row a multiple of 256 values (the TQ block size), Q and K rows
permuted from the HuggingFace rotary layout to the Meta layout llama.cpp expects, norms in F32.
Embeddings and the output head stay full precision (F16 here), as in BitNet b1.58.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import gguf
import numpy as np
import torch
from safetensors import safe_open

from trainer.bitnet.packing import WEIGHTS_FILE, unpack_ternary

QUANT_TYPES = {
    "TQ2_0": (gguf.GGMLQuantizationType.TQ2_0, gguf.LlamaFileType.MOSTLY_TQ2_0),
    "TQ1_0": (gguf.GGMLQuantizationType.TQ1_0, gguf.LlamaFileType.MOSTLY_TQ1_0),
    # The same ternary values stored as F16: the baseline llama.cpp decode speed is compared against.
    "F16": (gguf.GGMLQuantizationType.F16, gguf.LlamaFileType.MOSTLY_F16),
}
TQ_BLOCK = 256

# HuggingFace llama module name (inside `model.layers.N.`) -> GGUF tensor name (inside `blk.N.`).
_LAYER_LINEARS = {
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}
_LAYER_NORMS = {"input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm"}


class GGUFExportError(ValueError):
    """The model cannot be written as a llama.cpp ternary GGUF (architecture or widths)."""


def check_llama_cpp_compatible(config: Any) -> None:
    """Raise GGUFExportError unless llama.cpp can run this config with TQ types."""
    model_type = getattr(config, "model_type", None)
    if model_type != "llama":
        raise GGUFExportError(f"model_type {model_type!r}: only llama-style models export to GGUF")
    if getattr(config, "attention_bias", False) or getattr(config, "mlp_bias", False):
        raise GGUFExportError("llama.cpp's TQ export here handles bias-free linears only")
    if getattr(config, "hidden_act", "silu") != "silu":
        raise GGUFExportError("llama.cpp's llama architecture needs a SiLU-gated MLP (hidden_act 'silu')")
    for name in ("hidden_size", "intermediate_size"):
        width = getattr(config, name)
        if width % TQ_BLOCK:
            raise GGUFExportError(f"{name} {width} is not a multiple of {TQ_BLOCK} (the TQ block size)")


def meta_rotary_permute(weight: np.ndarray, n_head: int) -> np.ndarray:
    """Reorder Q/K rows from HF's rotate-half layout to llama.cpp's interleaved one.

    (n_head * head_dim, in) -> (n_head, 2, head_dim/2, in) -> swap the middle axes -> original shape.
    """
    rows = weight.shape[0]
    return (
        weight.reshape(n_head, 2, rows // n_head // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)
    )


def _rope_theta(config: Any) -> float:
    # transformers 5 keeps it in rope_parameters; older configs have a top-level rope_theta.
    params = getattr(config, "rope_parameters", None) or {}
    if params.get("rope_type", "default") != "default":
        raise GGUFExportError(f"rope_type {params['rope_type']!r} is not exported; use the default RoPE")
    return float(params.get("rope_theta") or getattr(config, "rope_theta", None) or 10000.0)


def _write_metadata(writer: gguf.GGUFWriter, config: Any, file_type: gguf.LlamaFileType, name: str) -> None:
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    writer.add_name(name)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(_rope_theta(config))
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_vocab_size(config.vocab_size)
    writer.add_file_type(file_type)


def _write_tokenizer(writer: gguf.GGUFWriter, tokenizer_dir: Path, vocab_size: int) -> None:
    """Byte-level BPE vocabulary and merges (llama.cpp's "gpt2" tokenizer model)."""
    try:
        vocab = gguf.vocab.BpeVocab(tokenizer_dir)
    except (FileNotFoundError, KeyError) as exc:
        raise GGUFExportError(
            f"{tokenizer_dir}: only byte-level BPE tokenizers (tokenizer.json) export to GGUF"
        ) from exc
    tokens, scores, types = [], [], []
    for text, score, token_type in vocab.all_tokens():
        tokens.append(text if isinstance(text, bytes) else str(text).encode("utf-8"))
        scores.append(score)
        types.append(token_type)
    # llama.cpp indexes the vocabulary by id up to n_vocab: pad rows the tokenizer does not use.
    for i in range(len(tokens), vocab_size):
        tokens.append(f"[PAD{i}]".encode())
        scores.append(-1000.0)
        types.append(gguf.TokenType.UNUSED)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    gguf.SpecialVocab(tokenizer_dir, load_merges=True, n_vocab=vocab_size).add_to_gguf(writer)


def _f16(tensor: torch.Tensor) -> np.ndarray:
    return tensor.float().numpy().astype(np.float16)


def _f32(tensor: torch.Tensor) -> np.ndarray:
    return tensor.float().numpy().astype(np.float32)


def _ternary_values(weights: Any, name: str) -> np.ndarray:
    """s * T from a packed tensor and its `weight_scale` (= 1 / s); exact in TQ blocks (absmax s or 0)."""
    ternary = unpack_ternary(weights.get_tensor(f"{name}.weight"), torch.float32)
    scale = 1.0 / weights.get_tensor(f"{name}.weight_scale").float().reshape(())
    values: np.ndarray = (ternary * scale).numpy()
    return values


def _write_layer(writer: gguf.GGUFWriter, weights: Any, config: Any, index: int, qtype: Any) -> None:
    prefix = f"model.layers.{index}"
    for hf_name, gguf_name in _LAYER_LINEARS.items():
        values = _ternary_values(weights, f"{prefix}.{hf_name}")
        if hf_name == "self_attn.q_proj":
            values = meta_rotary_permute(values, config.num_attention_heads)
        elif hf_name == "self_attn.k_proj":
            values = meta_rotary_permute(values, config.num_key_value_heads)
        name = f"blk.{index}.{gguf_name}.weight"
        if qtype == gguf.GGMLQuantizationType.F16:
            writer.add_tensor(name, values.astype(np.float16))
        else:
            writer.add_tensor(name, gguf.quants.quantize(values, qtype), raw_dtype=qtype)
    for hf_name, gguf_name in _LAYER_NORMS.items():
        writer.add_tensor(
            f"blk.{index}.{gguf_name}.weight", _f32(weights.get_tensor(f"{prefix}.{hf_name}.weight"))
        )


def export_gguf(artifact_dir: Path, out_path: Path, quant: str = "TQ2_0") -> Path:
    """Write the packed BitNet artifact in `artifact_dir` (see `packing`) as a llama.cpp GGUF file.

    The tokenizer is taken from `artifact_dir` too when it holds one (byte-level BPE only).
    """
    if quant not in QUANT_TYPES:
        raise GGUFExportError(f"quant {quant!r} is not one of {sorted(QUANT_TYPES)}")
    qtype, file_type = QUANT_TYPES[quant]
    config = SimpleNamespace(**json.loads((artifact_dir / "config.json").read_text(encoding="utf-8")))
    check_llama_cpp_compatible(config)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(out_path), "llama")
    _write_metadata(writer, config, file_type, name="magnet-bitnet")
    if (artifact_dir / "tokenizer.json").is_file():
        _write_tokenizer(writer, artifact_dir, config.vocab_size)
    with safe_open(str(artifact_dir / WEIGHTS_FILE), framework="pt") as weights:
        writer.add_tensor("token_embd.weight", _f16(weights.get_tensor("model.embed_tokens.weight")))
        for index in range(config.num_hidden_layers):
            _write_layer(writer, weights, config, index, qtype)
        writer.add_tensor("output_norm.weight", _f32(weights.get_tensor("model.norm.weight")))
        if not getattr(config, "tie_word_embeddings", False):
            writer.add_tensor("output.weight", _f16(weights.get_tensor("lm_head.weight")))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    writer.close()
    return out_path
