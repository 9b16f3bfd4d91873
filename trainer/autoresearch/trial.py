"""One attempt of one configuration: train on the search split, watch it, score it on validation.

Trials run in-process (inside the worker process that runs the whole autoresearch job): starting a
fresh worker per trial would cost an interpreter, torch and transformers import each time, which is
most of a short trial on a small machine. An out-of-memory error in a trial is a Python exception
(torch raises it before anything is corrupted), so it is caught and retried here; anything worse
still only takes down the worker, never the node.
"""

from __future__ import annotations

import math
import shutil
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainer.autoresearch.failures import Diverged, DivergenceGuard, TrialPruned, is_oom, release_memory
from trainer.autoresearch.trace import Attempt
from trainer.recipes.base import EvalJob, NullReporter, Recipe, Reporter, TrainJob, TrainResult
from trainer.rewards import grpo_eval_length, grpo_rewards

# Pruning compares trials on the mean training loss over the last few steps: within the first epoch
# every batch is unseen, so this is an unbiased estimate of held-out loss, at no evaluation cost.
WINDOW_STEPS = 5

IntermediateHook = Callable[[int, float], None]


class TrialReporter(NullReporter):
    """Receives a trial's progress: guards against divergence, feeds the pruner, times the steps.

    The curve the pruner compares is the smoothed training loss, lower is better; with
    ``reward_curve`` (grpo) it is the smoothed negative mean reward of the step's rollouts instead:
    GRPO's loss is a surrogate centred on 0 whose size says nothing about how well a policy does."""

    def __init__(
        self,
        guard: DivergenceGuard,
        examples_per_step: int,
        on_intermediate: IntermediateHook | None,
        forward: Reporter | None = None,
        reward_curve: bool = False,
    ) -> None:
        self.reward_curve = reward_curve
        self.guard = guard
        self.examples_per_step = examples_per_step
        self.on_intermediate = on_intermediate
        self.forward = forward  # the final run's progress goes on to the caller's reporter
        self.recent: deque[float] = deque(maxlen=WINDOW_STEPS)
        self.step = 0
        self.curve: list[tuple[int, float]] = []
        self.step_times: list[tuple[int, float]] = []

    def progress(
        self,
        step: int,
        total_steps: int,
        loss: float | None = None,
        tokens_per_s: float | None = None,
        percent: float | None = None,
        eta_s: float | None = None,
        **extra: Any,
    ) -> None:
        if self.forward is not None:
            self.forward.progress(step, total_steps, loss, tokens_per_s, percent, eta_s, **extra)
        self.step = step
        self.step_times.append((step, time.monotonic()))
        if loss is None:
            return
        self.guard.check(float(loss))
        reward = extra.get("mean_reward") if self.reward_curve else None
        if self.reward_curve and (reward is None or not math.isfinite(float(reward))):
            return  # nothing comparable this step
        self.recent.append(-float(reward) if reward is not None else float(loss))
        value = sum(self.recent) / len(self.recent)
        examples = step * self.examples_per_step
        self.curve.append((examples, value))
        if self.on_intermediate is not None:
            self.on_intermediate(examples, value)  # may raise TrialPruned

    def phase(self, name: str) -> None:
        if self.forward is not None:
            self.forward.phase(name)

    def metric(self, name: str, value: float) -> None:
        if self.forward is not None:
            self.forward.metric(name, value)

    def log(self, message: str) -> None:
        if self.forward is not None:
            self.forward.log(message)

    def loop_seconds(self) -> tuple[int, float] | None:
        """(steps, seconds) between the first and last progress report: training time without the
        start-up (model load, tokenising) and the saving around it."""
        if len(self.step_times) < 2:
            return None
        (first_step, first_t), (last_step, last_t) = self.step_times[0], self.step_times[-1]
        if last_step <= first_step:
            return None
        return last_step - first_step, last_t - first_t


@dataclass
class AttemptPlan:
    """What to run: the full hyperparameters, the data, the step target and the wall-clock cap."""

    params: dict[str, Any]
    max_steps: int
    budget_s: float
    examples_per_step: int
    train_file: Path
    out_dir: Path
    validate: bool = True
    checkpoint_dir: str | None = None  # trials restart rather than checkpoint; the final run may resume
    init_adapter_dir: str | None = None  # the final run may start from the race winner's adapter


@dataclass
class TrialContext:
    """What every attempt of a search shares."""

    recipe: Recipe
    job: TrainJob
    val_file: Path
    divergence_factor: float


@dataclass
class AttemptRun:
    attempt: Attempt
    result: TrainResult | None
    loop: tuple[int, float] | None  # (steps, seconds) of pure training, for throughput estimates


def run_attempt(
    ctx: TrialContext,
    plan: AttemptPlan,
    on_intermediate: IntermediateHook | None = None,
    forward: Reporter | None = None,
) -> AttemptRun:
    """Train (and validate) one configuration; every failure becomes an outcome, never an exception."""
    if plan.checkpoint_dir is None:
        shutil.rmtree(plan.out_dir, ignore_errors=True)
    guard = DivergenceGuard(divergence_factor(ctx))
    reporter = TrialReporter(
        guard, plan.examples_per_step, on_intermediate, forward, reward_curve=ctx.job.kind == "grpo"
    )
    attempt = Attempt(params=dict(plan.params), outcome="completed")
    started = time.monotonic()
    result: TrainResult | None = None
    try:
        result = ctx.recipe.train(_train_job(ctx, plan), reporter)
        attempt.steps = result.steps
        if result.stopped_reason == "budget":
            attempt.outcome, attempt.reason = "budget", "stopped by its wall-clock cap"
        if plan.validate:
            _score(ctx, attempt, result.artifact_dir)
    except TrialPruned as exc:
        attempt.outcome, attempt.reason = "pruned", str(exc)
    except (Diverged, FloatingPointError) as exc:  # the training loop raises the latter on a NaN loss
        attempt.outcome, attempt.reason = "diverged", str(exc)
    except Exception as exc:  # a trial's failure must never end the search
        attempt.outcome = "oom" if is_oom(exc) else "failed"
        attempt.reason = f"{type(exc).__name__}: {exc}"[:300]
        release_memory()
    attempt.steps = attempt.steps or reporter.step
    attempt.wall_s = time.monotonic() - started
    attempt.curve = reporter.curve
    return AttemptRun(attempt, result, reporter.loop_seconds())


def divergence_factor(ctx: TrialContext) -> float:
    """How far above its start a trial's training loss may climb before the trial counts as diverged.
    GRPO's loss is a clipped policy-gradient surrogate that hovers around 0 (advantages are centred
    within each group), not an error that starts high and falls: a rise from 1e-8 to 3e-7 is noise, and
    "x times its start" once failed a devnet task's final run. There only a non-finite loss diverges."""
    return math.inf if ctx.job.kind == "grpo" else ctx.divergence_factor


def _score(ctx: TrialContext, attempt: Attempt, artifact_dir: str) -> None:
    attempt.val_loss = _validate(ctx, artifact_dir)
    if not math.isfinite(attempt.val_loss):
        attempt.outcome, attempt.reason = "diverged", f"validation loss {attempt.val_loss}"


def _train_job(ctx: TrialContext, plan: AttemptPlan) -> TrainJob:
    job = ctx.job
    return TrainJob(
        kind=job.kind,
        base_model_dir=job.base_model_dir,
        train_file=str(plan.train_file),
        output_dir=str(plan.out_dir),
        hparams=plan.params,
        budget_s=max(plan.budget_s, 0.1),
        seed=job.seed,
        max_steps=max(1, plan.max_steps),
        device=job.device,
        threads=job.threads,
        checkpoint_dir=plan.checkpoint_dir,
        checkpoint_interval_s=job.checkpoint_interval_s,
        val_fraction=0.0,  # validation is carved once for the whole search (splits.py)
        init_adapter_dir=plan.init_adapter_dir,
    )


def _validate(ctx: TrialContext, artifact_dir: str) -> float:
    job = ctx.job
    eval_job = EvalJob(
        kind=job.kind,
        base_model_dir=job.base_model_dir,
        artifact_dir=artifact_dir,
        eval_file=str(ctx.val_file),
        seed=job.seed,
        device=job.device,
        threads=job.threads,
        rewards=grpo_rewards(job.kind, job.hparams),
        max_new_tokens=grpo_eval_length(job.kind, job.hparams),
    )
    return float(ctx.recipe.evaluate(eval_job, NullReporter())["loss"])
