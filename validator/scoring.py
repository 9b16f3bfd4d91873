"""Scoring: from evaluated results to rank scores, miner weights and epoch amounts.

Pure functions over plain dataclasses; the inputs are what receipts (and the task's
announcement) carry, so ``magnet audit`` can recompute every weight and amount:

* ranking a task (``rank_results``): losses are the receipt's fixed-point ``*_e9`` integers. The
  combined text loss is ``test x w + synthetic x (1 - w)`` with ``w = test_weight_bps / 10000``,
  compared exactly as the integer ``test_e9 * bps + synthetic_e9 * (10000 - bps)`` (no rounding can
  reorder two miners). Lower is better. Ties (equal combined loss) go to the earlier commitment in
  the validator's receive order, then to the smaller miner address: deterministic and independent of
  the order the results are listed in.
* rank scores (``rank_score``) are a function of (rank, ranked count) only: places 1, 2, ... get
  ``place_scores``; when more than ``penalty_min_ranked`` miners are ranked, the bottom
  ``max(1, floor(n x penalty_fraction))`` get ``penalty_score``; everyone else ``middle_score``;
  rank 0 (not ranked: disqualified) gets ``disqualified_score``.
* task weight (``task_weight``) = ``max(min, coef x sqrt(hours x clamp(params / 1e9)))`` as in
  Gradients; the announcement publishes it as ``reward_weight_e9``.
* aggregation (``miner_weights``): per window (1, 3, 7 days before ``now``), a miner's quality is
  ``sum(rank_score x task_weight) x mean(rank_score)``, or 0 when the mean is not positive. Each
  window's qualities are divided by the window's best, mapped by
  ``sigmoid_weight x sigmoid(steepness x (x - shift))^power + linear_weight x x`` (0 for x <= 0),
  and normalised to sum 1. The weights are the windows' sum weighted 0.3 / 0.3 / 0.4, renormalised
  over the windows that have any positive score. So they are non-negative and sum to 1, or are all
  0 when no miner scored.
* epoch amounts (``epoch_amounts``): see its docstring (largest remainder, exact integers).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from validator.config import ValidatorConfig

E9 = 1_000_000_000
BPS = 10_000


def to_e9(value: float) -> int:
    """Fixed-point x 10^9, rounded to nearest (the receipts' ``*_e9`` convention)."""
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"to_e9: expected a finite non-negative number, got {value!r}")
    return round(value * E9)


def from_e9(value: int) -> float:
    return value / E9


@dataclass(frozen=True)
class EvaluatedResult:
    """One accepted miner's evaluation in one task, as its receipt will carry it."""

    miner: str
    test_loss_e9: int
    synthetic_loss_e9: int | None  # None for kinds without a synthetic split
    commit_seq: int  # position of its commitment in this validator's receive order


@dataclass(frozen=True)
class RankedResult:
    miner: str
    rank: int  # 1 = best
    ranked_count: int
    combined_loss_e9: int  # floor of the exact combined loss, for display
    rank_score: float


def combined_loss_key(test_e9: int, synthetic_e9: int | None, test_weight_bps: int) -> int:
    """The combined loss x 10^9 x 10^4, exact: what ranking compares."""
    if synthetic_e9 is None:
        return test_e9 * BPS
    return test_e9 * test_weight_bps + synthetic_e9 * (BPS - test_weight_bps)


def rank_score(rank: int, ranked_count: int, cfg: ValidatorConfig) -> float:
    """Score of a place in a task; a function of what the receipt carries (rank, pool size)."""
    if rank == 0:
        return cfg.disqualified_score
    if not 1 <= rank <= ranked_count:
        raise ValueError(f"rank_score: rank {rank} outside 1..{ranked_count}")
    if rank == 1:
        return cfg.place_scores[0] if cfg.place_scores else cfg.middle_score
    if ranked_count > cfg.penalty_min_ranked:
        penalised = max(1, math.floor(ranked_count * cfg.penalty_fraction))
        if rank > ranked_count - penalised:
            return cfg.penalty_score
    if rank <= len(cfg.place_scores):
        return cfg.place_scores[rank - 1]
    return cfg.middle_score


def rank_results(results: Iterable[EvaluatedResult], cfg: ValidatorConfig) -> list[RankedResult]:
    """Rank accepted results, best first (see the module docstring for the ordering)."""
    items = list(results)
    miners = [r.miner for r in items]
    if len(set(miners)) != len(miners):
        raise ValueError("rank_results: a miner appears twice")
    keyed = sorted(
        items, key=lambda r: (combined_loss_key(r.test_loss_e9, r.synthetic_loss_e9, cfg.test_weight_bps),
                              r.commit_seq, r.miner))
    n = len(keyed)
    return [
        RankedResult(
            miner=r.miner, rank=i, ranked_count=n,
            combined_loss_e9=combined_loss_key(r.test_loss_e9, r.synthetic_loss_e9,
                                               cfg.test_weight_bps) // BPS,
            rank_score=rank_score(i, n, cfg),
        )
        for i, r in enumerate(keyed, start=1)
    ]


def task_weight(model_params: int, hours: float, cfg: ValidatorConfig) -> float:
    """Reward weight of a task from its base model size and its nominal (unscaled) hours."""
    if model_params < 0 or hours <= 0:
        raise ValueError(f"task_weight: need params >= 0 and hours > 0, got {model_params}, {hours}")
    billions = min(cfg.model_billions_max, max(cfg.model_billions_min, model_params / 1e9))
    return max(cfg.task_weight_min, cfg.task_weight_coef * math.sqrt(hours * billions))


@dataclass(frozen=True)
class TaskScore:
    """One miner's outcome in one task: its receipt plus the announcement's reward weight."""

    miner: str
    task_id: str
    at: float  # receipt issued_at, seconds
    rank: int  # 0 = took part but not ranked
    ranked_count: int
    task_weight: float


class ReceiptLike(Protocol):
    """The receipt fields aggregation reads (``protocol.messages.Receipt`` has them)."""

    @property
    def miner(self) -> str: ...
    @property
    def task_id(self) -> bytes: ...
    @property
    def issued_at(self) -> int: ...  # unix ms
    @property
    def rank(self) -> int: ...
    @property
    def pool_size(self) -> int: ...


def task_score_from_receipt(receipt: ReceiptLike, reward_weight_e9: int) -> TaskScore:
    """A ``TaskScore`` from a published receipt and its task announcement's ``reward_weight_e9``."""
    return TaskScore(miner=receipt.miner, task_id=receipt.task_id.hex(), at=receipt.issued_at / 1000.0,
                     rank=receipt.rank, ranked_count=receipt.pool_size, task_weight=from_e9(reward_weight_e9))


def rank_scores_array(rank: np.ndarray, count: np.ndarray, cfg: ValidatorConfig) -> np.ndarray:
    """Vectorised ``rank_score`` (same rule, arrays of equal length)."""
    places = np.asarray(cfg.place_scores, dtype=np.float64)
    out = np.full(rank.shape, cfg.middle_score, dtype=np.float64)
    placed = (rank >= 1) & (rank <= places.size)
    out[placed] = places[rank[placed] - 1]
    penalised = np.maximum(1, np.floor(count * cfg.penalty_fraction)).astype(np.int64)
    bottom = (count > cfg.penalty_min_ranked) & (rank > count - penalised) & (rank > 1)
    out[bottom] = cfg.penalty_score
    if places.size == 0:
        out[rank == 1] = cfg.middle_score
    out[rank == 0] = cfg.disqualified_score
    return out


def sigmoid_transform(x: np.ndarray, cfg: ValidatorConfig) -> np.ndarray:
    """Sigmoid-plus-linear map of max-normalised scores in [0, 1]; 0 where x <= 0."""
    sig = 1.0 / (1.0 + np.exp(-cfg.sigmoid_steepness * (x - cfg.sigmoid_shift)))
    out = cfg.sigmoid_weight * sig**cfg.sigmoid_power + cfg.linear_weight * x
    return np.where(x > 0, out, 0.0)


def _window_weights(miner_idx: np.ndarray, raw: np.ndarray, weight: np.ndarray, n_miners: int,
                    cfg: ValidatorConfig) -> np.ndarray:
    """Normalised transformed scores of one window (zeros when nobody scored)."""
    summed = np.bincount(miner_idx, weights=raw * weight, minlength=n_miners)
    raw_sum = np.bincount(miner_idx, weights=raw, minlength=n_miners)
    count = np.bincount(miner_idx, minlength=n_miners)
    mean = np.divide(raw_sum, count, out=np.zeros(n_miners), where=count > 0)
    quality = np.where(mean > 0, np.maximum(summed, 0.0) * mean, 0.0)
    best = quality.max(initial=0.0)
    if best <= 0:
        return np.zeros(n_miners)
    transformed = sigmoid_transform(quality / best, cfg)
    return np.asarray(transformed / transformed.sum())


def miner_weights(scores: Sequence[TaskScore], now: float, cfg: ValidatorConfig) -> dict[str, float]:
    """Each miner's share of the emission from its task scores (module docstring: the rule).

    Every miner with a score in the longest window appears (weight 0.0 possibly).
    """
    if not scores:
        return {}
    return miner_weights_columns(
        [s.miner for s in scores], [s.task_id for s in scores],
        np.array([s.at for s in scores], dtype=np.float64),
        np.array([s.rank for s in scores], dtype=np.int64),
        np.array([s.ranked_count for s in scores], dtype=np.int64),
        np.array([s.task_weight for s in scores], dtype=np.float64), now, cfg)


def _index_names(miners: Sequence[str], keep: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Sorted distinct names of the kept rows, and each kept row's index among them."""
    kept = list(itertools.compress(miners, keep.tolist()))
    names = sorted(set(kept))
    position = {name: i for i, name in enumerate(names)}
    return names, np.fromiter((position[m] for m in kept), dtype=np.int64, count=len(kept))


def miner_weights_columns(miners: Sequence[str], task_ids: Sequence[str], at: np.ndarray, rank: np.ndarray,
                          ranked_count: np.ndarray, weight: np.ndarray, now: float,
                          cfg: ValidatorConfig) -> dict[str, float]:
    """``miner_weights`` over columns (one entry per TaskScore field), as a store query returns them.

    Deterministic: the rows are put in a canonical order (miner, time, task weight, rank score)
    first, so listing them differently gives the same floats bit for bit (rows equal in all four
    add the same terms, so their order among themselves cannot change a sum). ``task_ids`` only
    has to match the other columns in length: a task's identity does not enter the weights.
    """
    if len(cfg.window_s) != len(cfg.window_weights):
        raise ValueError("miner_weights: window_s and window_weights differ in length")
    if not len(miners) == len(task_ids) == len(at) == len(rank) == len(ranked_count) == len(weight):
        raise ValueError("miner_weights: columns differ in length")
    if np.any((rank < 0) | (rank > ranked_count)):
        raise ValueError("miner_weights: every rank must be 0 (not ranked) or 1..ranked_count")
    longest = max(cfg.window_s)
    keep = (at <= now) & (at > now - longest)
    names, miner_idx = _index_names(miners, keep)
    at, weight = at[keep], weight[keep]
    raw = rank_scores_array(rank[keep], ranked_count[keep], cfg)
    order = np.lexsort((raw, weight, at, miner_idx))
    miner_idx, at, weight, raw = miner_idx[order], at[order], weight[order], raw[order]
    total = np.zeros(len(names))
    used = 0.0
    for span, share in zip(cfg.window_s, cfg.window_weights, strict=True):
        inside = at > now - span
        window = _window_weights(miner_idx[inside], raw[inside], weight[inside], len(names), cfg)
        if window.any():
            total += share * window
            used += share
    if used > 0:
        total /= used
    return {name: float(w) for name, w in zip(names, total.tolist(), strict=True)}


def epoch_amounts(weights: Mapping[str, float], emission: int) -> dict[str, int]:
    """Split ``emission`` (integer base units) by ``weights``; the amounts sum exactly to it.

    Rounding rule (largest remainder, exact): each weight is taken as the exact rational value of
    its float, normalised by their exact sum; every miner gets ``floor(emission x share)``; the
    units left over (fewer than the number of miners) go one each to the largest fractional parts,
    ties to the smaller miner address. A zero weight never receives a unit. With no positive
    weight nothing is allocated (all amounts 0; the emission stays unallocated). Integer arithmetic
    only: every float is ``p / 2^k`` exactly, so all shares are put over the common ``2^K``.
    """
    if emission < 0:
        raise ValueError(f"epoch_amounts: emission must be >= 0, got {emission}")
    ratios = {}
    for miner, w in weights.items():
        if not math.isfinite(w) or w < 0:
            raise ValueError(f"epoch_amounts: weight of {miner} must be finite and >= 0, got {w!r}")
        ratios[miner] = w.as_integer_ratio()  # the denominator is a power of two
    denominator = max((q for _, q in ratios.values()), default=1)
    numerators = {m: p * (denominator // q) for m, (p, q) in ratios.items()}
    total = sum(numerators.values())
    if total == 0:
        return dict.fromkeys(weights, 0)
    amounts: dict[str, int] = {}
    remainders: list[tuple[int, str]] = []
    for miner, n in numerators.items():
        amounts[miner], rest = divmod(emission * n, total)
        remainders.append((rest, miner))
    left = emission - sum(amounts.values())
    remainders.sort(key=lambda item: (-item[0], item[1]))
    for _, miner in remainders[:left]:
        amounts[miner] += 1
    return amounts
