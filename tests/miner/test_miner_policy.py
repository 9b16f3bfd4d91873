"""Admission policy, the weekly schedule, battery pause and idle-only mining (pure functions)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

import pytest

from miner.config import MinerConfig
from miner.idle import FakeIdleSource, NoIdleSource, system_idle_source
from miner.policy import Machine, ScheduleError, TaskOffer, admit, in_schedule, may_mine_now, parse_window

NOW = 1_000_000.0
MACHINE = Machine(ram_mb=8000, gpu_mb=0, cpu_cores=4, speed_gflops=10.0)
OFFER = TaskOffer(
    "instruct", min_ram_mb=2000, min_gpu_mb=0, est_gflop=400, join_by=NOW + 10, commit_by=NOW + 310
)


def test_a_fitting_task_is_admitted_with_its_reason() -> None:
    verdict = admit(OFFER, MACHINE, MinerConfig(), NOW)
    assert verdict.ok and "fits" in verdict.reason


@pytest.mark.parametrize(
    ("offer", "cfg", "machine", "words"),
    [
        (OFFER, MinerConfig(enabled_kinds=["dpo"]), MACHINE, "not enabled"),
        (replace(OFFER, min_ram_mb=9000), MinerConfig(), MACHINE, "RAM"),
        (OFFER, MinerConfig(max_ram_mb=1000), MACHINE, "may use 1000 MiB"),
        (replace(OFFER, min_gpu_mb=4000), MinerConfig(), MACHINE, "GPU"),
        (replace(OFFER, join_by=NOW - 1), MinerConfig(), MACHINE, "join window has closed"),
        (replace(OFFER, commit_by=NOW + 12), MinerConfig(), MACHINE, "no training time"),
        # 40,000 GFLOP at 10 GFLOP/s: a quarter pass needs 1,000 s, the window holds ~250 s.
        (replace(OFFER, est_gflop=40_000), MinerConfig(), MACHINE, "only"),
    ],
)
def test_each_refusal_says_why(offer: TaskOffer, cfg: MinerConfig, machine: Machine, words: str) -> None:
    verdict = admit(offer, machine, cfg, NOW)
    assert not verdict.ok and words in verdict.reason


def test_the_deadline_check_follows_the_measured_speed() -> None:
    slow = replace(MACHINE, speed_gflops=1.0)
    big = replace(OFFER, est_gflop=2_000)  # quarter pass: 50 s fast, 500 s slow
    assert admit(big, MACHINE, MinerConfig(), NOW).ok
    assert not admit(big, slow, MinerConfig(), NOW).ok
    assert admit(big, replace(slow, speed_gflops=-1.0), MinerConfig(), NOW).ok  # check turned off


def test_battery_pauses_only_when_configured() -> None:
    on_battery = replace(MACHINE, on_battery=True)
    monday_noon = datetime(2026, 11, 23, 12, 0)
    verdict = may_mine_now(MinerConfig(), on_battery, monday_noon)
    assert not verdict.ok and "battery" in verdict.reason
    assert may_mine_now(MinerConfig(pause_on_battery=False), on_battery, monday_noon).ok
    assert may_mine_now(MinerConfig(), replace(MACHINE, on_battery=False), monday_noon).ok


def test_idle_only_mining_waits_for_the_idle_time_and_pauses_on_input() -> None:
    cfg = MinerConfig(idle_only=True, idle_after_s=300)
    when = datetime(2026, 11, 23, 12, 0)
    source = FakeIdleSource(10.0)
    assert not may_mine_now(cfg, replace(MACHINE, idle_s=source.idle_seconds()), when).ok
    source.idle_s = 301.0
    assert may_mine_now(cfg, replace(MACHINE, idle_s=source.idle_seconds()), when).ok
    source.idle_s = 0.5  # the user is back
    verdict = may_mine_now(cfg, replace(MACHINE, idle_s=source.idle_seconds()), when)
    assert not verdict.ok and "in use" in verdict.reason
    assert may_mine_now(MinerConfig(), replace(MACHINE, idle_s=0.5), when).ok  # idle-only off


def test_idle_only_mining_refuses_clearly_where_the_platform_cannot_tell() -> None:
    verdict = may_mine_now(
        MinerConfig(idle_only=True),
        replace(MACHINE, idle_s=NoIdleSource().idle_seconds()),
        datetime(2026, 11, 23, 12, 0),
    )
    assert not verdict.ok and "cannot tell" in verdict.reason


def test_the_system_idle_source_says_what_it_is(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    source = system_idle_source()
    assert source.idle_seconds() is None and "cannot tell" in source.describe()


@pytest.mark.parametrize(
    ("entry", "when", "inside"),
    [
        ("mon-fri 09:00-17:00", datetime(2026, 11, 23, 9, 0), True),  # Monday 09:00
        ("mon-fri 09:00-17:00", datetime(2026, 11, 23, 17, 0), False),
        ("mon-fri 09:00-17:00", datetime(2026, 11, 22, 12, 0), False),  # Sunday
        ("fri 22:00-07:00", datetime(2026, 11, 27, 23, 0), True),  # Friday night
        ("fri 22:00-07:00", datetime(2026, 11, 28, 6, 59), True),  # Saturday morning, same window
        ("fri 22:00-07:00", datetime(2026, 11, 28, 7, 0), False),
        ("fri 22:00-07:00", datetime(2026, 11, 27, 6, 0), False),  # Friday morning: Thursday had none
        ("sat,sun 00:00-24:00", datetime(2026, 11, 29, 23, 59), True),
        ("sun-mon 10:00-11:00", datetime(2026, 11, 23, 10, 30), True),  # a range across the week's end
        ("* 08:00-09:00", datetime(2026, 11, 25, 8, 30), True),
    ],
)
def test_weekly_schedule_windows(entry: str, when: datetime, inside: bool) -> None:
    assert in_schedule([parse_window(entry)], when) is inside


def test_mining_outside_the_schedule_is_paused_with_the_schedule_named() -> None:
    cfg = MinerConfig(schedule=["mon-fri 22:00-07:00"])
    verdict = may_mine_now(cfg, MACHINE, datetime(2026, 11, 23, 12, 0))
    assert not verdict.ok and "mon-fri 22:00-07:00" in verdict.reason
    assert may_mine_now(cfg, MACHINE, datetime(2026, 11, 23, 23, 0)).ok


@pytest.mark.parametrize("entry", ["weekdays 9-5", "mon 25:00-26:00", "xyz 10:00-11:00", "mon 10:00"])
def test_bad_schedule_entries_say_how_to_write_them(entry: str) -> None:
    with pytest.raises(ScheduleError, match="schedule entry"):
        parse_window(entry)


def test_task_parameters_fix_grpo_rewards_and_unknown_ones_refuse_the_task() -> None:
    from miner.policy import task_hparams
    from trainer.rewards import DEFAULT_REWARDS

    assert task_hparams("grpo", '{"rewards": "numeric_answer:1.0,format:0.5"}') == {
        "rewards": "numeric_answer:1.0,format:0.5"
    }
    assert task_hparams("grpo", "{}") == {"rewards": DEFAULT_REWARDS}
    assert task_hparams("instruct", "{}") == {}
    grpo = replace(OFFER, kind="grpo", params_json='{"rewards": "numeric_answer:1.0"}')
    assert admit(grpo, MACHINE, MinerConfig(enabled_kinds=["grpo"]), NOW).ok
    for params, words in [
        ('{"rewards": "run_my_code:1.0"}', "unknown reward 'run_my_code'"),
        ('{"temperature": 2}', "unknown to this version: upgrade MAGNET"),
        ("[1]", "not a JSON object"),
    ]:
        verdict = admit(replace(grpo, params_json=params), MACHINE, MinerConfig(enabled_kinds=["grpo"]), NOW)
        assert not verdict.ok and words in verdict.reason, verdict.reason
    refused = admit(replace(OFFER, params_json='{"rewards": "format:1"}'), MACHINE, MinerConfig(), NOW)
    assert not refused.ok and "upgrade MAGNET" in refused.reason


def test_a_grpo_tasks_completion_length_is_fixed_for_training_and_a_bad_one_refuses_the_task() -> None:
    from miner.policy import task_hparams

    fixed = task_hparams("grpo", '{"rewards": "numeric_answer:1.0", "max_new_tokens": 24}')
    assert fixed == {"rewards": "numeric_answer:1.0", "max_new_tokens": 24}
    assert "max_new_tokens" not in task_hparams("grpo", '{"rewards": "numeric_answer:1.0"}')
    grpo = replace(OFFER, kind="grpo")
    cfg = MinerConfig(enabled_kinds=["grpo"])
    for params, words in [
        ('{"max_new_tokens": 4}', "between 8 and 1024"),
        ('{"max_new_tokens": 24.5}', "must be integers"),  # protocol JSON has no floats
        ('{"max_new_tokens": "24"}', "whole number"),
    ]:
        verdict = admit(replace(grpo, params_json=params), MACHINE, cfg, NOW)
        assert not verdict.ok and words in verdict.reason, verdict.reason
    assert admit(replace(grpo, params_json='{"max_new_tokens": 24}'), MACHINE, cfg, NOW).ok
