"""Settings of a DiLoCo round shared by miner and validator (one object, not loose parameters)."""

from __future__ import annotations

import math
from dataclasses import dataclass

COMPRESSIONS = ("topk", "int8", "int4", "int2")
BASE_MODELS = ("tiny-world",)  # what ``[diloco] base_model`` may name so far (trainer.diloco.world)


def check_base_model(name: str) -> None:
    if name not in BASE_MODELS:
        raise ValueError(f"[diloco] base_model {name!r} is not supported; use one of {BASE_MODELS}")


@dataclass(frozen=True)
class InnerConfig:
    """What a miner runs in one round."""

    inner_steps: int = 10  # H: AdamW steps between two merges
    inner_lr: float = 3e-3
    batch_size: int = 8  # windows per step
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    adam_betas: tuple[float, float] = (0.8, 0.999)  # beta1 0.8 measured better than 0.9 in bench/diloco.py
    keep_adam_state: bool = True  # carry the miner's AdamW moments into its next round (as DiLoCo does)
    # inner lr schedule over the whole run, counted in inner steps ((round - 1) * H + step):
    # linear warm-up over ``warmup_steps``, then cosine decay to ``min_lr_ratio * inner_lr`` at
    # ``total_steps``; ``total_steps`` 0 keeps the lr constant after the warm-up
    warmup_steps: int = 0
    total_steps: int = 0
    min_lr_ratio: float = 0.1

    def lr_at(self, step: int) -> float:
        """The inner lr at global inner step ``step`` (0-based), the same rule for every miner."""
        if step < self.warmup_steps:
            return self.inner_lr * (step + 1) / self.warmup_steps
        if self.total_steps <= self.warmup_steps:
            return self.inner_lr
        progress = min(1.0, (step - self.warmup_steps) / (self.total_steps - self.warmup_steps))
        cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
        return self.inner_lr * (self.min_lr_ratio + (1.0 - self.min_lr_ratio) * cosine)

    def __post_init__(self) -> None:
        if self.inner_steps < 1 or self.batch_size < 1:
            raise ValueError("InnerConfig: inner_steps and batch_size must be at least 1")
        if not self.inner_lr > 0:
            raise ValueError("InnerConfig: inner_lr must be positive")
        if self.warmup_steps < 0 or self.total_steps < 0 or not 0 <= self.min_lr_ratio <= 1:
            raise ValueError("InnerConfig: warmup_steps, total_steps >= 0 and min_lr_ratio in [0, 1]")


@dataclass(frozen=True)
class CompressionConfig:
    """How a pseudo-gradient is compressed; the residual is kept (error feedback)."""

    # "topk": largest |values| per tensor; "int8" / "int4": blockwise absmax quantisation;
    # "int2": four levels x the block's RMS (2 bits an entry)
    scheme: str = "int8"
    topk_fraction: float = 0.1  # share of each tensor's entries sent by "topk"
    block: int = 256  # entries per int8 / int4 scale

    def __post_init__(self) -> None:
        if self.scheme not in COMPRESSIONS:
            raise ValueError(f"CompressionConfig: scheme must be one of {COMPRESSIONS}, got {self.scheme!r}")
        if not 0 < self.topk_fraction <= 1:
            raise ValueError("CompressionConfig: topk_fraction must be in (0, 1]")
        packed = {"int4": 2, "int2": 4}.get(self.scheme, 1)  # entries per byte
        if self.block < 1 or self.block % packed:
            raise ValueError("CompressionConfig: block must be at least 1 (even for int4, x4 for int2)")
