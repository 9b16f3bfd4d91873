"""Admission policy: which tasks this machine takes, and whether it may mine right now. Pure functions.

``admit`` judges one announced task against the machine (kind enabled, memory, GPU, the base
model's size against the training device's memory, a deadline reachable at the measured speed);
``may_mine_now`` judges the moment (battery, user idle, weekly schedule). Each answer is a
``Verdict`` whose reason is shown to the user as it is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from miner.config import MinerConfig
from protocol import strict_json
from trainer.fit import MEMORY_HEADROOM  # pure arithmetic: no torch

MIB = 1 << 20

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_WINDOW = re.compile(r"^\s*(?P<days>[a-z*,\-]+)\s+(?P<start>\d{1,2}:\d{2})-(?P<end>\d{1,2}:\d{2})\s*$")


class ScheduleError(ValueError):
    """A schedule entry cannot be read; the message shows the expected form."""


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str


@dataclass(frozen=True)
class Machine:
    """What the policy knows of this machine now."""

    ram_mb: int
    gpu_mb: int  # free memory of the GPU this miner trains on; 0: it trains on the CPU
    cpu_cores: int
    speed_gflops: float  # measured sustained training speed; 0 when unknown
    on_battery: bool | None = None  # None: the platform cannot tell
    idle_s: float | None = None  # seconds since the last user input; None: cannot tell


@dataclass(frozen=True)
class TaskOffer:
    """The parts of a TaskAnnouncement the policy needs (times in unix seconds)."""

    kind: str
    min_ram_mb: int
    min_gpu_mb: int
    est_gflop: int
    join_by: float
    commit_by: float
    params_json: str = "{}"
    base_model_size: int = 0  # bytes of the base model's bundle; 0: unknown


def weight_factor(cuda: bool, qlora: bool) -> float:
    """Least bytes in memory per byte of a base model file at the training precision: fp32 on the
    CPU (never smaller than the file), 16-bit on CUDA (half an fp32 file at least), 4-bit QLoRA."""
    if cuda and qlora:
        return 0.55 / 4
    return 0.5 if cuda else 1.0


def size_bound(base_model_size: int, free_mb: int, cuda: bool, qlora: bool = False) -> Verdict:
    """Refuse a base model whose weights alone exceed what a job may use (``MEMORY_HEADROOM`` of
    ``free_mb``), saying the largest base model that would fit."""
    usable = free_mb * MEMORY_HEADROOM
    factor = weight_factor(cuda, qlora)
    need = base_model_size / MIB * factor
    if base_model_size > 0 and need > usable:
        what = "GPU memory" if cuda else "RAM"
        return Verdict(
            False,
            f"the base model alone needs ~{need:.0f} MiB of {what}, this miner may use {usable:.0f} "
            f"MiB: base models up to {usable / factor:.0f} MiB fit here",
        )
    return Verdict(True, "the base model fits")


def task_hparams(kind: str, params_json: str) -> dict[str, Any]:
    """Hyperparameters a task fixes through its announced parameters (docs/PROTOCOL.md,
    TaskAnnouncement): grpo's reward names and, when the task sets it, the completion length it is
    judged at (training longer than that is wasted, shorter is not what is scored). ValueError,
    saying why, for parameters this miner does not know: it cannot train what the validator will score."""
    params = strict_json.loads(params_json, "task parameters")
    if not isinstance(params, dict):
        raise ValueError("task parameters are not a JSON object")
    known = {"rewards", "max_new_tokens"} if kind == "grpo" else set()
    unknown = sorted(set(params) - known)
    if unknown:
        raise ValueError(f"task parameters {unknown} are unknown to this version: upgrade MAGNET")
    if kind != "grpo":
        return {}
    from trainer.rewards import (
        DEFAULT_REWARDS,
        BadCompletionLength,
        UnknownReward,
        canonical_reward_spec,
        check_max_new_tokens,
    )

    try:
        fixed: dict[str, Any] = {"rewards": canonical_reward_spec(params.get("rewards") or DEFAULT_REWARDS)}
    except UnknownReward as exc:
        raise ValueError(f"{exc}: upgrade MAGNET") from None
    if params.get("max_new_tokens") is not None:
        try:
            fixed["max_new_tokens"] = check_max_new_tokens(params["max_new_tokens"])
        except BadCompletionLength as exc:
            raise ValueError(f"the task's {exc}") from None
    return fixed


def ram_cap(ram_mb: int, max_ram_mb: int) -> int:
    """The RAM a miner may use: the machine's, capped by ``miner.max_ram_mb`` when that is set (> 0)."""
    return min(ram_mb, max_ram_mb) if max_ram_mb > 0 else ram_mb


def admit(task: TaskOffer, machine: Machine, cfg: MinerConfig, now: float, startup_s: float = 0.0) -> Verdict:
    """Whether this machine should join ``task``, and why (the first reason that refuses).
    ``startup_s``: seconds a training job takes here to load its libraries (not training time)."""
    if task.kind not in cfg.enabled_kinds:
        return Verdict(False, f"task kind {task.kind!r} is not enabled (miner.enabled_kinds)")
    try:
        task_hparams(task.kind, task.params_json)
    except ValueError as exc:
        return Verdict(False, f"cannot train this task: {exc}")
    if now > task.join_by:
        return Verdict(False, "the join window has closed")
    ram = ram_cap(machine.ram_mb, cfg.max_ram_mb)
    if task.min_ram_mb > ram:
        return Verdict(False, f"needs {task.min_ram_mb} MiB of RAM, this miner may use {ram} MiB")
    if task.min_gpu_mb > 0 and (cfg.gpu == "cpu" or task.min_gpu_mb > machine.gpu_mb):
        return Verdict(
            False,
            f"needs a GPU with {task.min_gpu_mb} MiB, this miner has {machine.gpu_mb} MiB"
            + (" (miner.gpu is 'cpu')" if cfg.gpu == "cpu" else ""),
        )
    cuda = machine.gpu_mb > 0 and cfg.gpu != "cpu"
    qlora = bool(cfg.pinned_hparams.get("qlora"))
    bound = size_bound(task.base_model_size, machine.gpu_mb if cuda else ram, cuda, qlora)
    if not bound.ok:
        return bound
    window = task.commit_by - max(now, task.join_by) - cfg.commit_margin_s - startup_s
    usable = window * cfg.budget_fraction
    if usable <= 0:
        return Verdict(False, "no training time would be left before the commit deadline")
    if machine.speed_gflops > 0:
        need = task.est_gflop / machine.speed_gflops * cfg.min_pass_fraction
        if need > usable:
            return Verdict(
                False,
                f"training needs ~{need:.0f} s at {machine.speed_gflops:.1f} GFLOP/s "
                f"({cfg.min_pass_fraction:.0%} of one pass), only {usable:.0f} s are left before "
                "the commit deadline",
            )
        return Verdict(True, f"fits: ~{need:.0f} s of {usable:.0f} s needed at this machine's speed")
    if machine.speed_gflops < 0:
        return Verdict(True, f"fits: {usable:.0f} s of training time (speed check off)")
    return Verdict(True, f"fits: {usable:.0f} s of training time (speed not measured yet)")


def may_mine_now(cfg: MinerConfig, machine: Machine, local_time: datetime) -> Verdict:
    """Whether mining may run at this moment (battery, user idle, weekly schedule)."""
    if cfg.pause_on_battery and machine.on_battery:
        return Verdict(False, "on battery (miner.pause_on_battery)")
    if cfg.idle_only:
        if machine.idle_s is None:
            return Verdict(
                False,
                "idle-only mining is on, but this platform cannot tell when the user is "
                "idle (install xprintidle on X11, or turn miner.idle_only off)",
            )
        if machine.idle_s < cfg.idle_after_s:
            return Verdict(
                False,
                f"the computer is in use (idle {machine.idle_s:.0f} s of {cfg.idle_after_s:.0f} s needed)",
            )
    windows = parse_schedule(cfg.schedule)
    if windows and not in_schedule(windows, local_time):
        return Verdict(False, "outside the mining schedule (" + "; ".join(cfg.schedule) + ")")
    return Verdict(True, "mining allowed")


@dataclass(frozen=True)
class Window:
    days: frozenset[int]  # 0 = Monday
    start_min: int  # minutes after midnight
    end_min: int  # may be <= start_min: the window runs past midnight into the next day


def parse_schedule(entries: list[str]) -> list[Window]:
    return [parse_window(entry) for entry in entries]


def parse_window(entry: str) -> Window:
    match = _WINDOW.match(entry.lower())
    if match is None:
        raise ScheduleError(
            f"schedule entry {entry!r}: write it as 'mon-fri 22:00-07:00' "
            "(days: mon..sun, ranges with '-', lists with ',', '*' for every day)"
        )
    return Window(_days(match["days"], entry), _minutes(match["start"], entry), _minutes(match["end"], entry))


def _days(text: str, entry: str) -> frozenset[int]:
    if text in ("*", "daily"):
        return frozenset(range(7))
    days: set[int] = set()
    for part in text.split(","):
        ends = part.split("-")
        if len(ends) > 2 or any(e not in DAYS for e in ends):
            raise ScheduleError(f"schedule entry {entry!r}: unknown day in {part!r} (use mon..sun)")
        first, last = DAYS.index(ends[0]), DAYS.index(ends[-1])
        span = (last - first) % 7
        days.update((first + i) % 7 for i in range(span + 1))
    return frozenset(days)


def _minutes(text: str, entry: str) -> int:
    hours, minutes = (int(x) for x in text.split(":"))
    if not (0 <= hours <= 24 and 0 <= minutes < 60) or hours * 60 + minutes > 24 * 60:
        raise ScheduleError(f"schedule entry {entry!r}: {text} is not a time of day (00:00..24:00)")
    return hours * 60 + minutes


def in_schedule(windows: list[Window], when: datetime) -> bool:
    """True when ``when`` (local time) falls in one of the weekly windows."""
    day, minute = when.weekday(), when.hour * 60 + when.minute
    for w in windows:
        if w.start_min < w.end_min:
            if day in w.days and w.start_min <= minute < w.end_min:
                return True
        elif (day in w.days and minute >= w.start_min) or ((day - 1) % 7 in w.days and minute < w.end_min):
            return True  # a window past midnight: its evening on a listed day, its morning the day after
    return False
