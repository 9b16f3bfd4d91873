"""Task timing: bins monotone in data and model size, one scale factor, ordered deadlines."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from validator.config import ValidatorConfig
from validator.timing import DEVNET_TIME_SCALE, deadlines, delayed, nominal_hours, training_seconds

CFG = ValidatorConfig()
rows = st.integers(0, 2_000_000)
params = st.integers(0, 200_000_000_000)


@settings(max_examples=100, deadline=None)
@given(rows, rows, params, params)
def test_time_never_shrinks_with_more_data_or_a_bigger_model(r1: int, r2: int, p1: int, p2: int) -> None:
    (r_lo, r_hi), (p_lo, p_hi) = sorted((r1, r2)), sorted((p1, p2))
    assert nominal_hours(r_lo, p_lo, CFG) <= nominal_hours(r_hi, p_lo, CFG) <= nominal_hours(r_hi, p_hi, CFG)
    assert nominal_hours(r_hi, p_hi, CFG) <= CFG.max_task_hours


def test_the_bins_as_documented() -> None:
    small = 1_000_000  # a tiny devnet model
    assert [nominal_hours(r, small, CFG) for r in (500, 9_999, 10_000, 30_000, 60_000, 200_000)] == [
        2.0, 2.0, 3.0, 4.0, 5.0, 7.0]
    assert [nominal_hours(20_000, p, CFG) for p in (5 * 10**8, 3 * 10**9, 7 * 10**9, 10**10, 7 * 10**10)] == [
        3.0, 3.75, 4.5, 6.0, 9.0]
    assert nominal_hours(500_000, 70 * 10**9, CFG) == CFG.max_task_hours  # 7 x 3 capped at 12


def test_one_factor_scales_everything_and_a_devnet_task_lasts_about_a_minute() -> None:
    devnet = ValidatorConfig(time_scale=DEVNET_TIME_SCALE)
    assert training_seconds(1_000, 1_000_000, devnet) == pytest.approx(60.0)
    assert training_seconds(60_000, 3 * 10**9, devnet) == pytest.approx(
        training_seconds(60_000, 3 * 10**9, CFG) * DEVNET_TIME_SCALE)


def test_deadlines_are_ordered_with_windows_and_floors() -> None:
    d = deadlines(1000.0, 30_000, 2 * 10**9, CFG)  # 4 h x 1.25 = 5 h
    assert d.hours == 5.0
    assert d.join_by == pytest.approx(1000.0 + 0.05 * 5 * 3600)
    assert d.commit_by - d.join_by == pytest.approx(5 * 3600)
    assert d.reveal_by - d.commit_by == pytest.approx(0.1 * 5 * 3600)
    dev = deadlines(0.0, 1_000, 1_000_000, ValidatorConfig(time_scale=DEVNET_TIME_SCALE))
    assert dev.join_by == CFG.join_min_s and dev.reveal_by - dev.commit_by == CFG.reveal_min_s
    moved = delayed(d, 120.0)
    assert (moved.join_by - d.join_by, moved.commit_by - d.commit_by, moved.reveal_by - d.reveal_by) == (
        120.0, 120.0, 120.0)


def test_bad_bins_are_refused() -> None:
    with pytest.raises(ValueError, match="bins"):
        nominal_hours(10, 10, ValidatorConfig(data_bins_hours=[1.0]))
    with pytest.raises(ValueError):
        nominal_hours(-1, 10, CFG)
