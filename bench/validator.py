"""Validator benchmark: prints one JSON object.

Measures the time to aggregate scores into weights (and epoch amounts) for 10,000 miners over
7 days of tasks: pools of 12, each miner in about 4 tasks a day (280,000 task scores). Target:
under 5 s. Evaluations per hour need the evaluation worker (trainer) and are not measured here.

Run: ``.venv/bin/python bench/validator.py [--miners N] [--days D] [--tasks-per-day T] [--repeat R]``
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
        "evaluations_per_hour": "not measured: needs the evaluation worker",
    }, indent=2))


if __name__ == "__main__":
    main()
