"""Validator benchmark: prints one JSON object.

Measures the time to aggregate scores into weights (and epoch amounts) for 10,000 miners over
7 days of tasks: pools of 12, each miner in about 4 tasks a day (280,000 task scores). Target:
under 5 s. And evaluations per hour of the tiny model: one artifact (a LoRA adapter of a tiny
Llama-style model, trained a few steps) scored on the private test and synthetic splits of a task
made from the bundled GSM8K subset, each in a fresh sandboxed worker process (what the validator
runs per artifact), one at a time and ``--workers`` at once.

Run: ``.venv/bin/python bench/validator.py [--miners N] [--days D] [--tasks-per-day T] [--repeat R]
[--evaluations N] [--workers W]`` (``--evaluations 0`` skips the evaluation part)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from validator.config import ValidatorConfig
from validator.scoring import TaskScore, epoch_amounts, miner_weights, miner_weights_columns

DAY = 86_400.0
T = TypeVar("T")


def make_scores(miners: int, days: int, tasks_per_miner_day: int, pool: int, seed: int) -> list[TaskScore]:
    """Random but plausible task outcomes: each task a random pool, ranks a random permutation."""
    rng = np.random.default_rng(seed)
    now = 1_000 * DAY
    tasks = miners * tasks_per_miner_day * days // pool
    scores: list[TaskScore] = []
    names = [f"0x{i:040x}" for i in range(miners)]
    weights = rng.choice([2.0, 2.83, 4.0, 5.66, 8.0], size=tasks)
    for t in range(tasks):
        members = rng.choice(miners, size=pool, replace=False)
        at = float(now - rng.uniform(0, days * DAY))
        disqualified = rng.random(pool) < 0.05
        ranks = np.zeros(pool, dtype=np.int64)
        ranked = int((~disqualified).sum())
        ranks[~disqualified] = rng.permutation(ranked) + 1
        scores.extend(TaskScore(names[m], f"task{t}", at, int(r), ranked, float(weights[t]))
                      for m, r in zip(members, ranks, strict=True))
    return scores


def timed(fn: Callable[[], T], repeat: int) -> tuple[list[float], T]:
    """Wall times of ``repeat`` calls, and the last result."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return times, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--miners", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--tasks-per-day", type=int, default=4, help="tasks per miner per day")
    parser.add_argument("--pool", type=int, default=12)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--evaluations", type=int, default=3, help="sandboxed evaluations timed (0: skip)")
    parser.add_argument("--workers", type=int, default=2, help="evaluations run at once in the parallel run")
    args = parser.parse_args()
    cfg = ValidatorConfig()
    now = 1_000 * DAY
    scores = make_scores(args.miners, args.days, args.tasks_per_day, args.pool, seed=1)

    list_times, weights = timed(lambda: miner_weights(scores, now, cfg), args.repeat)
    cols = ([s.miner for s in scores], [s.task_id for s in scores],
            np.array([s.at for s in scores]), np.array([s.rank for s in scores]),
            np.array([s.ranked_count for s in scores]), np.array([s.task_weight for s in scores]))
    col_times, col_weights = timed(lambda: miner_weights_columns(*cols, now, cfg), args.repeat)
    assert weights == col_weights
    emission = 1_000 * 10**18
    amount_times, amounts = timed(lambda: epoch_amounts(weights, emission), args.repeat)
    assert sum(amounts.values()) == emission

    def summary(times: list[float]) -> dict[str, float]:
        return {"median_s": round(statistics.median(times), 4), "best_s": round(min(times), 4)}

    total = statistics.median(list_times) + statistics.median(amount_times)
    print(json.dumps({
        "benchmark": "validator",
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "numpy": np.__version__},
        "aggregation": {
            "miners": args.miners, "days": args.days, "task_scores": len(scores),
            "tasks": len({s.task_id for s in scores}), "miners_weighted": len(weights),
            "weights_sum": round(sum(weights.values()), 12),
            "weights_from_task_scores": summary(list_times),
            "weights_from_columns": summary(col_times),
            "epoch_amounts": summary(amount_times),
            "weights_and_amounts_s": round(total, 4),
            "target_s": 5.0, "under_target": total < 5.0,
        },
        "evaluations": evaluations_per_hour(args.evaluations, args.workers) if args.evaluations else None,
    }, indent=2))


def evaluations_per_hour(count: int, workers: int) -> dict[str, object]:
    """Time ``count`` sandboxed evaluations one at a time, then ``count`` with ``workers`` at once."""
    import tempfile
    from concurrent.futures import ThreadPoolExecutor

    from trainer.models import tiny_llama
    from trainer.recipes.base import NullReporter, TrainJob, get_recipe
    from validator.sandbox import evaluation_job, run_sandboxed
    from validator.tasks import bundled_dataset, prepare_task

    cfg = ValidatorConfig()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        base = tiny_llama(root / "base", seed=1)
        task = prepare_task(b"\x07" * 32, bundled_dataset(), "instruct", str(base), root / "tasks", "organic",
                            cfg)
        recipe = get_recipe("instruct")
        train = TrainJob(kind="instruct", base_model_dir=str(base), train_file=str(task.train_file),
                         output_dir=str(root / "adapter"), hparams={"max_length": 256, "lora_r": 8},
                         max_steps=5, device="cpu", threads=1)
        trained = recipe.train(train, NullReporter())
        rows = min(cfg.eval_max_examples, len(task.test_file.read_text().splitlines()))
        bundle = recipe.export(Path(trained.artifact_dir), root / "adapter.bundle")
        splits = {"test": task.test_file, "synthetic": task.synthetic_file}
        job = evaluation_job("instruct", base, bundle, splits, 10**9, cfg)

        def one(i: int) -> float:
            outcome = run_sandboxed(job, root / "eval" / str(i), cfg)
            assert outcome.losses.keys() == {"test", "synthetic"}, outcome
            return outcome.seconds

        serial = [one(i) for i in range(count)]
        start = time.perf_counter()
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(one, range(count, 2 * count)))
        parallel_s = time.perf_counter() - start
    per_eval = statistics.median(serial)
    return {
        "model_params": task.model_params, "rows_per_split": rows,
        "eval_s_median": round(per_eval, 2), "per_hour_one_worker": round(3600 / per_eval, 1),
        "workers": workers, "per_hour_parallel": round(3600 * count / parallel_s, 1),
    }


if __name__ == "__main__":
    main()
