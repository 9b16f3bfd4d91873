"""`python -m trainer.autoresearch JOB.json [--history-dir DIR] [--max-memory-bytes N]`: a whole
autoresearch job in one child process, speaking the worker's JSON-lines protocol (trainer.worker).

The trials run inside this process (see trial.py for why), so an out-of-memory error in a trial,
including one forced by the address-space cap, is caught and retried with a smaller micro-batch here
and never reaches the node. The final "result" event carries the TrainResult, the bundle path and the
path of the saved search trace.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from trainer.worker import (
    EXIT_INVALID,
    EXIT_OK,
    JsonLinesReporter,
    apply_memory_cap,
    apply_thread_cap,
    classify_failure,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer.autoresearch", description=__doc__)
    parser.add_argument("job", type=Path, help="a TrainJob as JSON (TrainJob.to_json())")
    parser.add_argument("--history-dir", type=Path, default=None, help="data dir of the warm-start history")
    parser.add_argument("--max-memory-bytes", type=int, default=None, help="RLIMIT_AS for this process")
    args = parser.parse_args(argv)
    events = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)  # library prints go to stderr; events keep the original stdout
    sys.stdout = sys.stderr
    reporter = JsonLinesReporter(events)
    try:
        raw = json.loads(args.job.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        reporter.emit("error", kind="invalid", message=f"cannot read job file {args.job}: {exc}")
        return EXIT_INVALID
    try:
        apply_thread_cap(raw.get("threads") if isinstance(raw, dict) else None)
        apply_memory_cap(args.max_memory_bytes, reporter)
        return _run(raw, args.history_dir, reporter)
    except Exception as exc:  # every failure becomes one clear error event
        code, kind, message = classify_failure(exc)
        reporter.emit("error", kind=kind, message=message)
        return code
    finally:
        events.flush()


def _run(raw: dict[str, object], history_dir: Path | None, reporter: JsonLinesReporter) -> int:
    from trainer.autoresearch.history import JsonHistoryStore, NullHistory
    from trainer.autoresearch.search import autoresearch
    from trainer.autoresearch.trace import trace_path
    from trainer.recipes.base import JobSpecError, TrainJob, get_recipe, job_from_dict

    job = job_from_dict(raw)
    if not isinstance(job, TrainJob):
        raise JobSpecError("autoresearch runs train jobs only")
    history = JsonHistoryStore(history_dir) if history_dir else NullHistory()
    result = autoresearch(job, reporter, history)
    reporter.phase("export")
    bundle = get_recipe(job.kind).export(Path(result.artifact_dir), Path(result.artifact_dir + ".bundle"))
    reporter.emit(
        "result",
        type="train",
        bundle_path=str(bundle),
        trace_path=str(trace_path(result.artifact_dir)),
        **result.to_dict(),
    )
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
