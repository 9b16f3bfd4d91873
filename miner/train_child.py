"""`python -m miner.train_child JOB.json [--max-memory-bytes N]`: autoresearch, then the final artifact.

The trainer worker (trainer.worker) runs one recipe job; the miner also wants the budgeted
hyperparameter search around it, still in a child process. This module is that child: the same
JSON-lines events and caps as the worker (it reuses the worker's reporter and cap helpers), plus two
events of its own: ``{"event": "ready", "budget_s"}`` once torch and transformers are loaded and the
budget is set (the miner times spawn -> ready and plans later jobs with it), and
``{"event": "final_plan", "hparams", "max_steps", "budget_s"}``, sent when the search hands over to
the final run. The miner stores the plan: a miner restarted during the final
run resumes it from its checkpoint with those exact settings (``plan`` in the job) instead of
searching again.

Job file: ``{"train": <TrainJob JSON>, "autoresearch": bool, "plan": {...} | null, "deadline": unix s,
"budget_fraction": f}``: with a deadline, the budget is ``(deadline - now) x budget_fraction`` measured
once the imports are done (torch and transformers take 5-30 s to load on a busy 2-core machine).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any


class _PlanReportingRecipe:
    """Delegates to the real recipe; reports the final run's settings (the only run with a checkpoint)."""

    def __init__(self, recipe: Any, reporter: Any) -> None:
        self._recipe = recipe
        self._reporter = reporter

    def __getattr__(self, name: str) -> Any:
        return getattr(self._recipe, name)

    def train(self, job: Any, reporter: Any) -> Any:
        if job.checkpoint_dir is not None:
            self._reporter.emit(
                "final_plan", hparams=job.hparams, max_steps=job.max_steps, budget_s=job.budget_s
            )
        return self._recipe.train(job, reporter)


def _load_heavy_libraries() -> None:
    """Import torch, transformers and peft now, so the budget below starts after them.

    Recipes import them lazily inside their first step: on a busy 2-core machine that took 30-50 s of a
    one-minute budget and left the final run no time for a single step.
    """
    import peft  # noqa: F401
    import torch  # noqa: F401
    import transformers  # noqa: F401


def run(spec: dict[str, Any], reporter: Any) -> int:
    from trainer.recipes.base import TrainJob, get_recipe

    raw = dict(spec["train"])
    raw.pop("type", None)
    plan = spec.get("plan")
    if plan:  # resume the final run exactly as planned
        raw.update(hparams=plan["hparams"], max_steps=plan["max_steps"])
    _load_heavy_libraries()
    if spec.get("deadline"):  # the budget counts from now, after the slow imports, up to the deadline
        raw["budget_s"] = max(
            3.0, (float(spec["deadline"]) - time.time()) * float(spec.get("budget_fraction", 1.0))
        )
    reporter.emit("ready", budget_s=raw["budget_s"])  # the miner times spawn -> ready to plan the next job
    recipe = get_recipe(raw["kind"])
    if not plan:  # the miner's pinned settings are for every kind: keep those this recipe has
        pinned = dict(raw.get("hparams") or {})
        foreign = sorted(set(pinned) - set(recipe.default_hparams()))
        if foreign:
            reporter.log(f"pinned hyperparameters {foreign} do not apply to {raw['kind']} tasks: ignored")
            raw["hparams"] = {k: v for k, v in pinned.items() if k not in foreign}
    job = TrainJob(**raw)
    if job.threads is not None:
        import torch

        torch.set_num_threads(job.threads)
    if spec.get("autoresearch") and not plan:
        from trainer.autoresearch import SearchSettings, autoresearch

        settings = SearchSettings(**spec.get("search", {}))
        planner = _PlanReportingRecipe(recipe, reporter)
        result = autoresearch(job, reporter, settings=settings, recipe=planner)  # type: ignore[arg-type]
    else:
        reporter.phase("train")
        result = recipe.train(job, reporter)
    bundle_path = None
    if result.stopped_reason != "cancelled":
        reporter.phase("export")
        bundle_path = str(recipe.export(Path(result.artifact_dir), Path(result.artifact_dir + ".bundle")))
    reporter.emit("result", type="train", bundle_path=bundle_path, **result.to_dict())
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m miner.train_child")
    parser.add_argument("job", type=Path)
    parser.add_argument("--max-memory-bytes", type=int, default=None)
    args = parser.parse_args(argv)
    from trainer.worker import JsonLinesReporter, apply_memory_cap, apply_thread_cap, classify_failure

    events = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)  # libraries print to fd 1: keep the event stream clean
    sys.stdout = sys.stderr
    reporter = JsonLinesReporter(events)

    def on_sigterm(signum: int, frame: Any) -> None:
        reporter.stop_requested = True

    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        spec = json.loads(args.job.read_text(encoding="utf-8"))
        apply_thread_cap(spec["train"].get("threads"))
        apply_memory_cap(args.max_memory_bytes, reporter)
        return run(spec, reporter)
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        code, kind, message = classify_failure(exc)
        traceback.print_exc(file=sys.stderr)
        reporter.emit("error", kind=kind, message=message)
        return code
    finally:
        events.flush()


if __name__ == "__main__":
    sys.exit(main())
