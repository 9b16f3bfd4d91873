"""Models that exist offline: tiny Llama-style builders for tests, the bundled pretrained base model,
and device / dtype selection.

Nothing here downloads anything. torch and transformers are imported inside functions so that
importing this module stays cheap (the node imports `bundled_base_model_dir` without torch).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from tokenizers import Tokenizer

REPO_ROOT = Path(__file__).resolve().parent.parent
BASE_MODEL_DIR = REPO_ROOT / "assets" / "base-model"

BOS_TOKEN = "<|bos|>"
EOS_TOKEN = "<|eos|>"
PAD_TOKEN = "<|pad|>"
SPECIAL_TOKENS = (BOS_TOKEN, EOS_TOKEN, PAD_TOKEN)

# A fixed corpus so the tiny test tokenizer is the same on every machine: the words of the prompt
# template, digits and arithmetic, and some ordinary English.
_TINY_CORPUS = (
    "### Instruction:\n### Input:\n### Response:\n",
    "Question: Answer: The answer is #### 0 1 2 3 4 5 6 7 8 9 10 12 24 48 100 + - * / = $ % .",
    "Write a function that returns the sum of two numbers. def add(a, b):\n    return a + b\n",
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May.",
    "How many clips did Natalia sell altogether in April and May? She sold 48/2 = 24 clips in May.",
    "The quick brown fox jumps over the lazy dog. A model learns from the data it is given.",
    "import os\nfor i in range(10):\n    print(i)\nclass Example:\n    pass\n",
)


def build_bpe_tokenizer(texts: Iterable[str], vocab_size: int) -> Tokenizer:
    """Train a byte-level BPE tokenizer (every byte is in the vocabulary, so no unknown tokens)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    min_vocab = 256 + len(SPECIAL_TOKENS)
    if vocab_size < min_vocab:
        raise ValueError(f"vocab_size must be at least {min_vocab} (256 bytes + special tokens)")
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return tokenizer


def save_tokenizer(tokenizer: Tokenizer, out_dir: Path, max_length: int) -> None:
    """Save as a fast tokenizer that `AutoTokenizer.from_pretrained(out_dir)` loads offline."""
    from transformers import PreTrainedTokenizerFast

    fast = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=tokenizer,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        model_max_length=max_length,
    )
    fast.save_pretrained(str(out_dir))


def tiny_llama(
    out_dir: str | Path,
    vocab: int = 512,
    hidden: int = 64,
    layers: int = 2,
    heads: int = 4,
    kv_heads: int | None = None,
    intermediate: int | None = None,
    max_positions: int = 512,
    seed: int = 0,
    corpus: Iterable[str] | None = None,
) -> Path:
    """Write a randomly initialised Llama-style model with its tokenizer to `out_dir`.

    `AutoModelForCausalLM.from_pretrained(out_dir)` and `AutoTokenizer.from_pretrained(out_dir)`
    load it offline. Deterministic for a given seed and corpus.
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_bpe_tokenizer(corpus if corpus is not None else _TINY_CORPUS, vocab)
    save_tokenizer(tokenizer, out, max_positions)
    config = LlamaConfig(
        vocab_size=tokenizer.get_vocab_size(),
        hidden_size=hidden,
        intermediate_size=intermediate or hidden * 4,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads or heads,
        max_position_embeddings=max_positions,
        bos_token_id=tokenizer.token_to_id(BOS_TOKEN),
        eos_token_id=tokenizer.token_to_id(EOS_TOKEN),
        pad_token_id=tokenizer.token_to_id(PAD_TOKEN),
        tie_word_embeddings=True,
    )
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = LlamaForCausalLM(config)
    finally:
        torch.random.set_rng_state(generator_state)
    model.save_pretrained(str(out))
    return out


def bundled_base_model_dir() -> Path:
    """The tiny pretrained base model shipped in assets/ (see assets/base-model/README.md)."""
    if not (BASE_MODEL_DIR / "config.json").is_file():
        raise FileNotFoundError(
            f"the bundled base model is missing from {BASE_MODEL_DIR}; "
            "rebuild it with `python scripts/make_base_model.py`"
        )
    return BASE_MODEL_DIR


def read_model_config(model_dir: str | Path) -> dict[str, Any]:
    """The base model's config.json as a dict (no torch), with a clear error when absent."""
    path = Path(model_dir) / "config.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} does not exist: base_model_dir must be a model directory") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON ({exc}); re-fetch the base model") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object")
    return data


def pick_device(requested: str = "auto") -> str:
    """ "cuda" / "mps" / "cpu": the requested device, or the best present one for "auto"."""
    import torch

    if requested == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was requested but torch sees no CUDA GPU; use 'auto' or 'cpu'")
    if requested == "mps" and not torch.backends.mps.is_available():
        raise RuntimeError("device 'mps' was requested but Apple MPS is unavailable; use 'auto' or 'cpu'")
    if requested not in ("cpu", "cuda", "mps"):
        raise ValueError(f"unknown device {requested!r}; use auto, cpu, cuda or mps")
    return requested


def pick_dtype(device: str) -> torch.dtype:
    """The compute dtype for training/evaluation on `device`.

    bf16 on CUDA GPUs that support it, else fp16 (with a grad scaler); fp32 on CPU (bf16 matmuls are
    slower than fp32 on CPUs without native bf16; the supervised loop autocasts to bf16 on those that
    have it, see trainer.hardware.cpu_has_native_bf16) and on MPS (its autocast coverage has been
    patchy; fp32 is safe). Evaluation on the CPU is always fp32.
    """
    import torch

    if device == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32
