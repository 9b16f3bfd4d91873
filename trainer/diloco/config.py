"""Settings of a DiLoCo round shared by miner and validator (one object, not loose parameters)."""

from __future__ import annotations

from dataclasses import dataclass

COMPRESSIONS = ("topk", "int8")


@dataclass(frozen=True)
class InnerConfig:
    """What a miner runs in one round."""

    inner_steps: int = 10  # H: AdamW steps between two merges
    inner_lr: float = 3e-3
    batch_size: int = 8  # windows per step
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    keep_adam_state: bool = False  # carry the miner's AdamW moments into its next round (as DiLoCo does)

    def __post_init__(self) -> None:
        if self.inner_steps < 1 or self.batch_size < 1:
            raise ValueError("InnerConfig: inner_steps and batch_size must be at least 1")
        if not self.inner_lr > 0:
            raise ValueError("InnerConfig: inner_lr must be positive")


@dataclass(frozen=True)
class CompressionConfig:
    """How a pseudo-gradient is compressed; the residual is kept (error feedback)."""

    scheme: str = "int8"  # "topk": largest |values| per tensor; "int8": blockwise absmax quantisation
    topk_fraction: float = 0.1  # share of each tensor's entries sent by "topk"
    block: int = 256  # entries per int8 scale

    def __post_init__(self) -> None:
        if self.scheme not in COMPRESSIONS:
            raise ValueError(f"CompressionConfig: scheme must be one of {COMPRESSIONS}, got {self.scheme!r}")
        if not 0 < self.topk_fraction <= 1:
            raise ValueError("CompressionConfig: topk_fraction must be in (0, 1]")
        if self.block < 1:
            raise ValueError("CompressionConfig: block must be at least 1")
