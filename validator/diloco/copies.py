"""Copy detection: a pseudo-gradient nearly parallel to an earlier one is a copy.

Cosine similarity ignores scale, so a scaled copy is caught, and a light perturbation barely moves
it. Honest miners on different shards share a common direction early in training, but far from
parallel (cosine 0.04-0.31 measured on the test world); the threshold (0.9) sits well above.
The earliest commitment is credited: contributions are compared in commitment order and only the
later one is flagged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from trainer.diloco.params import Params

if TYPE_CHECKING:
    import torch

DEFAULT_THRESHOLD = 0.9


def flatten(delta: Params) -> torch.Tensor:
    """All tensors in name order as one float32 vector [total numel]."""
    import torch

    return torch.cat([delta[n].reshape(-1).float() for n in sorted(delta)])


def find_copies(
    ordered: Sequence[tuple[str, Params]], threshold: float = DEFAULT_THRESHOLD
) -> dict[str, tuple[str, float]]:
    """{later miner: (earlier miner it copies, cosine)} for ``ordered`` = (miner, delta), earliest first."""

    flags: dict[str, tuple[str, float]] = {}
    kept: list[tuple[str, torch.Tensor]] = []
    for miner, delta in ordered:
        vec = flatten(delta)
        unit = vec / vec.norm().clamp_min(1e-30)
        best = max(((m, float(unit @ u)) for m, u in kept), key=lambda x: x[1], default=None)
        if best is not None and best[1] >= threshold:
            flags[miner] = best
        else:
            kept.append((miner, unit))  # a copy is not an original others can be compared with
    return flags
