"""A grpo task's announced parameters reach the training job: its completion length and rewards win
over the operator's pins (training longer than the task is judged at is wasted), other pins stay."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import trio
from miner_offline import add_task, offline_service

from miner.config import MinerConfig

FAKE_CHILD = Path(__file__).with_name("fake_child.py")


def test_the_tasks_completion_length_overrides_the_pinned_one_in_the_training_job(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pins = {"max_new_tokens": 128.0, "lr": 3e-3}
    cfg = MinerConfig(
        gpu="cpu",
        autoresearch=False,
        pause_on_battery=False,
        commit_margin_s=1.0,
        nice=0,
        pinned_hparams=pins,
    )
    svc, _events = offline_service(tmp_path, cfg, {})
    steps = svc.steps
    steps.job_command = [sys.executable, str(FAKE_CHILD)]
    assert svc.db is not None
    task = add_task(svc, "training", time.time() + 15.0)
    svc.db.update(task.id, kind="grpo")
    params = '{"rewards": "numeric_answer:1.0,format:0.2", "max_new_tokens": 24}'
    signed = steps.announcement
    monkeypatch.setattr(steps, "announcement", lambda t: replace(signed(t), kind="grpo", params_json=params))
    grpo = svc.db.task(task.id)
    assert grpo is not None and grpo.kind == "grpo"
    trio.run(steps._from_training, grpo)
    trained = svc.db.task(task.id)
    assert trained is not None and trained.phase == "trained"
    jobs = sorted((steps.task_dir(task) / "jobs").glob("*.json"))
    assert jobs, "the training child got no job file"
    hparams = json.loads(jobs[0].read_text())["train"]["hparams"]
    assert hparams["max_new_tokens"] == 24 and hparams["rewards"] == "numeric_answer:1.0,format:0.2"
    assert hparams["lr"] == 3e-3  # a pin the task does not fix stays
