"""Masked test loss, shared by miner and validator.

The score is the mean cross-entropy (nats) over every scored token of the evaluation set: prompt
tokens are masked exactly as `trainer.data.tokenize_for_sft` masks them. Batching is deterministic
(file order, fixed batch size, right padding with an attention mask), and the token-weighted mean
does not depend on how examples fall into batches beyond float rounding.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from trainer.data import IGNORE_INDEX, SFTExample, tokenize_for_sft
from trainer.packing import collate_padded

EVAL_BATCH_SIZE = 8


@torch.no_grad()
def masked_test_loss(
    model: Any,
    tokenizer: Any,
    examples: Sequence[SFTExample],
    max_length: int,
    device: str,
    dtype: torch.dtype = torch.float32,
    batch_size: int = EVAL_BATCH_SIZE,
) -> dict[str, float]:
    """{"loss": mean nats per scored token, "perplexity", "scored_tokens", "examples"}."""
    if not examples:
        raise ValueError("no evaluation examples")
    tokenized = [tokenize_for_sft(tokenizer, ex, max_length) for ex in examples]
    was_training = model.training
    model.eval()
    total_nats, total_tokens = 0.0, 0
    autocast = device == "cuda" and dtype != torch.float32
    for start in range(0, len(tokenized), batch_size):
        batch = collate_padded(tokenized[start : start + batch_size], tokenizer.pad_token_id)
        batch = {k: v.to(device) for k, v in batch.items()}
        with torch.autocast("cuda", dtype=dtype, enabled=autocast):
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        # Position t predicts token t+1: logits [B, T-1, V] against labels [B, T-1].
        shifted_logits = logits[:, :-1, :].float()
        shifted_labels = batch["labels"][:, 1:]
        nats = torch.nn.functional.cross_entropy(
            shifted_logits.reshape(-1, shifted_logits.shape[-1]),
            shifted_labels.reshape(-1),
            ignore_index=IGNORE_INDEX,
            reduction="sum",
        )
        total_nats += float(nats)
        total_tokens += int((shifted_labels != IGNORE_INDEX).sum())
    if was_training:
        model.train()
    if total_tokens == 0:
        raise ValueError("the evaluation set has no scored tokens (every response was truncated away)")
    loss = total_nats / total_tokens
    return {
        "loss": loss,
        "perplexity": math.exp(min(loss, 50.0)),
        "scored_tokens": float(total_tokens),
        "examples": float(len(examples)),
    }
