"""Autoresearch trials of a grpo job: its loss is a policy-gradient surrogate around 0, so a rise
"x times its start" is not divergence (a devnet final run failed on 9.93e-09 -> 2.61e-07); a
non-finite loss still is, and other kinds keep the relative check. The curve the pruner compares
follows a grpo trial's mean reward (negated: lower is better), not that surrogate."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from trainer.autoresearch.trial import AttemptPlan, TrialContext, run_attempt
from trainer.recipes.base import Recipe, Reporter, TrainJob, TrainResult


class ScriptedRecipe(Recipe):
    """Reports the given losses as its steps, then returns an (empty) artifact directory."""

    kind = "scripted"

    def __init__(self, losses: list[float], rewards: list[float] | None = None) -> None:
        self.losses = losses
        self.rewards = rewards

    @classmethod
    def default_hparams(cls) -> dict[str, Any]:
        return {}

    def train(self, job: TrainJob, reporter: Reporter) -> TrainResult:
        for step, loss in enumerate(self.losses, start=1):
            extra = {"mean_reward": self.rewards[step - 1]} if self.rewards else {}
            reporter.progress(step, len(self.losses), loss=loss, **extra)
        Path(job.output_dir).mkdir(parents=True, exist_ok=True)
        return TrainResult(job.output_dir, steps=len(self.losses))

    def evaluate(self, job: Any, reporter: Reporter) -> dict[str, float]:
        return {"loss": 0.5}

    @classmethod
    def search_space(cls) -> dict[str, Any]:
        return {}

    def export(self, artifact_dir: Path, out_path: Path) -> Path:
        raise NotImplementedError

    def check_artifact(self, manifest: Any, base_model_dir: Path) -> None:
        raise NotImplementedError


def attempt(kind: str, losses: list[float], tmp_path: Path) -> str:
    job = TrainJob(kind, "base", "train.jsonl", str(tmp_path / "out"), hparams={})
    ctx = TrialContext(ScriptedRecipe(losses), job, tmp_path / "val.jsonl", divergence_factor=3.0)
    plan = AttemptPlan({}, len(losses), 10.0, 8, tmp_path / "train.jsonl", tmp_path / kind, validate=False)
    return run_attempt(ctx, plan).attempt.outcome


@pytest.mark.parametrize(
    ("kind", "losses", "outcome"),
    [
        ("grpo", [9.93e-09, 1e-08, 2e-08, 2.61e-07, -3e-03, 4e-03], "completed"),
        ("grpo", [1e-08, 2e-08, 3e-08, math.nan], "diverged"),
        ("instruct", [9.93e-09, 1e-08, 2e-08, 2.61e-07], "diverged"),
        ("instruct", [2.0, 1.9, 1.8, 1.5], "completed"),
    ],
)
def test_a_grpo_trial_diverges_only_on_a_non_finite_loss(
    kind: str, losses: list[float], outcome: str, tmp_path: Path
) -> None:
    assert attempt(kind, losses, tmp_path) == outcome


def test_the_pruner_sees_a_grpo_trials_reward_and_other_kinds_loss(tmp_path: Path) -> None:
    """Two grpo trials with the same surrogate losses but different rewards get different curves
    (the better-rewarded one lower), as the pruner must tell them apart; an instruct trial's curve
    stays its training loss."""
    losses = [1e-8, -2e-8, 3e-8, 0.0]
    curves = {}
    for name, rewards in (("good", [0.5, 0.7, 0.8, 0.9]), ("bad", [0.5, 0.4, 0.3, 0.3])):
        job = TrainJob("grpo", "base", "train.jsonl", str(tmp_path / name), hparams={})
        ctx = TrialContext(
            ScriptedRecipe(losses, rewards), job, tmp_path / "val.jsonl", divergence_factor=3.0
        )
        plan = AttemptPlan({}, 4, 10.0, 8, tmp_path / "train.jsonl", tmp_path / name, validate=False)
        seen: list[float] = []
        run = run_attempt(ctx, plan, on_intermediate=lambda _examples, value, seen=seen: seen.append(value))
        assert run.attempt.outcome == "completed" and [v for _, v in run.attempt.curve] == seen
        curves[name] = seen
    assert curves["good"][-1] < curves["bad"][-1] < 0  # -mean reward, smoothed
    job = TrainJob("instruct", "base", "train.jsonl", str(tmp_path / "sft"), hparams={})
    ctx = TrialContext(
        ScriptedRecipe([2.0, 1.0], [0.1, 0.2]), job, tmp_path / "val.jsonl", divergence_factor=3.0
    )
    plan = AttemptPlan({}, 2, 10.0, 8, tmp_path / "train.jsonl", tmp_path / "sft", validate=False)
    assert [v for _, v in run_attempt(ctx, plan).attempt.curve] == [2.0, 1.5]
