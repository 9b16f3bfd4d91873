"""The `lora_targets` presets and the rule that resolves `auto` (torch-free: the miner's memory
estimate and the artifact check use it without loading a model).

- ``all-linear``: PEFT's preset, every linear layer except the output head;
- ``all-linear+head``: every linear layer including the head. A LoRA on the head moves the output
  distribution directly: on a small or barely trained base model that is most of what a short
  fine-tune can gain. With tied embeddings it changes only the head's output, never the input embedding;
- ``all-linear+embeddings``: every linear layer, plus the token embedding matrix trained in full as
  PEFT "trainable tokens" (a trained copy of every token id's row). With tied embeddings that one delta moves
  the input embedding and the head together, at full rank: a rank-r head LoRA cannot push down the
  thousands of tokens a new domain never uses (docs/TRAINER.md has the figures). Untied models also
  get a LoRA on the head. The delta has vocab x hidden parameters, so it is capped;
- ``auto``: the embeddings preset where its delta fits the cap, else ``all-linear+head``.
"""

from __future__ import annotations

ALL_LINEAR = "all-linear"
ALL_LINEAR_AND_HEAD = "all-linear+head"
ALL_LINEAR_AND_EMBEDDINGS = "all-linear+embeddings"
AUTO_TARGETS = "auto"
LORA_TARGET_PRESETS = (ALL_LINEAR, ALL_LINEAR_AND_HEAD, ALL_LINEAR_AND_EMBEDDINGS, AUTO_TARGETS)
# Trainable-tokens delta cap, in parameters (32 MiB in fp32): for example vocab 32k x hidden 256.
MAX_EMBEDDING_DELTA = 1 << 23


class TargetsError(ValueError):
    """A `lora_targets` value this model cannot have."""


def resolve_targets(targets: str, vocab: int, hidden: int) -> str:
    """`auto` -> the embeddings preset when vocab x hidden fits MAX_EMBEDDING_DELTA, else the head
    preset; the embeddings preset on a model too big for it is refused with what to use instead.
    Any other value is returned as it is."""
    fits = vocab * hidden <= MAX_EMBEDDING_DELTA
    if targets == AUTO_TARGETS:
        return ALL_LINEAR_AND_EMBEDDINGS if fits else ALL_LINEAR_AND_HEAD
    if targets == ALL_LINEAR_AND_EMBEDDINGS and not fits:
        raise TargetsError(
            f"lora_targets {ALL_LINEAR_AND_EMBEDDINGS!r} would train {vocab} x {hidden} embedding "
            f"parameters, over the cap of {MAX_EMBEDDING_DELTA}; "
            f"use {ALL_LINEAR_AND_HEAD!r} or {AUTO_TARGETS!r}"
        )
    return targets
