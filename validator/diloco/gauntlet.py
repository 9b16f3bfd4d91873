"""Gauntlet-style scoring of one pseudo-gradient: how much does applying it lower the loss?

Each contribution is applied alone to the global model (theta - scale * delta, scale 0.5 by default;
with scale 1 this is the miner's own local model) and the mean loss is measured before and after on
three batches:
  * the validator's own held-out batch (every domain): general value;
  * the miner's assigned shard: did it learn its data;
  * a random other shard the miner could not predict: the control.
score = gain_val + gain_own (gains in nats, before minus after). Rules (docs/DILOCO.md):
  * ``wrong_shard``: gain_own - gain_random <= min_advantage while gain_random clears the floor
    below: the update learned something, but not the shard it was given (checked first);
  * ``no_improvement``: gain_own <= max(min_gain, min_gain_share x the round's median gain_own)
    (noise, a no-op, a harmful update). Relative to the round because a random perturbation of a
    trained model can lower its loss a little by chance (measured: 0.025 nats where honest updates
    gave 0.4-0.6); this assumes most contributors of a round are honest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from trainer.diloco.params import Params, eval_loss

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class GauntletConfig:
    # how much of the pseudo-gradient is applied for scoring: at 1.0 (the miner's local model) honest
    # miners with H=10 were rejected in late rounds (their local model overshoots what the merge
    # keeps of it); at 0.5 every honest one passed and the final loss improved (docs/DILOCO.md)
    eval_scale: float = 0.5
    min_gain: float = 0.0  # own-shard gain (nats) a contribution must exceed
    min_gain_share: float = 0.2  # ... and this share of the round's median own-shard gain
    eval_windows: int = 32  # windows sampled from a shard for scoring (a batch, not the whole shard)
    min_advantage: float = 0.0  # own-shard gain minus random-shard gain it must exceed


@dataclass(frozen=True)
class Gains:
    val: float
    own: float
    random: float

    @property
    def score(self) -> float:
        return self.val + self.own

    @property
    def advantage(self) -> float:
        return self.own - self.random


class LossCache:
    """Losses of the unchanged global model per batch, computed once per round."""

    def __init__(self, model: torch.nn.Module, params: Params) -> None:
        self.model, self.params = model, params
        self._before: dict[str, float] = {}

    def before(self, key: str, windows: torch.Tensor) -> float:
        if key not in self._before:
            self._before[key] = eval_loss(self.model, self.params, windows)
        return self._before[key]


def measure(
    cache: LossCache, delta: Params, batches: dict[str, tuple[str, torch.Tensor]], cfg: GauntletConfig
) -> Gains:
    """Gains on ``batches`` = {"val"|"own"|"random": (cache key, windows [n, seq_len])}."""
    applied = {n: t - cfg.eval_scale * delta[n] for n, t in cache.params.items()}
    gain = {
        role: cache.before(key, w) - eval_loss(cache.model, applied, w) for role, (key, w) in batches.items()
    }
    return Gains(gain["val"], gain["own"], gain["random"])


def verdict(gains: Gains, cfg: GauntletConfig, median_own: float) -> tuple[str, str]:
    """("", "") when accepted, else (reason code, detail); ``median_own``: the round's median gain_own."""
    floor = max(cfg.min_gain, cfg.min_gain_share * median_own)
    if gains.advantage <= cfg.min_advantage and gains.random > floor:
        return "wrong_shard", (
            f"own-shard gain {gains.own:.4f} is not above the random shard's {gains.random:.4f}"
        )
    if gains.own <= floor:
        return "no_improvement", f"own-shard loss fell by {gains.own:.4f} nats (needs > {floor:.4f})"
    return "", ""
