"""Benchmark: autoresearch against AutoTrain's defaults and the recipe's own static defaults.

    python bench/autoresearch.py --data FILE [--kind instruct|dpo] [--budget SECONDS] [--runs N]

Each run draws a (task subsample, seed): a held-out test split and a train split from FILE (any
format of the data contract: GSM8K-style jsonl, Alpaca-style json, HH-style jsonl[.gz]). Three
methods train on the same train split with the same wall-clock budget and are scored on the test
split, which nothing else sees:

  autoresearch  search + final run (trainer.autoresearch), cold start (no history) unless --history
  autotrain     HuggingFace AutoTrain's LLM defaults (NOTES.md): lr 3e-5, 1 epoch, batch 2, accumulation
                4, warm-up 0.1, linear, AdamW, weight decay 0, max grad norm 1, LoRA r16 / alpha 32 /
                dropout 0.05 on all linear layers. "1 epoch" is capped at the budget: the training loop
                shortens its schedule to fit when an epoch would not, and stops early when it fits.
  static        the recipe's `default_hparams()`, under the same budget rule.

The methods run one after the other in an order rotated per run, so a change in the machine's load
does not always hit the same method. Prints one JSON object: per-run test losses, win rates and mean
relative improvements (baseline - autoresearch) / baseline, and the CPU load seen.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from trainer.autoresearch import autoresearch, format_trace, load_trace, trace_path
from trainer.data import DataError, parse_example, read_records
from trainer.recipes import EvalJob, NullReporter, TrainJob, get_recipe

AUTOTRAIN = {
    "lr": 3e-5,
    "epochs": 1.0,
    "micro_batch_size": 2,
    "grad_accum": 4,
    "warmup_ratio": 0.1,
    "schedule": "linear",
    "weight_decay": 0.0,
    "max_grad_norm": 1.0,
    "lora_r": 16,
    "lora_alpha": 32.0,
    "lora_dropout": 0.05,
    "lora_targets": "all-linear",
}
TARGETS = {"vs_autotrain": {"win_rate": 0.9, "mean_rel_improvement": 0.15}, "vs_static": {"win_rate": 0.7}}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="task data file (jsonl, jsonl.gz or json list)")
    p.add_argument("--kind", default="instruct", choices=("instruct", "dpo"))
    p.add_argument("--budget", type=float, default=40.0, help="wall-clock seconds per method per run")
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--train-rows", type=int, default=400, help="train subsample per run")
    p.add_argument("--test-rows", type=int, default=64, help="held-out test rows per run")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: the machine is shared)")
    p.add_argument("--model", default=None, help="base model dir (default: the bundled one)")
    p.add_argument("--history", action="store_true", help="warm-start autoresearch from earlier runs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--show-traces", action="store_true", help="print each search trace to stderr")
    return p.parse_args(argv)


def base_model(arg: str | None, work: Path) -> Path:
    if arg:
        return Path(arg)
    from trainer.models import bundled_base_model_dir, tiny_llama

    try:
        return bundled_base_model_dir()
    except FileNotFoundError:
        return tiny_llama(work / "tiny-model")


def write_split(
    rows: list[dict[str, Any]], seed: int, n_train: int, n_test: int, out: Path
) -> tuple[Path, Path]:
    """A fresh (train, test) subsample per run; the test rows are never shown to any method."""
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    test = [rows[i] for i in order[:n_test]]
    train = [rows[i] for i in order[n_test : n_test + n_train]]
    out.mkdir(parents=True, exist_ok=True)
    paths = out / "train.jsonl", out / "test.jsonl"
    for path, part in zip(paths, (train, test), strict=True):
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in part), encoding="utf-8")
    return paths


def usable_rows(rows: list[dict[str, Any]], kind: str) -> tuple[list[dict[str, Any]], int]:
    """The rows the data contract accepts for `kind`, and how many it refused (Code Alpaca 2k has an
    empty `output`: a task file holding it is refused whole, so the benchmark leaves such rows out)."""
    kept = []
    for i, row in enumerate(rows):
        try:
            parse_example(row, kind, f"row {i}", Path("."))
        except DataError:
            continue
        kept.append(row)
    return kept, len(rows) - len(kept)


def autotrain_hparams(kind: str) -> dict[str, Any]:
    """AutoTrain's defaults, restricted to the names this recipe has."""
    defaults = get_recipe(kind).default_hparams()
    return {k: v for k, v in AUTOTRAIN.items() if k in defaults}


class Run:
    """One (subsample, seed): three methods on the same data and budget."""

    def __init__(self, args: argparse.Namespace, model: Path, train: Path, test: Path, seed: int, out: Path):
        self.args, self.model, self.seed, self.out = args, model, seed, out
        self.train, self.test = train, test
        self.recipe = get_recipe(args.kind)

    def job(self, name: str, hparams: dict[str, Any]) -> TrainJob:
        return TrainJob(
            kind=self.args.kind,
            base_model_dir=str(self.model),
            train_file=str(self.train),
            output_dir=str(self.out / name),
            hparams=hparams,
            budget_s=self.args.budget,
            seed=self.seed,
            device="auto",
            threads=self.args.threads,
        )

    def test_loss(self, artifact_dir: str | None) -> float:
        job = EvalJob(
            self.args.kind, str(self.model), artifact_dir, str(self.test), seed=0, threads=self.args.threads
        )
        return float(self.recipe.evaluate(job, NullReporter())["loss"])

    def method(self, name: str, history: Any) -> dict[str, Any]:
        started = time.monotonic()
        if name == "autoresearch":
            result = autoresearch(self.job(name, {}), NullReporter(), history)
        else:
            hparams = autotrain_hparams(self.args.kind) if name == "autotrain" else {}
            result = self.recipe.train(self.job(name, hparams), NullReporter())
        wall = time.monotonic() - started
        entry: dict[str, Any] = {
            "test_loss": self.test_loss(result.artifact_dir),
            "wall_s": round(wall, 2),
            "steps": result.steps,
            "stopped": result.stopped_reason,
        }
        if name == "autoresearch":
            trace = load_trace(trace_path(result.artifact_dir))
            searched = [t for t in trace.trials if t.number >= 0]
            entry["trials"] = len(searched)
            entry["pruned"] = sum(t.outcome == "pruned" for t in searched)
            entry["best_params"] = trace.best_params
            if self.args.show_traces:
                print(format_trace(trace), file=sys.stderr, flush=True)
        return entry


def warm_up(args: argparse.Namespace, model: Path, rows: list[dict[str, Any]], out: Path) -> None:
    """One step of training before any clock starts: one-off imports and allocator warm-up would
    otherwise be charged to whichever method runs first."""
    train, test = write_split(rows, 10**6, 16, 4, out / "data")
    run = Run(args, model, train, test, 0, out)
    job = run.job("warm-up", {})
    job.max_steps = 1
    run.recipe.train(job, NullReporter())


def summarise(runs: list[dict[str, Any]], baseline: str) -> dict[str, Any]:
    pairs = [(r["autoresearch"]["test_loss"], r[baseline]["test_loss"]) for r in runs]
    rel = [(b - a) / b for a, b in pairs]
    return {
        "win_rate": sum(a < b for a, b in pairs) / len(pairs),
        "mean_rel_improvement": statistics.fmean(rel),
        "median_rel_improvement": statistics.median(rel),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    started = time.monotonic()
    load_start = os.getloadavg()
    rows, dropped = usable_rows(read_records(args.data), args.kind)
    methods = ["autoresearch", "autotrain", "static"]
    with tempfile.TemporaryDirectory(prefix="bench-autoresearch-") as tmp:
        work = Path(tmp)
        model = base_model(args.model, work)
        history = None
        if args.history:
            from trainer.autoresearch import JsonHistoryStore

            history = JsonHistoryStore(work / "history")
        warm_up(args, model, rows, work / "warm-up")
        runs = []
        for i in range(args.runs):
            seed = args.seed + i
            run_dir = work / f"run-{i}"
            train, test = write_split(rows, seed, args.train_rows, args.test_rows, run_dir / "data")
            run = Run(args, model, train, test, seed, run_dir)
            record: dict[str, Any] = {"seed": seed, "base_test_loss": run.test_loss(None)}
            for name in methods[i % 3 :] + methods[: i % 3]:
                record[name] = run.method(name, history)
            record["load_avg_1m"] = os.getloadavg()[0]
            runs.append(record)
            print(json.dumps({"run": i, **record}), file=sys.stderr, flush=True)
        report = {
            "benchmark": "autoresearch",
            "data": str(args.data),
            "kind": args.kind,
            "model": "tiny_llama (no bundled model)" if model.name == "tiny-model" else str(model),
            "budget_s": args.budget,
            "runs": len(runs),
            "train_rows": args.train_rows,
            "rows_refused_by_the_data_contract": dropped,
            "test_rows": args.test_rows,
            "threads": args.threads,
            "warm_history": args.history,
            "vs_autotrain": summarise(runs, "autotrain"),
            "vs_static": summarise(runs, "static"),
            "targets": TARGETS,
            "mean_test_loss": {m: statistics.fmean(r[m]["test_loss"] for r in runs) for m in methods},
            "mean_base_test_loss": statistics.fmean(r["base_test_loss"] for r in runs),
            "load_avg_start": load_start,
            "load_avg_end": os.getloadavg(),
            "cpu_count": os.cpu_count(),
            "wall_s": round(time.monotonic() - started, 1),
            "per_run": runs,
        }
    print(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
