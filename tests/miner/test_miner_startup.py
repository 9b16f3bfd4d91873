"""The measured start-up: the miner times each training child from spawn to "ready", keeps a per-kind
estimate in its store, and plans with it (the budget it hands over, the earliest give-up, admission).
The child is tests/miner/fake_child.py pretending to load its libraries for 1.5 s, then training
for the whole budget it sets itself: the commitment is still made before the deadline."""

from __future__ import annotations

import sys
import time
from dataclasses import replace
from pathlib import Path

import trio
from miner_offline import add_task, offline_service

from miner import events as ev
from miner.config import MinerConfig
from miner.policy import Machine, TaskOffer, admit
from miner.steps import STARTUP_DEFAULT_S, GiveUp, decayed
from protocol.messages import Commitment

FAKE_CHILD = Path(__file__).with_name("fake_child.py")


def test_the_estimate_takes_a_slower_start_at_once_and_a_faster_one_slowly() -> None:
    assert decayed(None, 4.0) == 4.0
    assert decayed(4.0, 9.0) == 9.0
    assert 4.0 < decayed(9.0, 4.0) < 9.0


def test_a_slow_start_is_measured_shrinks_the_budget_and_the_commitment_is_in_time(
    tmp_path: Path,
) -> None:
    cfg = MinerConfig(gpu="cpu", autoresearch=False, pause_on_battery=False, commit_margin_s=1.0, nice=0)
    svc, events = offline_service(tmp_path, cfg, {})
    steps = svc.steps
    steps.job_command = [sys.executable, str(FAKE_CHILD)]
    steps.job_env = {"FAKE_CHILD_MODE": "budget", "FAKE_CHILD_STARTUP_S": "1.5"}
    assert svc.db is not None
    assert steps.startup_reserve("instruct") == STARTUP_DEFAULT_S  # nothing measured yet
    svc.db.set_meta("startup_s:instruct", "0.2")  # a fast start measured before
    fast_budget = steps.training_budget("instruct", 30.0)

    commit_by = time.time() + 10.0  # 4 s to the training deadline (margin 1 s, export 5 s)
    task = add_task(svc, "training", commit_by)
    trio.run(steps._from_training, task)
    trained = svc.db.task(task.id)
    assert trained is not None and trained.phase == "trained"
    trio.run(steps._from_trained, trained)

    measured = steps.startup_estimate("instruct")
    assert measured is not None and measured >= 1.5
    assert steps.training_budget("instruct", 30.0) < fast_budget - 0.5
    committed = [e for e in events if isinstance(e, ev.Committed)]
    assert committed and committed[0].seconds_before_deadline > 0
    assert any(isinstance(getattr(e, "message", None), Commitment) for e in events)

    # A task whose deadline leaves less than the measured start-up + 3 s is given up, no child spawned.
    late = add_task(svc, "training", time.time() + 6.0 + measured + 2.0, task_id="0x" + "02" * 32)
    try:
        trio.run(steps._from_training, late)
        raise AssertionError("the late task was trained")
    except GiveUp as exc:
        assert "too close to train" in str(exc) and "to start here" in str(exc)
    # ... and admission counts it out of the training window.
    offer = TaskOffer("instruct", 0, 0, 1, join_by=100.0, commit_by=112.0)
    machine = Machine(ram_mb=8000, gpu_mb=0, cpu_cores=2, speed_gflops=-1.0)
    assert admit(offer, machine, cfg, 99.0).ok
    assert not admit(offer, machine, cfg, 99.0, startup_s=measured + 10).ok
    assert admit(replace(offer, commit_by=200.0), machine, cfg, 99.0, startup_s=measured + 10).ok
