"""Loading a base causal LM and wrapping it with a PEFT LoRA adapter.

Local directories only, safetensors only, `trust_remote_code` never. On CUDA the frozen base weights
are held in the compute dtype (bf16, or fp16) while the LoRA weights stay fp32 (PEFT's
`autocast_adapter_dtype`); QLoRA loads the base in 4-bit NF4 when CUDA and bitsandbytes exist.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import torch

from trainer.artifacts import ADAPTER_WEIGHTS
from trainer.models import read_model_config
from trainer.recipes.base import TrainerError
from trainer.targets import (
    ALL_LINEAR,
    ALL_LINEAR_AND_EMBEDDINGS,
    ALL_LINEAR_AND_HEAD,
    AUTO_TARGETS,
    TargetsError,
    resolve_targets,
)


def qlora_available() -> bool:
    return torch.cuda.is_available() and importlib.util.find_spec("bitsandbytes") is not None


def _check_model_dir(model_dir: str | Path) -> Path:
    path = Path(model_dir)
    read_model_config(path)  # clear error when config.json is absent or broken
    if any(path.glob("*.bin")) and not any(path.glob("*.safetensors")):
        raise TrainerError(f"{path} holds only pickle (.bin) weights; convert them to safetensors first")
    return path


def load_base_model(
    model_dir: str | Path, device: str, dtype: torch.dtype, quantize_4bit: bool = False
) -> Any:
    """The base causal LM on `device`, frozen weights in `dtype` (fp32 on CPU)."""
    from transformers import AutoModelForCausalLM

    path = _check_model_dir(model_dir)
    kwargs: dict[str, Any] = {"trust_remote_code": False, "use_safetensors": True, "dtype": dtype}
    if quantize_4bit:
        if not qlora_available():
            raise TrainerError("QLoRA (4-bit) needs a CUDA GPU and the bitsandbytes package; set qlora false")
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(  # type: ignore[no-untyped-call]
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_compute_dtype=dtype,
            bnb_4bit_use_double_quant=True,
        )
        kwargs["device_map"] = {"": 0}
    model: Any = AutoModelForCausalLM.from_pretrained(str(path), **kwargs)
    if not quantize_4bit:
        model.to(device)
    model.config.use_cache = False
    return model


def load_tokenizer(model_dir: str | Path) -> Any:
    from transformers import AutoTokenizer

    path = _check_model_dir(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(str(path), trust_remote_code=False)
    if tokenizer.pad_token_id is None:
        # Padding positions are never scored, so any id works; EOS is the usual stand-in.
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _embedding_shape(model: Any) -> tuple[int, int]:
    vocab, hidden = model.get_input_embeddings().weight.shape
    return int(vocab), int(hidden)


def _resolve(targets: str, model: Any) -> str:
    try:
        return resolve_targets(targets, *_embedding_shape(model))
    except TargetsError as exc:
        raise TrainerError(str(exc)) from None


def _tied_embeddings(model: Any) -> bool:
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    return bool(getattr(config, "tie_word_embeddings", False))


def target_modules(targets: str, model: Any = None) -> str | list[str]:
    """PEFT's ``target_modules`` for a ``lora_targets`` value: a preset or comma-separated names.

    The head and embeddings presets (and ``auto``) need the model: the names of all its linear layers
    (the head's included), or PEFT's all-linear beside trainable tokens with tied embeddings."""
    if targets == ALL_LINEAR:
        return ALL_LINEAR
    if targets in (ALL_LINEAR_AND_HEAD, ALL_LINEAR_AND_EMBEDDINGS, AUTO_TARGETS):
        if model is None:
            raise TrainerError(f"lora_targets {targets!r} is resolved against a loaded model")
        resolved = _resolve(targets, model)
        if resolved == ALL_LINEAR_AND_EMBEDDINGS and _tied_embeddings(model):
            return ALL_LINEAR  # the head moves with the trained embeddings
        linears = (name for name, m in model.named_modules() if isinstance(m, torch.nn.Linear))
        return sorted({name.rsplit(".", 1)[-1] for name in linears})
    return [name.strip() for name in targets.split(",") if name.strip()]


def trainable_tokens(targets: str, model: Any = None) -> list[int] | None:
    """PEFT's ``trainable_token_indices``: every token id for the embeddings preset, else None."""
    if targets not in (ALL_LINEAR_AND_EMBEDDINGS, AUTO_TARGETS) or model is None:
        return None
    if _resolve(targets, model) != ALL_LINEAR_AND_EMBEDDINGS:
        return None
    return list(range(_embedding_shape(model)[0]))


def lora_config(hp: dict[str, Any], model: Any = None) -> Any:
    from peft import LoraConfig

    targets = str(hp.get("lora_targets", ALL_LINEAR))
    return LoraConfig(
        r=int(hp["lora_r"]),
        lora_alpha=round(float(hp["lora_alpha"])),
        lora_dropout=float(hp["lora_dropout"]),
        target_modules=target_modules(targets, model),
        trainable_token_indices=trainable_tokens(targets, model),
        bias="none",
        task_type="CAUSAL_LM",
    )


def wrap_lora(
    model: Any,
    hp: dict[str, Any],
    gradient_checkpointing: bool = False,
    qlora: bool = False,
    init_adapter_dir: str | Path | None = None,
) -> Any:
    """A PEFT model with fresh LoRA weights (initialised from torch's global RNG), or with the weights
    of the adapter in `init_adapter_dir` (safetensors; every LoRA tensor must be there, shapes equal)."""
    from peft import get_peft_model, prepare_model_for_kbit_training

    if qlora:
        model = prepare_model_for_kbit_training(  # type: ignore[no-untyped-call]
            model, use_gradient_checkpointing=gradient_checkpointing
        )
    elif gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    peft_model = get_peft_model(model, lora_config(hp, model))
    if init_adapter_dir is not None:
        _load_initial_weights(peft_model, Path(init_adapter_dir))
    return peft_model


def _load_initial_weights(peft_model: Any, adapter_dir: Path) -> None:
    from peft import get_peft_model_state_dict, set_peft_model_state_dict
    from safetensors.torch import load_file

    path = adapter_dir / ADAPTER_WEIGHTS
    if not path.is_file():
        raise TrainerError(f"initial adapter {path} is missing; train from fresh weights instead")
    weights = load_file(str(path))
    expected = get_peft_model_state_dict(peft_model, save_embedding_layers=False)
    wrong = sorted(k for k, v in expected.items() if k not in weights or weights[k].shape != v.shape)
    if wrong or len(weights) != len(expected):
        raise TrainerError(
            f"initial adapter {adapter_dir} does not match this job's LoRA (rank, targets): "
            f"{len(wrong)} of {len(expected)} tensors missing or shaped differently"
        )
    set_peft_model_state_dict(peft_model, weights)


def load_adapter(model: Any, adapter_dir: str | Path) -> Any:
    """Attach a saved adapter (already checked by `trainer.artifacts`) for evaluation."""
    from peft import PeftModel

    return PeftModel.from_pretrained(model, str(adapter_dir), is_trainable=False)
