"""Autoresearch's search logic on a fast synthetic objective, and its parts (history, trace, policy).

The synthetic recipe below stands in for training only here, where the search logic is under test:
its loss is a known function of the learning rate and the steps taken, so "pruning prunes" or
"divergence lowers the learning rate" can be asserted exactly. Real training on a tiny model is in
test_autoresearch_real.py.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from trainer.autoresearch import (
    JsonHistoryStore,
    SearchSettings,
    TrialRecord,
    autoresearch,
    format_trace,
    load_trace,
    size_bucket,
    trace_path,
)
from trainer.autoresearch.budget import Budget, Throughput
from trainer.autoresearch.failures import Diverged, DivergenceGuard, is_oom
from trainer.autoresearch.policy import Layout, apply_layout, examples_per_step, lower_lr, shrink_after_oom
from trainer.autoresearch.space import Knobs, project
from trainer.autoresearch.splits import carve_validation
from trainer.recipes.base import (
    EvalJob,
    ParamSpec,
    Recipe,
    RecordingReporter,
    Reporter,
    TrainJob,
    TrainResult,
)

BEST_LR = 3e-3


class SyntheticRecipe(Recipe):
    """Loss = 1 + (log10 lr - log10 BEST_LR)^2 + 2 exp(-step/15); explodes above `diverge_above`;
    raises torch's real OutOfMemoryError for micro-batches above `oom_above`."""

    kind = "instruct"

    def __init__(self, step_s: float = 0.002, oom_above: int | None = None, diverge_above: float = 1.0):
        self.step_s = step_s
        self.oom_above = oom_above
        self.diverge_above = diverge_above
        self.jobs: list[TrainJob] = []

    @classmethod
    def default_hparams(cls) -> dict[str, Any]:
        return {
            "lr": 1e-4,
            "micro_batch_size": 8,
            "grad_accum": 1,
            "gradient_checkpointing": False,
            "epochs": 1.0,
            "lora_r": 8,
        }

    @classmethod
    def search_space(cls) -> dict[str, ParamSpec]:
        return {
            "lr": ParamSpec("float_log", 1e-5, 1e-1),
            "micro_batch_size": ParamSpec("categorical", choices=(4, 8, 16)),
            "lora_r": ParamSpec("categorical", choices=(4, 8, 16)),
            "epochs": ParamSpec("float", 0.5, 3.0),
        }

    def train(self, job: TrainJob, reporter: Reporter) -> TrainResult:
        started = time.monotonic()
        self.jobs.append(job)
        hp = self.merged_hparams(job.hparams)
        if self.oom_above is not None and hp["micro_batch_size"] > self.oom_above:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        steps, loss, reason = job.max_steps or 100, math.inf, "completed"
        for step in range(1, steps + 1):
            if time.monotonic() - started > job.budget_s:
                reason = "budget"
                break
            time.sleep(self.step_s)
            loss = self._loss(hp["lr"], step)
            reporter.progress(step, steps, loss=loss)
        out = Path(job.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "loss.json").write_text(json.dumps({"loss": loss}))
        return TrainResult(str(out), {"train_loss": loss}, steps=step, seconds=time.monotonic() - started,
                           stopped_reason=reason)

    def _loss(self, lr: float, step: int) -> float:
        if lr > self.diverge_above:
            return 3.0 if step < 3 else math.nan  # a NaN loss: what a too-high learning rate gives
        return 1 + (math.log10(lr) - math.log10(BEST_LR)) ** 2 + 2 * math.exp(-step / 15)

    def evaluate(self, job: EvalJob, reporter: Reporter) -> dict[str, float]:
        assert job.artifact_dir is not None
        metrics: dict[str, float] = json.loads((Path(job.artifact_dir) / "loss.json").read_text())
        return metrics

    def export(self, artifact_dir: Path, out_path: Path) -> Path:
        raise NotImplementedError

    def check_artifact(self, manifest: Any, base_model_dir: Path) -> None:
        pass


@pytest.fixture
def task(tmp_path: Path) -> TrainJob:
    data = tmp_path / "train.jsonl"
    rows = [{"question": f"What is {i} + {i}?", "answer": f"#### {2 * i}"} for i in range(60)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    model = tmp_path / "model"
    model.mkdir()
    return TrainJob(
        kind="instruct",
        base_model_dir=str(model),
        train_file=str(data),
        output_dir=str(tmp_path / "out" / "artifact"),
        budget_s=2.5,
        seed=0,
        device="cpu",
    )


def _run(job: TrainJob, recipe: SyntheticRecipe, **kwargs: Any) -> tuple[TrainResult, Any]:
    kwargs.setdefault("settings", SearchSettings(min_search_s=0))  # the synthetic budgets are seconds
    result = autoresearch(job, RecordingReporter(), recipe=recipe, **kwargs)
    return result, load_trace(trace_path(job.output_dir))


def test_search_finishes_within_budget_and_leaves_the_final_run_time(task: TrainJob) -> None:
    recipe = SyntheticRecipe()
    started = time.monotonic()
    result, trace = _run(task, recipe)
    elapsed = time.monotonic() - started
    assert elapsed <= task.budget_s + 0.5, f"took {elapsed:.2f}s of a {task.budget_s}s budget"
    assert trace.search_s <= task.budget_s * 0.55  # half the budget is kept for the final run
    assert trace.final is not None and trace.final.steps > 0
    assert Path(result.artifact_dir) == Path(task.output_dir)
    # Trials train on the search split; only the final run sees all the train data.
    assert {j.train_file for j in recipe.jobs[:-1]} == {str(Path(recipe.jobs[0].train_file))}
    assert recipe.jobs[0].train_file != task.train_file
    assert recipe.jobs[-1].train_file == task.train_file


def test_search_finds_a_better_learning_rate_than_the_defaults(task: TrainJob) -> None:
    result, trace = _run(task, SyntheticRecipe())
    default_trial = next(t for t in trace.trials if t.source == "default")
    assert trace.best_value is not None and default_trial.value is not None
    assert trace.best_value < default_trial.value
    assert abs(math.log10(trace.best_params["lr"]) - math.log10(BEST_LR)) < 1.0
    assert result.metrics["search_best_val_loss"] == pytest.approx(trace.best_value)


def test_pruning_stops_poor_trials_early(task: TrainJob) -> None:
    _, trace = _run(task, SyntheticRecipe(), settings=SearchSettings(startup_trials=2, min_search_s=0))
    pruned = [t for t in trace.trials if t.outcome == "pruned"]
    assert pruned, format_trace(trace)
    for trial in pruned:
        assert trial.attempts[-1].steps < trial.max_steps
        assert "pruned after" in trial.attempts[-1].reason


def test_out_of_memory_retries_with_a_smaller_micro_batch(task: TrainJob) -> None:
    _, trace = _run(task, SyntheticRecipe(oom_above=4))
    first = next(t for t in trace.trials if t.source == "default")  # the defaults' micro-batch is 8
    assert [a.outcome for a in first.attempts] == ["oom", "completed"]
    assert first.attempts[0].params["micro_batch_size"] == 8
    assert first.attempts[1].params["micro_batch_size"] == 4
    assert first.attempts[1].params["grad_accum"] == 2  # the effective batch is kept
    assert "micro-batch 8 -> 4" in first.attempts[0].reason
    # The lesson holds for the rest of the search and the final run.
    later = [a for t in trace.trials[trace.trials.index(first) + 1 :] for a in t.attempts] + [trace.final]
    assert all(a.params["micro_batch_size"] <= 4 for a in later)
    assert all(a.outcome != "oom" for a in later)


def test_divergence_retries_with_a_lower_learning_rate(task: TrainJob) -> None:
    recipe = SyntheticRecipe(diverge_above=2e-4)  # the defaults' 1e-4 is fine; much above diverges
    _, trace = _run(task, recipe, settings=SearchSettings(startup_trials=8, min_search_s=0))
    retried = [t for t in trace.trials if t.attempts[0].outcome == "diverged" and len(t.attempts) > 1]
    assert retried, format_trace(trace)
    for trial in retried:
        first, second = trial.attempts[0], trial.attempts[1]
        assert second.params["lr"] == pytest.approx(first.params["lr"] * 0.3)
        assert "lr" in first.reason and "retry" in first.reason


def test_warm_start_enqueues_the_best_past_configurations(task: TrainJob, tmp_path: Path) -> None:
    history = JsonHistoryStore(tmp_path / "data")
    bucket = size_bucket(task.base_model_dir)
    past = {"lr": 2.5e-3, "micro_batch_size": 4, "lora_r": 16}
    history.save(
        [
            TrialRecord("instruct", bucket, past, value=1.01),
            TrialRecord("instruct", bucket, {"lr": 1e-5, "micro_batch_size": 8, "lora_r": 4}, value=9.0),
            TrialRecord("dpo", bucket, {"lr": 5e-2}, value=0.5),  # another kind: never enqueued
        ]
    )
    settings = SearchSettings(warm_start=1, min_search_s=0)
    _, trace = _run(task, SyntheticRecipe(), history=history, settings=settings)
    searched = [t for t in trace.trials if t.number >= 0]
    assert [t.source for t in searched[:2]] == ["default", "history"]
    assert searched[1].params == past
    assert all(t.params.get("lr") != 5e-2 for t in searched)
    # The finished trials of this search were remembered.
    assert len(history.load("instruct", bucket)) > 2


def test_no_search_below_the_minimum_budget(task: TrainJob) -> None:
    recipe = SyntheticRecipe()
    _, trace = _run(task, recipe, settings=SearchSettings(min_search_s=60))
    assert trace.trials == [] and trace.final is not None
    assert len(recipe.jobs) == 1 and recipe.jobs[0].train_file == task.train_file
    assert any("no search" in note for note in trace.notes)


def test_settings_follow_the_node_config() -> None:
    from trainer.config import TrainerConfig

    config = TrainerConfig(autoresearch_final_fraction=0.6, autoresearch_min_search=5.0)
    settings = SearchSettings.from_config(config)
    assert (settings.final_fraction, settings.min_search_s) == (0.6, 5.0)


def test_history_store_keeps_best_first_and_survives_damage(tmp_path: Path) -> None:
    store = JsonHistoryStore(tmp_path)
    store.save([TrialRecord("instruct", "1M", {"lr": 1e-3}, 2.0)])
    store.save([TrialRecord("instruct", "1M", {"lr": 1e-2}, 1.0)])
    store.save([TrialRecord("instruct", "1M", {"lr": 1.0}, math.nan)])  # a diverged trial is not kept
    assert [r.params["lr"] for r in store.load("instruct", "1M")] == [1e-2, 1e-3]
    assert store.load("instruct", "10M") == []
    store.path.write_text("{not json")
    assert store.load("instruct", "1M") == []


def test_size_bucket_reads_parameter_counts_from_safetensors_headers(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    save_file({"a": torch.zeros(1000, 1200), "b": torch.zeros(300)}, str(tmp_path / "model.safetensors"))
    assert size_bucket(tmp_path) == "1M"
    assert size_bucket(tmp_path / "missing") == "unknown"


def test_trace_round_trips_and_formats(task: TrainJob) -> None:
    _, trace = _run(task, SyntheticRecipe())
    raw = json.loads(trace_path(task.output_dir).read_text())
    assert raw["version"] == 1 and raw["trials"][0]["outcome"] in ("completed", "oom")
    for trial in raw["trials"]:
        assert {"params", "max_steps", "outcome", "value", "wall_s", "attempts"} <= set(trial)
    text = format_trace(trace)
    assert "calibrate" in text and "final:" in text


def test_validation_split_is_deterministic_and_disjoint(task: TrainJob, tmp_path: Path) -> None:
    a = carve_validation(task.train_file, tmp_path / "a", 0.1, seed=3, max_val=100)
    b = carve_validation(task.train_file, tmp_path / "b", 0.1, seed=3, max_val=100)
    assert a.val_file.read_text() == b.val_file.read_text()
    assert (a.n_train, a.n_val, a.n_all) == (54, 6, 60)
    val = set(a.val_file.read_text().splitlines())
    assert not val & set(a.train_file.read_text().splitlines())
    capped = carve_validation(task.train_file, tmp_path / "c", 0.5, seed=3, max_val=4)
    assert capped.n_val == 4


def test_layout_keeps_the_effective_batch_and_shrinks_step_by_step() -> None:
    knobs = Knobs.of(SyntheticRecipe.default_hparams())
    params = {"lr": 1e-3, "micro_batch_size": 16, "grad_accum": 1, "gradient_checkpointing": False}
    layout = Layout()
    assert shrink_after_oom(params, knobs, layout) == "out of memory: micro-batch 16 -> 8"
    fitted = apply_layout(params, knobs, layout)
    assert examples_per_step(fitted, knobs) == 16 and fitted["micro_batch_size"] == 8
    one = {**params, "micro_batch_size": 1}
    assert "checkpointing on" in (shrink_after_oom(one, knobs, layout) or "")
    assert apply_layout(one, knobs, layout)["gradient_checkpointing"] is True
    assert shrink_after_oom(one, knobs, layout) is None
    lowered = lower_lr(params, knobs, 0.3)
    assert lowered is not None and lowered[0]["lr"] == pytest.approx(3e-4)


def test_failures_are_recognised() -> None:
    assert is_oom(torch.OutOfMemoryError("CUDA out of memory"))
    cpu_message = "[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory"
    assert is_oom(RuntimeError(cpu_message))
    assert is_oom(RuntimeError("could not create a primitive"))  # oneDNN (CPU bf16) under a memory cap
    assert not is_oom(RuntimeError("shape mismatch"))
    guard = DivergenceGuard(factor=3.0)
    for loss in (2.0, 2.1, 1.9, 2.5):
        guard.check(loss)
    with pytest.raises(Diverged):
        guard.check(6.0)
    with pytest.raises(Diverged):
        DivergenceGuard().check(math.nan)


def test_project_clips_past_configurations_into_the_space() -> None:
    space = SyntheticRecipe.search_space()
    projected = project({"lr": 5.0, "micro_batch_size": 32, "lora_r": 8, "other": 1}, space)
    assert projected == {"lr": 1e-1, "lora_r": 8}


def test_budget_and_throughput_estimates() -> None:
    throughput = Throughput()
    assert throughput.examples_in(10.0) == 0
    throughput.observe(examples=100, train_s=1.0, wall_s=3.0)
    assert throughput.seconds_for(100) == pytest.approx(3.0)
    assert throughput.examples_in(12.0) == 1000
    budget = Budget(100.0, final_fraction=0.5, margin_fraction=0.05)
    assert budget.search_left() == pytest.approx(45.0, abs=0.1)
    assert budget.search_left(final_estimate_s=80.0) == pytest.approx(15.0, abs=0.1)


def test_a_budget_too_short_to_search_races_the_defaults_against_faster_settings(task: TrainJob) -> None:
    recipe = SyntheticRecipe()
    settings = SearchSettings(min_search_s=60, min_race_s=1.0, min_race_slot_s=0.1)
    task = dataclasses.replace(task, budget_s=6.0)  # 2 s of search: four slots of 0.5 s
    result, trace = _run(task, recipe, settings=settings)
    tried = [(t.source, t.params["lr"], t.params["micro_batch_size"]) for t in trace.trials]
    # The defaults (lr 1e-4, micro-batch 8); lr x4 with the smallest micro-batch wins, so the race
    # climbs the learning rate (1.6e-3, then 6.4e-3 which overshoots the synthetic optimum 3e-3).
    assert tried == [
        ("default", pytest.approx(1e-4), 8),
        ("race", pytest.approx(4e-4), 4),
        ("race", pytest.approx(1.6e-3), 4),
        ("race", pytest.approx(6.4e-3), 4),
    ]
    # Every candidate trained for the same wall-clock cap, and each was scored on validation.
    assert len({job.budget_s for job in recipe.jobs[:-1]}) == 1
    assert all(t.value is not None for t in trace.trials)
    values = [t.value for t in trace.trials]
    assert values[2] == min(values)  # 1.6e-3 is nearest the optimum on the log scale
    assert trace.best_params["lr"] == pytest.approx(1.6e-3)
    final = recipe.jobs[-1]
    assert final.train_file == task.train_file and final.hparams["lr"] == pytest.approx(1.6e-3)
    assert final.hparams["micro_batch_size"] == 4
    # The final run continues from the winner's adapter instead of fresh weights.
    assert final.init_adapter_dir == recipe.jobs[2].output_dir and recipe.jobs[1].init_adapter_dir is None
    assert any("race winner's adapter" in note for note in trace.notes)
    assert result.metrics["search_best_val_loss"] == pytest.approx(values[2])
    assert any("race of up to 4 candidates" in note for note in trace.notes)


def test_a_race_that_loses_tries_the_learning_rate_alone_then_stops(task: TrainJob) -> None:
    class SmallBatchesHurt(SyntheticRecipe):
        def _loss(self, lr: float, step: int) -> float:
            return super()._loss(lr, step) + (5.0 if self.jobs[-1].hparams["micro_batch_size"] < 8 else 0.0)

    recipe = SmallBatchesHurt()
    settings = SearchSettings(min_search_s=60, min_race_s=1.0, min_race_slot_s=0.1)
    task = dataclasses.replace(task, budget_s=6.0)
    _, trace = _run(task, recipe, settings=settings)
    tried = [(t.params["lr"], t.params["micro_batch_size"]) for t in trace.trials]
    # The pair lost, lr x4 alone won, then lr x16 (1.6e-3) won again: the final run takes it.
    assert tried == [
        (pytest.approx(1e-4), 8),
        (pytest.approx(4e-4), 4),
        (pytest.approx(4e-4), 8),
        (pytest.approx(1.6e-3), 8),
    ]
    assert trace.best_params["lr"] == pytest.approx(1.6e-3) and trace.best_params["micro_batch_size"] == 8


def test_no_race_when_its_slots_would_only_measure_the_model_load(task: TrainJob) -> None:
    recipe = SyntheticRecipe()
    settings = SearchSettings(min_search_s=60, min_race_s=1.0, min_race_slot_s=5.0)
    _, trace = _run(task, recipe, settings=settings)
    assert trace.trials == [] and len(recipe.jobs) == 1
    assert any("race skipped" in note for note in trace.notes)


def test_race_moves_stay_in_the_space_and_leave_pinned_axes_alone() -> None:
    from trainer.autoresearch.space import Knobs, race_move

    base = SyntheticRecipe.default_hparams()
    space = SyntheticRecipe.search_space()
    knobs = Knobs.of(base)
    both = race_move(base, space, knobs, 4.0, smallest_batch=True)
    assert both is not None and (both["lr"], both["micro_batch_size"]) == (pytest.approx(4e-4), 4)
    assert both["lora_r"] == base["lora_r"]  # nothing else moves
    pinned = {k: v for k, v in space.items() if k != "micro_batch_size"}
    lr_only = race_move(base, pinned, knobs, 4.0, smallest_batch=True)
    assert lr_only is not None and lr_only["micro_batch_size"] == 8
    # At the top of the learning-rate range and the smallest micro-batch: nowhere to go.
    top = {**base, "lr": 1e-1, "micro_batch_size": 4}
    assert race_move(top, space, knobs, 4.0, smallest_batch=True) is None
    near_top = race_move({**base, "lr": 5e-2}, space, knobs, 4.0, smallest_batch=False)
    assert near_top is not None and near_top["lr"] == pytest.approx(1e-1)  # clipped to the bound
