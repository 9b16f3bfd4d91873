"""Time allowed for a task, and the join / commit / reveal deadlines derived from it.

Nominal training hours = (hours of the dataset-size bin) x (factor of the model-size bin), capped
at ``max_task_hours``; the time actually allowed is that x 3600 x ``time_scale``.

Bins (all in ``ValidatorConfig``, so an operator can change them):

* dataset size, rows -> hours: < 10k: 2, < 25k: 3, < 50k: 4, < 100k: 5, else 7. From the
  Gradients validator (G.O.D ``TEXT_DATASET_BINS_TO_TRAINING_HOURS_RANGE``: 10k-25k rows 3-6 h,
  25k-50k 4-8 h, 50k-500k 5-9 h, 100k-500k 7-10 h; ``MIN_TEXT_COMPETITION_HOURS`` 2,
  ``MAX_TEXT_COMPETITION_HOURS`` 12). We take the lower end of each range, since a validator here
  picks one value rather than drawing from the range, the minimum 2 h below 10k rows (a bin
  G.O.D had commented out) and a separate 100k bin where G.O.D's ranges overlap.
* model size, billions of parameters -> factor: < 1: 1.0, < 4: 1.25, < 8: 1.5, < 16: 2.0, else 3.0.
  These are ours, not the paper's: Gradients fixes hours from the data alone and accounts for
  model size in the reward (task weight grows with sqrt(size)); we also give bigger models more
  time, in steps no larger than that sqrt growth.

``time_scale`` is 1.0 on the real network; ``DEVNET_TIME_SCALE`` (1/120) makes the smallest task
(2 h) last one minute.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from validator.config import ValidatorConfig

DEVNET_TIME_SCALE = 1.0 / 120.0


def _bin(bounds: list[float], values: list[float], x: float, what: str) -> float:
    if len(values) != len(bounds) + 1 or list(bounds) != sorted(bounds):
        raise ValueError(f"{what}: need sorted bounds and one more value than bounds")
    return values[bisect.bisect_right(bounds, x)]


def nominal_hours(rows: int, model_params: int, cfg: ValidatorConfig) -> float:
    """Training hours before scaling (these also enter the task weight)."""
    if rows < 0 or model_params < 0:
        raise ValueError(f"nominal_hours: rows and params must be >= 0, got {rows}, {model_params}")
    data_hours = _bin([float(b) for b in cfg.data_bins_rows], cfg.data_bins_hours, rows, "data bins")
    factor = _bin(cfg.model_bins_billions, cfg.model_bins_factor, model_params / 1e9, "model bins")
    return min(cfg.max_task_hours, data_hours * factor)


def training_seconds(rows: int, model_params: int, cfg: ValidatorConfig) -> float:
    """Wall-clock seconds a miner is given to train (scaled)."""
    return nominal_hours(rows, model_params, cfg) * 3600.0 * cfg.time_scale


@dataclass(frozen=True)
class Deadlines:
    """Absolute times in seconds (the announcement carries them in unix ms)."""

    join_by: float
    commit_by: float
    reveal_by: float
    hours: float  # nominal hours, for the task weight


def deadlines(start: float, rows: int, model_params: int, cfg: ValidatorConfig) -> Deadlines:
    """Join window, then training until ``commit_by``, then the reveal window.

    join window = max(join_min_s, join_fraction x training); reveal window = max(reveal_min_s,
    reveal_fraction x training). The minimums are not scaled: people and transfers need them.
    """
    train = training_seconds(rows, model_params, cfg)
    join_by = start + max(cfg.join_min_s, cfg.join_fraction * train)
    commit_by = join_by + train
    reveal_by = commit_by + max(cfg.reveal_min_s, cfg.reveal_fraction * train)
    return Deadlines(join_by, commit_by, reveal_by, nominal_hours(rows, model_params, cfg))


def delayed(d: Deadlines, extend_s: float) -> Deadlines:
    """Every deadline moved ``extend_s`` later (a join retry)."""
    return Deadlines(d.join_by + extend_s, d.commit_by + extend_s, d.reveal_by + extend_s, d.hours)
