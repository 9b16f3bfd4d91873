"""Scoring: ranking, rank scores, task weight, window aggregation, weights and epoch amounts."""

from __future__ import annotations

import dataclasses
import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from validator.config import ValidatorConfig
from validator.scoring import (
    EvaluatedResult,
    TaskScore,
    combined_loss_key,
    epoch_amounts,
    miner_weights,
    rank_results,
    rank_score,
    rank_scores_array,
    task_score_from_receipt,
    task_weight,
    to_e9,
)

CFG = ValidatorConfig()
DAY = 86_400.0
NOW = 100 * DAY
FAST = settings(max_examples=60, deadline=None)

loss_e9 = st.integers(min_value=1, max_value=20 * 10**9)
results_st = st.lists(
    st.tuples(loss_e9, st.one_of(st.none(), loss_e9)), min_size=1, max_size=20
).map(lambda rows: [EvaluatedResult(f"0x{i:040x}", t, s, commit_seq=(i * 7) % 23)
                    for i, (t, s) in enumerate(rows)])


def ranks_of(results: list[EvaluatedResult]) -> dict[str, tuple[int, float]]:
    return {r.miner: (r.rank, r.rank_score) for r in rank_results(results, CFG)}


@FAST
@given(results_st, st.randoms(use_true_random=False))
def test_permuting_miners_permutes_rankings(results: list[EvaluatedResult], rnd) -> None:
    shuffled = list(results)
    rnd.shuffle(shuffled)
    assert ranks_of(shuffled) == ranks_of(results)


@FAST
@given(results_st)
def test_strictly_lower_loss_never_ranks_lower(results: list[EvaluatedResult]) -> None:
    ranked = {r.miner: r.rank for r in rank_results(results, CFG)}
    key = {r.miner: combined_loss_key(r.test_loss_e9, r.synthetic_loss_e9, CFG.test_weight_bps)
           for r in results}
    for a in results:
        for b in results:
            if key[a.miner] < key[b.miner]:
                assert ranked[a.miner] < ranked[b.miner]


@FAST
@given(results_st, st.data())
def test_improving_a_loss_never_worsens_the_rank(results: list[EvaluatedResult], data) -> None:
    i = data.draw(st.integers(0, len(results) - 1))
    cut = data.draw(st.integers(1, results[i].test_loss_e9))
    better = list(results)
    better[i] = dataclasses.replace(results[i], test_loss_e9=results[i].test_loss_e9 - cut + 1)
    assert ranks_of(better)[results[i].miner][0] <= ranks_of(results)[results[i].miner][0]


def test_combined_loss_is_test_07_synthetic_03_and_configurable() -> None:
    assert combined_loss_key(to_e9(2.0), to_e9(1.0), 7000) == to_e9(1.7) * 10_000
    assert combined_loss_key(to_e9(2.0), None, 7000) == to_e9(2.0) * 10_000
    a = EvaluatedResult("a", to_e9(1.0), to_e9(3.0), 0)  # combined 1.6 at 0.7 / 0.3, 2.0 at 0.5 / 0.5
    b = EvaluatedResult("b", to_e9(1.8), to_e9(1.8), 1)
    assert [r.miner for r in rank_results([a, b], CFG)] == ["a", "b"]
    assert [r.miner for r in rank_results([a, b], ValidatorConfig(test_weight_bps=5000))] == ["b", "a"]
    assert rank_results([a], CFG)[0].combined_loss_e9 == to_e9(1.6)


def test_ties_go_to_the_earlier_commitment_then_the_address() -> None:
    same = to_e9(1.5)
    rows = [EvaluatedResult("0xc", same, same, 5), EvaluatedResult("0xa", same, same, 9),
            EvaluatedResult("0xb", same, same, 5)]
    assert [r.miner for r in rank_results(rows, CFG)] == ["0xb", "0xc", "0xa"]


def test_duplicate_miner_is_refused() -> None:
    with pytest.raises(ValueError, match="twice"):
        rank_results([EvaluatedResult("a", 1, 1, 0), EvaluatedResult("a", 2, 2, 1)], CFG)


@pytest.mark.parametrize("n", range(1, 21))
def test_rank_scores_first_highest_bottom_quarter_penalised_only_in_large_pools(n: int) -> None:
    scores = [rank_score(r, n, CFG) for r in range(1, n + 1)]
    assert scores[0] == 3.0 and all(s < scores[0] for s in scores[1:])
    assert scores == sorted(scores, reverse=True)
    penalised = sum(s == CFG.penalty_score for s in scores)
    assert penalised == (max(1, n // 4) if n > 8 else 0)
    assert rank_score(0, n, CFG) == CFG.disqualified_score
    arr = rank_scores_array(np.arange(0, n + 1), np.full(n + 1, n), CFG)
    assert arr.tolist() == [CFG.disqualified_score, *scores]


def test_place_scores_list_gives_second_place_its_score() -> None:
    cfg = ValidatorConfig(place_scores=[2.0, 1.0], penalty_score=-0.05)
    assert [rank_score(r, 10, cfg) for r in range(1, 11)] == [2.0, 1.0] + [0.0] * 6 + [-0.05] * 2


def test_task_weight_grows_with_model_size_and_hours_within_clamps() -> None:
    assert task_weight(7_000_000_000, 4.0, CFG) == pytest.approx(2 * math.sqrt(28))
    assert task_weight(1_000_000, 2.0, CFG) == pytest.approx(2 * math.sqrt(2))  # size floored at 1B
    assert task_weight(400_000_000_000, 1.0, CFG) == pytest.approx(2 * math.sqrt(40))  # capped at 40B
    assert task_weight(1_000_000, 0.01, CFG) == 1.0  # the minimum
    assert task_weight(8_000_000_000, 4, CFG) > task_weight(4_000_000_000, 4, CFG)
    assert task_weight(4_000_000_000, 8, CFG) > task_weight(4_000_000_000, 4, CFG)


def win(miner: str, task: str, at: float, rank: int = 1, count: int = 4, weight: float = 2.0) -> TaskScore:
    return TaskScore(miner, task, at, rank, count, weight)


def test_a_sole_winner_takes_everything_and_middle_ranks_get_nothing() -> None:
    scores = [win("a", "t", NOW - 10), win("b", "t", NOW - 10, rank=2), win("c", "t", NOW - 10, rank=0)]
    assert miner_weights(scores, NOW, CFG) == {"a": 1.0, "b": 0.0, "c": 0.0}


def test_sigmoid_plus_linear_transform_matches_the_formula() -> None:
    # a won both tasks: quality (3w + 3w) x 3 = 18w; b won one of two: 3w x 1.5 = 4.5w -> x = 0.25.
    scores = [win("a", "t1", NOW - 10), win("a", "t2", NOW - 20),
              win("b", "t3", NOW - 30), win("b", "t4", NOW - 40, rank=2)]

    def transform(x: float) -> float:
        return 0.75 / (1 + math.exp(-10 * (x - 0.3))) ** 4 + 0.1 * x

    expected_b = transform(0.25) / (transform(1.0) + transform(0.25))
    weights = miner_weights(scores, NOW, CFG)
    assert weights["b"] == pytest.approx(expected_b, rel=1e-12)
    assert weights["a"] == pytest.approx(1 - expected_b, rel=1e-12)


def test_windows_weight_recent_work_more_and_forget_old_work() -> None:
    # Identical wins, one today (in the 1, 3 and 7 day windows), one five days ago (7 day only).
    scores = [win("recent", "t1", NOW - 3600), win("old", "t2", NOW - 5 * DAY),
              win("ancient", "t3", NOW - 8 * DAY), win("future", "t4", NOW + 60)]
    weights = miner_weights(scores, NOW, CFG)
    assert set(weights) == {"recent", "old"}  # outside the 7 days or not yet issued: ignored
    # 1 and 3 day windows: all to "recent" (0.6); 7 day window: split evenly (0.4 / 2 each).
    assert weights["recent"] == pytest.approx(0.6 + 0.2)
    assert weights["old"] == pytest.approx(0.2)


def test_a_negative_average_scores_nothing() -> None:
    scores = [win("a", f"t{i}", NOW - i, rank=1 if i == 0 else 9, count=9) for i in range(5)]
    scores.append(win("b", "u", NOW - 5, rank=1))
    assert miner_weights(scores, NOW, CFG)["a"] == 0.0  # mean (3 - 4) / 5 < 0


def test_no_positive_score_gives_all_zero_weights_and_no_amounts() -> None:
    weights = miner_weights([win("a", "t", NOW - 10, rank=2)], NOW, CFG)
    assert weights == {"a": 0.0}
    assert epoch_amounts(weights, 10**18) == {"a": 0}


task_scores_st = st.lists(
    st.builds(
        TaskScore,
        miner=st.sampled_from([f"0x{i:02x}" for i in range(12)]),
        task_id=st.text("abcdef0123456789", min_size=1, max_size=4),
        at=st.floats(NOW - 8 * DAY, NOW, allow_nan=False),
        rank=st.integers(0, 12),
        ranked_count=st.just(12),
        task_weight=st.floats(1.0, 30.0, allow_nan=False),
    ),
    min_size=1, max_size=60,
)


def anyone_scored(scores: list[TaskScore]) -> bool:
    """Some miner has, in some window, a positive mean rank score and a positive weighted sum."""
    for span in CFG.window_s:
        for miner in {s.miner for s in scores}:
            mine = [s for s in scores if s.miner == miner and NOW - span < s.at <= NOW]
            raw = [rank_score(s.rank, s.ranked_count, CFG) for s in mine]
            if mine and sum(raw) > 0 and sum(r * s.task_weight for r, s in zip(raw, mine, strict=True)) > 0:
                return True
    return False


@FAST
@given(task_scores_st, st.randoms(use_true_random=False))
def test_weights_non_negative_sum_to_one_and_permutation_invariant(scores: list[TaskScore], rnd) -> None:
    weights = miner_weights(scores, NOW, CFG)
    assert all(w >= 0 for w in weights.values())
    total = sum(weights.values())
    assert total == pytest.approx(1.0, abs=1e-12) or total == 0.0
    assert (total > 0) == anyone_scored(scores)
    shuffled = list(scores)
    rnd.shuffle(shuffled)
    assert miner_weights(shuffled, NOW, CFG) == weights  # bit for bit


@FAST
@given(st.dictionaries(st.text(min_size=1, max_size=6), st.floats(0, 1e6, allow_nan=False), max_size=40),
       st.integers(0, 10**27))
def test_amounts_sum_exactly_to_the_emission(weights: dict[str, float], emission: int) -> None:
    amounts = epoch_amounts(weights, emission)
    assert set(amounts) == set(weights)
    total = sum(Fraction(w) for w in weights.values())
    if total == 0:
        assert all(a == 0 for a in amounts.values())
        return
    assert sum(amounts.values()) == emission
    for miner, w in weights.items():
        share = emission * Fraction(w) / total
        assert math.floor(share) <= amounts[miner] <= math.floor(share) + 1
        if w == 0:
            assert amounts[miner] == 0


def test_amount_remainders_go_to_largest_fractions_then_smallest_address() -> None:
    assert epoch_amounts({"b": 1.0, "a": 1.0, "c": 1.0}, 10) == {"a": 4, "b": 3, "c": 3}
    # 3.5, 1.75, 1.75: the two units left go to the .75 fractions, not to the larger weight.
    assert epoch_amounts({"a": 0.5, "b": 0.25, "c": 0.25}, 7) == {"a": 3, "b": 2, "c": 2}


def test_amounts_reject_negative_weights() -> None:
    with pytest.raises(ValueError):
        epoch_amounts({"a": -0.1, "b": 1.1}, 100)


def test_task_scores_come_from_published_receipts() -> None:
    from protocol.messages import Receipt

    miner = "0x" + "11" * 20
    receipt = Receipt(task_id=b"\x07" * 32, miner=miner, payout=miner, validator="0x" + "22" * 20, rank=1,
                      pool_size=3, test_loss_e9=to_e9(1.5), synthetic_loss_e9=to_e9(1.6), score_e9=6 * 10**9,
                      amount=0, epoch=1, nonce=1, issued_at=int(NOW * 1000) - 5000)
    score = task_score_from_receipt(receipt, reward_weight_e9=2 * 10**9)
    assert score == TaskScore(receipt.miner, "07" * 32, NOW - 5.0, 1, 3, 2.0)
    assert miner_weights([score], NOW, CFG) == {receipt.miner: 1.0}


def test_default_config_is_consistent_and_problems_are_named() -> None:
    assert CFG.problems() == []
    bad = ValidatorConfig(place_scores=[1.0, 2.0], window_weights=[0.5, 0.5], test_weight_bps=12_000)
    text = " ".join(bad.problems())
    assert "place_scores" in text and "window_weights" in text and "test_weight_bps" in text
