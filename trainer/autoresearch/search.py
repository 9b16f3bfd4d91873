"""Autoresearch: search a recipe's hyperparameters within the task's budget, then train the artifact.

    calibrate  two steps of the recipe's defaults at the smallest micro-batch: seconds per example
               and start-up cost on this machine (skipped, with the search, below min_search_s)
    race       (budgets from min_race_s to min_search_s, too short for a search) a line search in
               equal wall-clock slots from the defaults (or the best past configuration) along what
               short budgets favour (learning rate up, smallest micro-batch), each candidate scored
               on the validation split: the lowest loss in equal time goes to the final run
    search     optuna TPE (seeded) over `search_space()`, trials at a fixed fidelity (training
               examples), successive-halving pruning on the running training loss, each finished
               trial scored on a validation split carved from the train data; OOM -> smaller
               micro-batch (then gradient checkpointing), divergence -> lower learning rate;
               queue: the defaults, the best past configs (history), then one-axis probes
    final      the best configuration on ALL the train data, sized to the time that is left

The search stops while the measured throughput says the final run still fits. Every trial is
recorded in a `SearchTrace` saved beside the artifact.
"""

from __future__ import annotations

import logging
import math
import shutil
import warnings
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from trainer.autoresearch.budget import Budget, Throughput
from trainer.autoresearch.failures import TrialPruned
from trainer.autoresearch.history import HistoryStore, NullHistory, TrialRecord, size_bucket
from trainer.autoresearch.policy import Layout, apply_layout, examples_per_step, lower_lr, shrink_after_oom
from trainer.autoresearch.space import Knobs, probes, project, race_move, suggest
from trainer.autoresearch.splits import ValidationSplit, carve_validation
from trainer.autoresearch.trace import Attempt, SearchTrace, TrialTrace, save_trace
from trainer.autoresearch.trial import AttemptPlan, AttemptRun, TrialContext, run_attempt
from trainer.recipes.base import Recipe, Reporter, TrainerError, TrainJob, TrainResult, get_recipe
from trainer.schedule import UNMEASURED_PLAN

log = logging.getLogger(__name__)


@dataclass
class SearchSettings:
    """Knobs of the search itself (not of the recipe)."""

    final_fraction: float = 0.5  # share of the budget always kept for the final run
    margin_fraction: float = 0.05  # share kept after the final run for the trace and export
    val_fraction: float = 0.1
    max_val_rows: int = 24  # validated after every trial: enough to rank, cheap to repeat
    trial_share: float = 0.25  # one full-fidelity trial, as a share of the search time
    reduction_factor: int = 3
    max_trials: int = 64
    warm_start: int = 3  # best past configurations enqueued
    startup_trials: int = 4  # TPE's random trials before it models the objective
    calibration_steps: int = 2
    # Below this budget a search cannot pay for itself: each trial costs a model load and a
    # validation pass (seconds each on 2 busy CPU cores), and the calibration alone takes ~10-25%.
    min_search_s: float = 60.0
    # From this budget up to min_search_s: a race of a few candidates in equal wall-clock slots.
    min_race_s: float = 30.0
    min_race_slot_s: float = 3.0  # a slot shorter than this measures the model load, not the config
    race_slots: int = 4
    probes: bool = True  # try lr x/÷ probe_factor and the smallest micro-batch before the sampler
    probe_factor: float = 4.0
    divergence_factor: float = 3.0
    lr_backoff: float = 0.3
    max_retries: int = 3  # divergence retries per run; OOM retries go on while there is something to shrink
    # The final run's step target is the measured pace's estimate times this: recipes shorten their
    # schedule when the real pace is slower (trainer.loop fits the budget), never lengthen it.
    final_optimism: float = 1.25

    @classmethod
    def from_config(cls, config: Any) -> SearchSettings:
        """The settings a node's `TrainerConfig` sets (trainer/config.py), the rest at defaults."""
        return cls(
            final_fraction=float(config.autoresearch_final_fraction),
            min_search_s=float(config.autoresearch_min_search),
        )


def autoresearch(
    job: TrainJob,
    reporter: Reporter,
    history: HistoryStore | None = None,
    settings: SearchSettings | None = None,
    recipe: Recipe | None = None,
) -> TrainResult:
    """Search and train `job` within `job.budget_s`; the artifact goes to `job.output_dir`."""
    search = _Search(job, reporter, history or NullHistory(), settings or SearchSettings(), recipe)
    return search.run()


# Share of a race slot kept for what is not training: loading the model, saving, validation. Every
# candidate gets the same training time, so the race compares progress in equal time.
RACE_OVERHEAD_SHARE = 0.4


class _Search:
    def __init__(
        self,
        job: TrainJob,
        reporter: Reporter,
        history: HistoryStore,
        settings: SearchSettings,
        recipe: Recipe | None,
    ) -> None:
        self.job, self.reporter, self.history, self.settings = job, reporter, history, settings
        self.recipe = recipe or get_recipe(job.kind)
        self.budget = Budget(job.budget_s, settings.final_fraction, settings.margin_fraction)
        self.defaults = self.recipe.merged_hparams(dict(job.hparams))
        # Hyperparameters the caller pinned in the job are not searched.
        self.space = {k: v for k, v in self.recipe.search_space().items() if k not in job.hparams}
        self.knobs = Knobs.of(self.defaults)
        self.notes: list[str] = []
        self._budget_sets_length()
        self.layout = Layout()
        self.throughput = Throughput()
        self.bucket = size_bucket(job.base_model_dir)
        self.trace = SearchTrace(job.kind, self.bucket, job.budget_s, job.seed, notes=self.notes)
        out = Path(job.output_dir)
        self.work_dir = out.with_name(out.name + ".autoresearch-work")
        self.best: tuple[float, dict[str, Any], int] | None = None  # (val loss, params, examples)
        # The race winner's adapter: the final run continues from it rather than from fresh weights,
        # so the seconds the winner trained in its slot are not thrown away.
        self.best_adapter: str | None = None

    def _budget_sets_length(self) -> None:
        """Training length is not searched: under a wall-clock budget the final run trains as long as
        the time left allows (the step target comes from measured throughput), and trials are cut at
        the search fidelity. Epochs are lifted to the space's upper bound so they never cut first."""
        name = self.knobs.epochs
        if name is None or name not in self.space:
            return
        spec = self.space.pop(name)
        if spec.high is not None:
            self.defaults[name] = spec.high
            self.notes.append(f"{name} set by the budget (at most {spec.high:g}), not searched")

    # --- the three phases ---------------------------------------------------------------------

    def run(self) -> TrainResult:
        self.reporter.phase("autoresearch")
        try:
            split = carve_validation(
                self.job.train_file,
                self.work_dir,
                self.settings.val_fraction,
                self.job.seed,
                self.settings.max_val_rows,
            )
            ctx = TrialContext(self.recipe, self.job, split.val_file, self.settings.divergence_factor)
            affordable = self._search_affordable()
            fidelity = self._calibrate(ctx, split) if affordable else 0
            if fidelity:
                self._search(ctx, split, fidelity)
            elif affordable or not self._race(ctx, split):
                self._fall_back_to_history()
            self.trace.search_s = self.budget.elapsed()
            result = self._final(ctx, split)
        finally:
            shutil.rmtree(self.work_dir, ignore_errors=True)
        self.trace.total_s = self.budget.elapsed()
        save_trace(self.trace, self.job.output_dir)
        self._remember()
        return result

    def _calibrate(self, ctx: TrialContext, split: ValidationSplit) -> int:
        """Run the defaults for a few steps at the smallest micro-batch (cheap: only the pace per
        example is wanted); the fidelity (training examples per trial), 0 for none."""
        params = dict(self.defaults)
        if self.knobs.micro_batch and self.knobs.micro_batch in self.space:
            params[self.knobs.micro_batch] = self._smallest_step()
            if self.knobs.accum:
                params[self.knobs.accum] = 1
        trial = TrialTrace(-1, dict(params), "calibrate", self.settings.calibration_steps)
        self.trace.trials.append(trial)
        for _ in range(self._attempt_limit()):
            params = apply_layout(params, self.knobs, self.layout)
            plan = self._plan(params, self.settings.calibration_steps, split, "calibrate")
            plan.budget_s = max(1.0, self.budget.search_left())
            run = run_attempt(ctx, plan)
            trial.attempts.append(run.attempt)
            self._observe(run, plan)
            if run.attempt.outcome != "oom" or not self._shrink(run.attempt, params):
                break
        if run.attempt.outcome not in ("completed", "diverged"):
            if run.attempt.outcome in ("oom", "failed"):
                raise TrainerError(f"autoresearch could not run the recipe at all: {run.attempt.reason}")
            return 0
        # The fidelity is sized on pure training time: the start-up cost of the first run includes
        # one-off imports, and the stop rule below charges each trial its measured overhead anyway.
        time_for_trial = self.budget.search_left() * self.settings.trial_share
        fidelity = self.throughput.examples_for_training(time_for_trial)
        # A trial must reach the pruning rung with at least one step at the smallest micro-batch.
        minimum = self._smallest_step() * self.settings.reduction_factor
        return fidelity if fidelity >= minimum else 0

    def _search_affordable(self) -> bool:
        if self.job.budget_s >= self.settings.min_search_s:
            return True
        floor = self.settings.min_search_s
        self.notes.append(f"budget {self.job.budget_s:g}s is under {floor:g}s: no search")
        return False

    def _race(self, ctx: TrialContext, split: ValidationSplit) -> bool:
        """A short line search in equal wall-clock slots, for budgets too short for a search: the base
        configuration (the defaults, or the best past one), then the learning rate up and the smallest
        micro-batch together, climbing the learning rate while that keeps winning (else the learning
        rate alone). The lowest validation loss becomes `best`. False when the budget cannot pay."""
        if self.job.budget_s < self.settings.min_race_s:
            return False
        past = self.history.load(self.job.kind, self.bucket)
        base = {**self.defaults, **project(past[0].params, self.space)} if past else dict(self.defaults)
        slots = self.settings.race_slots
        slot = self.budget.search_left() / slots
        floor = self.settings.min_race_slot_s
        if slot < floor:
            self.notes.append(f"race skipped: {slot:.1f}s a candidate is under {floor:g}s")
            return False
        self.notes.append(
            f"budget {self.job.budget_s:g}s: race of up to {slots} candidates, {slot:.1f}s each"
        )
        factor = self.settings.probe_factor
        queue: list[tuple[dict[str, Any], str]] = [(base, "history" if past else "default")]
        tried: list[dict[str, Any]] = []
        for number in range(slots):
            if not queue:
                break
            params, source = queue.pop(0)
            left = self.budget.search_left()
            if left < floor:
                self.notes.append(f"race stopped before candidate {number}: time kept for the final run")
                break
            before = self.best[0] if self.best else math.inf
            value = self._race_one(ctx, split, number, params, source, min(slot, left))
            tried.append(project(params, self.space))
            won = value < before
            if number == 0:
                nxt = race_move(params, self.space, self.knobs, factor, smallest_batch=True)
            elif won:  # climb: the learning rate once more from the new best
                nxt = race_move(params, self.space, self.knobs, factor, smallest_batch=False)
            elif number == 1:  # the pair lost: perhaps only the smaller batch hurt
                nxt = race_move(base, self.space, self.knobs, factor, smallest_batch=False)
            else:
                nxt = None
            if nxt is not None and project(nxt, self.space) not in tried:
                queue.append((nxt, "race"))
        return self.best is not None

    def _race_one(
        self,
        ctx: TrialContext,
        split: ValidationSplit,
        number: int,
        params: dict[str, Any],
        source: str,
        slot: float,
    ) -> float:
        """One race candidate in its slot; its validation loss (inf when it failed)."""
        entry = TrialTrace(number, dict(params), source, 0)
        self.trace.trials.append(entry)
        params = apply_layout(params, self.knobs, self.layout)
        plan = self._plan(params, UNMEASURED_PLAN, split, f"race-{number}")  # the slot ends it, not steps
        # The recipe fits its learning-rate schedule to the cap (trainer.loop).
        plan.budget_s = slot * (1 - RACE_OVERHEAD_SHARE)
        run = run_attempt(ctx, plan)
        entry.attempts.append(run.attempt)
        self._observe(run, plan)
        self._report_search_progress(entry)
        value = run.attempt.val_loss
        if run.attempt.outcome == "oom":
            self._shrink(run.attempt, params)  # later candidates and the final run start smaller
        if run.attempt.outcome not in ("completed", "budget") or value is None or not math.isfinite(value):
            return math.inf
        if self.best is None or value < self.best[0]:
            self.best = (value, dict(run.attempt.params), 0)
            self.best_adapter = run.result.artifact_dir if run.result is not None else None
        return value

    def _attempt_limit(self) -> int:
        # Halving the micro-batch down to 1, then checkpointing, bounds the OOM retries.
        micro = int(self.defaults.get(self.knobs.micro_batch or "", 1) or 1)
        return self.settings.max_retries + 1 + max(1, micro).bit_length() + 1

    def _fall_back_to_history(self) -> None:
        """No time to search: the best past configuration for this kind and size, else the defaults."""
        past = self.history.load(self.job.kind, self.bucket)
        if past:
            params = {**self.defaults, **project(past[0].params, self.space)}
            self.best = (math.nan, params, 0)  # its past value was on other data: not comparable
            self.best_adapter = None
            self.notes.append("budget too small for a search: final run with the best past configuration")
        else:
            self.notes.append("budget too small for a search: final run with the defaults")

    def _smallest_step(self) -> int:
        spec = self.space.get(self.knobs.micro_batch or "")
        if spec is not None and spec.type == "categorical" and spec.choices:
            return int(min(spec.choices))
        return examples_per_step(self.defaults, self.knobs)

    def _search(self, ctx: TrialContext, split: ValidationSplit, fidelity: int) -> None:
        study = self._study(fidelity)
        queue = self._initial_queue()
        for number in range(self.settings.max_trials):
            estimate = self.throughput.seconds_for(fidelity) or 0.0
            if self._search_left() < estimate:
                self.trace.notes.append(f"search stopped before trial {number}: time kept for the final run")
                break
            params, source = queue.popleft() if queue else ({}, "sampler")
            if params:
                study.enqueue_trial(params, skip_if_exists=False)
            trial = study.ask()
            suggested = suggest(trial, self.space)
            entry = TrialTrace(number, suggested, source, 0)
            self.trace.trials.append(entry)
            self._run_trial(ctx, split, study, trial, entry, fidelity)
            self._report_search_progress(entry)

    def _final(self, ctx: TrialContext, split: ValidationSplit) -> TrainResult:
        """The best configuration on all the train data, sized to the time left."""
        self.reporter.phase("train")
        params = dict(self.best[1]) if self.best else dict(self.defaults)
        if self.best:
            self.trace.best_value, self.trace.best_params = self.best[0], dict(self.best[1])
        for _ in range(self._attempt_limit()):
            params = apply_layout(params, self.knobs, self.layout)
            plan = self._final_plan(params, split)
            plan.init_adapter_dir = self.best_adapter
            if self.best_adapter and not any("race winner's adapter" in n for n in self.notes):
                self.notes.append("final run continues from the race winner's adapter")
            run = run_attempt(ctx, plan, forward=self.reporter)
            self.trace.final = run.attempt
            if run.attempt.outcome == "oom" and self._shrink(run.attempt, params):
                continue
            lowered = lower_lr(params, self.knobs, self.settings.lr_backoff)
            retried = sum("final run diverged" in n for n in self.notes)
            # Retried even when the time is nearly spent: a short trial can miss a late divergence,
            # and a task without an artifact earns nothing, while a few seconds over cost little.
            if run.attempt.outcome == "diverged" and lowered and retried < self.settings.max_retries:
                params = lowered[0]
                self.trace.notes.append(f"final run {lowered[1]}; retried")
                continue
            break
        if run.result is None:
            raise TrainerError(f"autoresearch's final run failed: {run.attempt.reason}")
        return self._final_result(run.result)

    # --- one trial ----------------------------------------------------------------------------

    def _run_trial(
        self,
        ctx: TrialContext,
        split: ValidationSplit,
        study: optuna.Study,
        trial: optuna.Trial,
        entry: TrialTrace,
        fidelity: int,
    ) -> None:
        params = {**self.defaults, **entry.params}
        pruning = self._pruning_hook(trial, fidelity)
        for _ in range(self._attempt_limit()):
            params = apply_layout(params, self.knobs, self.layout)
            steps = max(1, math.ceil(fidelity / examples_per_step(params, self.knobs)))
            entry.max_steps = steps
            plan = self._plan(params, steps, split, f"trial-{entry.number}")
            run = run_attempt(ctx, plan, on_intermediate=pruning)
            entry.attempts.append(run.attempt)
            self._observe(run, plan)
            outcome = run.attempt.outcome
            if outcome == "oom" and self._shrink(run.attempt, params):
                continue
            diverged = sum(a.outcome == "diverged" for a in entry.attempts)
            lowered = lower_lr(params, self.knobs, self.settings.lr_backoff)
            if outcome == "diverged" and lowered and diverged <= self.settings.max_retries:
                params = lowered[0]
                run.attempt.reason += f"; retry with {lowered[1].split(': ', 1)[1]}"
                pruning = None  # the retry is judged on its own, not against this trial's curve
                continue
            break
        self._tell(study, trial, entry, fidelity)

    def _tell(self, study: optuna.Study, trial: optuna.Trial, entry: TrialTrace, fidelity: int) -> None:
        """Tell optuna what happened; a run that succeeded only after lowering the learning rate is
        recorded as its own trial, so the sampler learns which learning rate actually worked."""
        last = entry.attempts[-1]
        value = last.val_loss if last.val_loss is not None else math.nan
        ok = last.outcome in ("completed", "budget") and math.isfinite(value)
        retried_lr = any(a.outcome == "diverged" for a in entry.attempts[:-1])
        if ok and not retried_lr:
            study.tell(trial, value)
        else:
            states = optuna.trial.TrialState
            study.tell(trial, state=states.FAIL if last.outcome == "failed" else states.PRUNED)
        if ok and retried_lr:
            self._add_known(study, trial, last.params, value)
        if ok and last.outcome == "completed" and (self.best is None or value < self.best[0]):
            self.best = (value, dict(last.params), fidelity)
            self.best_adapter = None

    def _add_known(
        self, study: optuna.Study, trial: optuna.Trial, params: dict[str, Any], value: float
    ) -> None:
        dists = trial.distributions
        known = {k: params[k] for k in dists if k in params}
        try:
            study.add_trial(optuna.trial.create_trial(params=known, distributions=dists, value=value))
        except ValueError:
            pass  # the lowered learning rate left the space: the sampler cannot use this point

    def _pruning_hook(self, trial: optuna.Trial, fidelity: int) -> Any:
        def hook(examples: int, value: float) -> None:
            if examples >= fidelity:
                return  # a trial that ran its course is judged on validation, not cut at the finish
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # a retry re-reporting a step is expected
                trial.report(value, examples)
            if trial.should_prune():
                what = "negative mean reward" if self.job.kind == "grpo" else "training loss"
                raise TrialPruned(f"pruned after {examples} examples at {what} {value:.4f}")

        return hook

    # --- helpers ------------------------------------------------------------------------------

    def _plan(self, params: dict[str, Any], steps: int, split: ValidationSplit, name: str) -> AttemptPlan:
        return AttemptPlan(
            params=params,
            max_steps=steps,
            budget_s=max(0.5, self._search_left()),
            examples_per_step=examples_per_step(params, self.knobs),
            train_file=split.train_file,
            out_dir=self.work_dir / name,
        )

    def _final_plan(self, params: dict[str, Any], split: ValidationSplit) -> AttemptPlan:
        left = self.budget.remaining()
        per_step = examples_per_step(params, self.knobs)
        examples = self.throughput.examples_in(left) * self.settings.final_optimism
        # No measured pace (calibration never finished a step): let the recipe fit its schedule.
        steps = max(1, int(examples // per_step)) if self.throughput.s_per_example else UNMEASURED_PLAN
        pace = self.throughput.s_per_example or 0.0
        self.notes.append(
            f"final run planned: {steps} steps of {per_step} examples in {left:.1f}s "
            f"(measured {pace * 1000:.1f} ms/example, start-up {self.throughput.overhead_s or 0.0:.1f}s)"
        )
        return AttemptPlan(
            params=params,
            max_steps=steps,
            budget_s=max(1.0, left),
            examples_per_step=per_step,
            train_file=Path(self.job.train_file),
            out_dir=Path(self.job.output_dir),
            validate=False,  # the validation rows are in the final training data now
            checkpoint_dir=self.job.checkpoint_dir,
        )

    def _final_result(self, result: TrainResult) -> TrainResult:
        completed = [t for t in self.trace.trials if t.number >= 0 and t.outcome == "completed"]
        metrics = dict(result.metrics)
        metrics["search_trials"] = float(len([t for t in self.trace.trials if t.number >= 0]))
        metrics["search_completed"] = float(len(completed))
        metrics["search_seconds"] = float(self.trace.search_s)
        if self.best and math.isfinite(self.best[0]):
            metrics["search_best_val_loss"] = self.best[0]
        return TrainResult(
            artifact_dir=result.artifact_dir,
            metrics=metrics,
            steps=result.steps,
            tokens=result.tokens,
            seconds=self.budget.elapsed(),
            stopped_reason=result.stopped_reason,
        )

    def _search_left(self) -> float:
        final_need = self.throughput.seconds_for(self.best[2]) if self.best else None
        return self.budget.search_left(final_need)

    def _observe(self, run: AttemptRun, plan: AttemptPlan) -> None:
        if run.loop is not None:
            steps, seconds = run.loop
            loop_examples = steps * plan.examples_per_step
            total_examples = run.attempt.steps * plan.examples_per_step
            # Wall time minus the loop's share for all steps = start-up, saving and validation.
            per_example = seconds / loop_examples
            self.throughput.observe(total_examples, per_example * total_examples, run.attempt.wall_s)

    def _shrink(self, attempt: Attempt, params: dict[str, Any]) -> bool:
        change = shrink_after_oom(params, self.knobs, self.layout)
        if change:
            attempt.reason += f"; retry with {change.split(': ', 1)[1]}"
        return change is not None

    def _study(self, fidelity: int) -> optuna.Study:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        startup = self.settings.startup_trials
        sampler = optuna.samplers.TPESampler(seed=self.job.seed, n_startup_trials=startup)
        eta = self.settings.reduction_factor
        # One rung at a third of the fidelity: earlier, the first steps' losses mostly reflect which
        # batches came first, not the configuration, and a short search has few trials to cull.
        rung = max(1, fidelity // eta)
        pruner = optuna.pruners.SuccessiveHalvingPruner(min_resource=rung, reduction_factor=eta)
        return optuna.create_study(direction="minimize", sampler=sampler, pruner=pruner)

    def _initial_queue(self) -> deque[tuple[dict[str, Any], str]]:
        """The defaults first (the search never knows less than the static recipe), then the best
        distinct past configurations for this kind and model size."""
        start = project(self.defaults, self.space)
        queue: deque[tuple[dict[str, Any], str]] = deque([(start, "default")])
        seen = [start]
        for record in self.history.load(self.job.kind, self.bucket):
            params = project(record.params, self.space)
            if params and params not in seen and len(queue) <= self.settings.warm_start:
                queue.append((params, "history"))
                seen.append(params)
        # With no history to lean on, probe the axes that matter most before the sampler models the
        # objective: a short search has too few trials for random draws to find them.
        probe_base = seen[1] if len(seen) > 1 else start
        for params in probes(probe_base, self.space, self.knobs, self.settings.probe_factor):
            if params not in seen and self.settings.probes:
                queue.append((params, "probe"))
                seen.append(params)
        return queue

    def _report_search_progress(self, entry: TrialTrace) -> None:
        value = "-" if entry.value is None else f"{entry.value:.4f}"
        self.reporter.log(f"trial {entry.number} ({entry.source}): {entry.outcome}, val loss {value}")
        elapsed = self.budget.elapsed()
        self.reporter.progress(
            entry.number + 1,
            0,
            percent=min(100.0, 100.0 * elapsed / self.job.budget_s),
            eta_s=max(0.0, self.job.budget_s - elapsed),
        )

    def _remember(self) -> None:
        records = [
            TrialRecord(
                self.job.kind,
                self.bucket,
                t.attempts[-1].params,
                float(t.value),
                steps=t.attempts[-1].steps,
                seconds=t.wall_s,
            )
            for t in self.trace.trials
            if t.number >= 0 and t.outcome == "completed" and t.value is not None
        ]
        try:
            self.history.save(records)
        except OSError as exc:  # losing the memory of a search must not lose its artifact
            log.warning("could not save autoresearch history: %s", exc)
