"""Error-driven iteration: what to change after an out-of-memory error or a divergence.

An OOM says something about this machine, not about the configuration, so the lesson (a micro-batch
cap, gradient checkpointing) is kept in a `Layout` and applied to every later run, with gradient
accumulation raised so the effective batch, and hence the configuration being judged, stays the same.
A divergence says the learning rate is too high for this configuration: only that run is retried.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from trainer.autoresearch.space import Knobs


@dataclass
class Layout:
    """Memory limits learned from OOMs during this search."""

    micro_batch_cap: int | None = None
    checkpointing: bool = False


def apply_layout(params: dict[str, Any], knobs: Knobs, layout: Layout) -> dict[str, Any]:
    """`params` fitted to the layout: micro-batch capped, accumulation raised to keep the batch."""
    fitted = dict(params)
    micro = _int(fitted, knobs.micro_batch)
    if micro is not None and layout.micro_batch_cap is not None and micro > layout.micro_batch_cap:
        assert knobs.micro_batch is not None
        fitted[knobs.micro_batch] = layout.micro_batch_cap
        accum = _int(fitted, knobs.accum)
        if accum is not None and knobs.accum is not None:
            fitted[knobs.accum] = accum * math.ceil(micro / layout.micro_batch_cap)
    if layout.checkpointing and knobs.checkpointing is not None:
        fitted[knobs.checkpointing] = True
    return fitted


def shrink_after_oom(params: dict[str, Any], knobs: Knobs, layout: Layout) -> str | None:
    """Tighten the layout after an OOM at `params`; a description of the change, or None when there
    is nothing left to shrink (micro-batch 1 with checkpointing already on)."""
    micro = _int(params, knobs.micro_batch)
    if micro is not None and micro > 1:
        layout.micro_batch_cap = micro // 2
        return f"out of memory: micro-batch {micro} -> {micro // 2}"
    if knobs.checkpointing is not None and not layout.checkpointing:
        layout.checkpointing = True
        return "out of memory at micro-batch 1: gradient checkpointing on"
    return None


def lower_lr(params: dict[str, Any], knobs: Knobs, factor: float) -> tuple[dict[str, Any], str] | None:
    """`params` with the learning rate times `factor` (< 1), or None when the recipe has none."""
    if knobs.lr is None or not isinstance(params.get(knobs.lr), int | float):
        return None
    old = float(params[knobs.lr])
    lowered = {**params, knobs.lr: old * factor}
    return lowered, f"diverged: {knobs.lr} {old:.3g} -> {old * factor:.3g}"


def examples_per_step(params: dict[str, Any], knobs: Knobs) -> int:
    """Training examples per optimizer step (micro-batch x accumulation; 1 where the recipe has neither)."""
    micro = _int(params, knobs.micro_batch) or 1
    accum = _int(params, knobs.accum) or 1
    return max(1, micro * accum)


def _int(params: dict[str, Any], name: str | None) -> int | None:
    if name is None:
        return None
    value = params.get(name)
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
