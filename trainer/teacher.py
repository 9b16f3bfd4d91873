"""A teacher model answering prompts: the validator's teacher synthetic generator runs this in its
evaluation sandbox (validator/sandbox_child.py, mode ``teach``).

The teacher is a local causal LM directory (safetensors only, no remote code: ``trainer.lora``'s
loader). Each prompt is rendered exactly as training renders it (``trainer.data.instruct_prompt``: BOS +
the Alpaca-style prompt), answered greedily (no sampling, so the same prompts give the same answers
on the same software) up to ``max_new_tokens`` new tokens or EOS, in batches with left padding.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from trainer.lora import load_base_model, load_tokenizer


@torch.no_grad()
def teach(
    model_dir: str,
    prompts: Sequence[str],
    max_new_tokens: int,
    batch_size: int = 8,
    device: str = "cpu",
) -> list[str]:
    """The teacher's greedy answer to each prompt (its new tokens decoded, special tokens dropped)."""
    if max_new_tokens < 1 or batch_size < 1:
        raise ValueError("max_new_tokens and batch_size must be at least 1")
    tokenizer = load_tokenizer(model_dir)
    model = load_base_model(model_dir, device, torch.float32)
    model.eval()
    model.config.use_cache = True
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    pad = int(tokenizer.pad_token_id)
    answers: list[str] = []
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start : start + batch_size]
        batch = [bos + tokenizer.encode(p, add_special_tokens=False) for p in chunk]
        width = max(len(ids) for ids in batch)
        input_ids = torch.tensor([[pad] * (width - len(ids)) + ids for ids in batch], device=device)
        mask = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in batch], device=device)
        out = model.generate(
            input_ids=input_ids,
            attention_mask=mask,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=pad,
            eos_token_id=tokenizer.eos_token_id,
        )
        for row in out[:, width:].tolist():
            answers.append(tokenizer.decode(row, skip_special_tokens=True).strip())
    return answers
