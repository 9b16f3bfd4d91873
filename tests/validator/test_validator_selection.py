"""Join admission, pool selection and the too-few-joiners rule."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from validator.config import ValidatorConfig
from validator.selection import (
    Candidate,
    ExplorationBudget,
    JoinGate,
    Outcome,
    Refusal,
    after_join_window,
    select_pool,
    selection_score,
)

CFG = ValidatorConfig()
DAY = CFG.day_s
NOW = 1000 * DAY + 3600.0  # one hour into a day


def known(i: int, quality: float = 0.5, last: float | None = NOW - 600.0) -> Candidate:
    return Candidate(f"0xknown{i:02d}", arrival=i, last_task_at=last, average_quality=quality)


def fresh(i: int) -> Candidate:
    return Candidate(f"0xfresh{i:02d}", arrival=100 + i, last_task_at=None, average_quality=None)


# --- selection weights ---

def test_first_task_of_the_day_scores_2() -> None:
    yesterday = known(1, quality=0.4, last=NOW - 2 * 3600.0)  # previous calendar day
    earlier_today = known(2, quality=0.4, last=NOW - 1800.0)
    assert selection_score(yesterday, NOW, False, CFG) == 2.0
    assert selection_score(earlier_today, NOW, False, CFG) == 0.4
    assert selection_score(known(3, quality=-0.7), NOW, False, CFG) == CFG.quality_floor
    assert selection_score(earlier_today, NOW, True, CFG) == pytest.approx(1.2)  # top rank: 3x


def test_top_ranked_known_miner_is_weighted_3x_in_the_draw() -> None:
    cands = [known(1, quality=0.5), known(2, quality=1.0)]
    picks = Counter(select_pool(cands, NOW, seed, 0, CFG, pool_size=1).selected[0] for seed in range(3000))
    share = picks["0xknown02"] / 3000  # weights 3.0 vs 0.5 -> 6/7
    assert share == pytest.approx(6 / 7, abs=0.03)


def test_selection_is_deterministic_per_seed_and_ignores_listing_order() -> None:
    cands = [known(i, quality=0.1 * i) for i in range(1, 20)]
    first = select_pool(cands, NOW, 42, 0, CFG, pool_size=8)
    shuffled = list(cands)
    random.Random(7).shuffle(shuffled)
    assert select_pool(shuffled, NOW, 42, 0, CFG, pool_size=8) == first
    assert any(select_pool(cands, NOW, s, 0, CFG, pool_size=8).selected != first.selected for s in range(5))
    assert len(first.selected) == 8 and len(set(first.selected)) == 8
    assert set(first.refused) == {c.miner for c in cands} - set(first.selected)
    assert all(a.refusal is Refusal.NOT_SELECTED and a.message for a in first.refused.values())


# --- fresh-identity flood ---

@pytest.mark.parametrize("seed", range(20))
def test_fifty_fresh_identities_cannot_crowd_out_known_miners(seed: int) -> None:
    weak_known = [known(i, quality=-0.5) for i in range(12)]  # even known miners at the 0.01 floor
    flood = [fresh(i) for i in range(50)]
    budget = ExplorationBudget()
    pool = select_pool([*flood, *weak_known], NOW, seed, budget.left(NOW, CFG), CFG, pool_size=12)
    fresh_in = [m for m in pool.selected if m.startswith("0xfresh")]
    assert len(pool.selected) == 12
    assert len(fresh_in) <= CFG.fresh_explorations_per_day  # 50 joined, at most 4 got in
    assert set(fresh_in) == set(pool.explored)
    refused = {pool.refused[c.miner].refusal for c in flood if c.miner not in pool.selected}
    assert Refusal.NO_FREE_SLOT in refused
    # Without the bound the flood would take the pool: the bound is what protects known miners.
    unbounded = select_pool([*flood, *weak_known], NOW, seed, 1000, CFG, pool_size=12)
    assert sum(m.startswith("0xfresh") for m in unbounded.selected) > CFG.fresh_explorations_per_day


def test_fresh_explorations_are_bounded_per_day() -> None:
    many_known = [known(i, quality=0.3) for i in range(30)]
    flood = [fresh(i) for i in range(50)]
    budget = ExplorationBudget()
    explored_today = 0
    for task in range(6):
        pool = select_pool([*flood, *many_known], NOW + task, task, budget.left(NOW, CFG), CFG, pool_size=12)
        budget.spend(len(pool.explored), NOW, CFG)
        fresh_in = [m for m in pool.selected if m.startswith("0xfresh")]
        assert fresh_in == [m for m in pool.selected if m in pool.explored]  # none without the budget
        explored_today += len(pool.explored)
    assert 1 <= explored_today <= CFG.fresh_explorations_per_day
    assert budget.left(NOW, CFG) == CFG.fresh_explorations_per_day - explored_today
    assert budget.left(NOW + DAY, CFG) == CFG.fresh_explorations_per_day  # a new day, a new budget


def test_fresh_identities_fill_slots_nobody_else_wants() -> None:
    pool = select_pool([known(1), *[fresh(i) for i in range(10)]], NOW, 1, 0, CFG, pool_size=5)
    assert "0xknown01" in pool.selected and len(pool.selected) == 5


# --- admission ---

def test_rate_limit_per_peer_then_refill() -> None:
    gate = JoinGate(CFG)
    answers = [gate.admit(f"task{i}", "peerA", f"0xaddr{i}", 10.0) for i in range(5)]
    assert [a.accepted for a in answers] == [True, True, True, False, False]
    assert answers[3].refusal is Refusal.RATE_LIMITED_PEER and "retry in 5 s" in answers[3].message
    assert gate.admit("task9", "peerA", "0xaddr9", 10.0 + 1 / CFG.join_rate_per_peer_s).accepted


def test_rate_limit_per_address_across_peers() -> None:
    gate = JoinGate(CFG)
    answers = [gate.admit(f"task{i}", f"peer{i}", "0xsame", 10.0) for i in range(4)]
    assert [a.refusal for a in answers] == [None, None, None, Refusal.RATE_LIMITED_ADDRESS]


def test_flood_from_one_peer_is_cut_at_its_burst() -> None:
    gate = JoinGate(CFG)
    answers = [gate.admit("task", "sybil-peer", f"0xfresh{i:02d}", 10.0 + i * 0.01) for i in range(50)]
    assert sum(a.accepted for a in answers) == int(CFG.join_burst_per_peer)
    assert len(gate.queued("task")) == int(CFG.join_burst_per_peer)


def test_queue_is_capped_and_repeats_are_refused() -> None:
    cfg = ValidatorConfig(join_queue_cap=5)
    gate = JoinGate(cfg)
    answers = [gate.admit("task", f"peer{i}", f"0xa{i}", 10.0) for i in range(8)]
    assert [a.accepted for a in answers] == [True] * 5 + [False] * 3
    assert {a.refusal for a in answers[5:]} == {Refusal.QUEUE_FULL}
    again = gate.admit("task", "peer0", "0xa0", 11.0)
    assert again.refusal is Refusal.ALREADY_QUEUED and again.message
    assert [q.address for q in gate.close("task")] == [f"0xa{i}" for i in range(5)]
    assert gate.queued("task") == []


def test_idle_buckets_are_pruned() -> None:
    gate = JoinGate(CFG)
    gate.PRUNE_AT = 10
    for i in range(30):
        gate.admit(f"t{i}", f"peer{i}", f"0xa{i}", float(i * 100))
    assert len(gate._peers) <= 11  # full (idle) buckets were dropped


# --- too few joiners ---

def test_too_few_joiners_delay_with_growing_time_then_fail() -> None:
    decisions = [after_join_window(1, r, 60.0, CFG) for r in range(CFG.join_retries + 1)]
    assert [d.outcome for d in decisions] == [Outcome.DELAY] * CFG.join_retries + [Outcome.FAIL]
    extensions = [d.extend_s for d in decisions[:-1]]
    assert extensions == sorted(extensions) and extensions[0] > 0 and extensions[-1] > extensions[0]
    assert "too few miners" in decisions[-1].reason


def test_enough_joiners_start_at_once_and_a_small_pool_starts_after_the_retries() -> None:
    assert after_join_window(CFG.ideal_min_pool, 0, 60.0, CFG).outcome is Outcome.START
    assert after_join_window(3, 0, 60.0, CFG).outcome is Outcome.DELAY
    assert after_join_window(3, CFG.join_retries, 60.0, CFG).outcome is Outcome.START


def test_a_second_task_today_without_any_result_gets_the_floor() -> None:
    pending = Candidate("0xpending", 0, last_task_at=NOW - 60.0, average_quality=None)
    assert selection_score(pending, NOW, False, CFG) == CFG.quality_floor


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 25), st.integers(0, 60), st.integers(0, 6), st.integers(1, 15), st.integers(0, 2**32),
       st.lists(st.one_of(st.none(), st.floats(-2, 3)), min_size=25, max_size=25))
def test_pool_bounds_hold_for_any_mix(n_known: int, n_fresh: int, budget: int, size: int, seed: int,
                                      qualities: list[float | None]) -> None:
    cands = [known(i, quality=q) if q is not None else known(i, quality=0.2, last=NOW - DAY)
             for i, q in zip(range(n_known), qualities, strict=False)] + [fresh(i) for i in range(n_fresh)]
    pool = select_pool(cands, NOW, seed, budget, CFG, pool_size=size)
    assert len(pool.selected) == len(set(pool.selected)) == min(size, len(cands))
    fresh_in = sum(m.startswith("0xfresh") for m in pool.selected)
    known_in = len(pool.selected) - fresh_in
    assert len(pool.explored) <= budget
    assert known_in >= min(n_known, size - min(budget, n_fresh))  # only the budget competes with known
    assert fresh_in <= max(budget, size - n_known)  # past the budget, fresh only fill leftover slots
    assert set(pool.refused) | set(pool.selected) == {c.miner for c in cands}


def test_a_miner_listed_twice_is_an_error() -> None:
    with pytest.raises(ValueError, match="twice"):
        select_pool([known(1), known(1)], NOW, 0, 0, CFG)
