"""`python -m trainer.worker JOB.json [--max-memory-bytes N]`: run ONE train or eval job.

Protocol: one JSON object per line on stdout, each with an "event" field:

- {"event": "phase", "name": ...}
- {"event": "progress", "step", "total_steps", "loss", "tokens_per_s", "percent", "eta_s", ...}
- {"event": "metric", "name", "value"}
- {"event": "log", "message"}
- {"event": "checkpoint", "step", "path"}
- {"event": "result", "type": "train"|"eval", ...} (train: the TrainResult fields and "bundle_path")
- {"event": "error", "kind": "oom"|"invalid"|"rejected"|"diverged"|"crash", "message"}

Anything a library prints goes to stderr: fd 1 is redirected there before any heavy import, and the
events are written to a private duplicate of the original stdout.

Caps: `--max-memory-bytes` caps host memory (see `apply_memory_cap`): with a CPU-only torch, RLIMIT_AS,
so an allocation over the cap fails inside this process (reported as kind "oom") and never touches the
parent; with a CUDA/ROCm build (whose libraries and driver need far more address space than any RAM
cap), a resident-set watchdog that ends the job with kind "oom" (exit 3). `threads` in the job
sets the BLAS/OpenMP thread counts and torch.set_num_threads. SIGTERM asks for a graceful stop
(recipes that poll `should_stop()` checkpoint and return "cancelled"); the client follows with
SIGKILL after a grace period.

Exit codes: 0 done (also after a graceful cancel), 1 crash, 2 invalid job or data, 3 out of memory,
4 artifact rejected, 5 training diverged.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import IO, Any

EXIT_OK, EXIT_CRASH, EXIT_INVALID, EXIT_OOM, EXIT_REJECTED, EXIT_DIVERGED = 0, 1, 2, 3, 4, 5
THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class JsonLinesReporter:
    """A `Reporter` writing events as JSON lines; SIGTERM flips `should_stop`."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self.stop_requested = False

    def emit(self, event: str, **fields: Any) -> None:
        record = {"event": event, "time": time.time(), **{k: _jsonable(v) for k, v in fields.items()}}
        self.out.write(json.dumps(record, default=str) + "\n")
        self.out.flush()

    def phase(self, name: str) -> None:
        self.emit("phase", name=name)

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
        self.emit(
            "progress",
            step=step,
            total_steps=total_steps,
            loss=loss,
            tokens_per_s=tokens_per_s,
            percent=percent,
            eta_s=eta_s,
            **extra,
        )

    def metric(self, name: str, value: float) -> None:
        self.emit("metric", name=name, value=value)

    def log(self, message: str) -> None:
        self.emit("log", message=message)

    def checkpoint(self, step: int, path: str) -> None:
        self.emit("checkpoint", step=step, path=path)

    def should_stop(self) -> bool:
        return self.stop_requested


_memory_cap = "unlimited"


def apply_memory_cap(max_bytes: int | None, reporter: JsonLinesReporter | None = None) -> None:
    """Cap this process's host memory at `max_bytes` (call after `apply_thread_cap`: imports torch).

    With a CPU-only torch build, RLIMIT_AS: an allocation over the cap raises MemoryError where it
    happens, and the job reports "oom". A CUDA or ROCm build maps several GB of libraries and the
    driver reserves more address space than any RAM cap, so there a watchdog thread samples the
    resident set every 100 ms instead and ends the process with exit 3 ("oom") once it passes the cap.
    """
    global _memory_cap
    if max_bytes is None:
        return
    import torch

    if torch.version.cuda is None and torch.version.hip is None:
        try:
            import resource
        except ImportError:  # Windows: no RLIMIT_AS (a job object would be needed)
            raise RuntimeError("a memory cap needs a POSIX system (RLIMIT_AS); run without one") from None
        resource.setrlimit(resource.RLIMIT_AS, (max_bytes, max_bytes))
        _memory_cap = f"address space {max_bytes}"
    else:
        start_rss_watchdog(max_bytes, reporter)
        _memory_cap = f"resident set {max_bytes} (watchdog: RLIMIT_AS would stop CUDA from starting)"


RSS_POLL_S = 0.1


def start_rss_watchdog(max_bytes: int, reporter: JsonLinesReporter | None) -> None:
    """Over the cap: report "oom" (on `reporter`, else stderr) and end this process with exit 3."""
    import threading

    import psutil

    process = psutil.Process()

    def watch() -> None:
        while True:
            rss = process.memory_info().rss
            if rss > max_bytes:
                message = (
                    f"out of memory: host memory {rss >> 20} MiB passed the cap of {max_bytes >> 20} MiB; "
                    "use a smaller micro-batch, a shorter max_length or a higher memory cap"
                )
                try:
                    if reporter is not None:
                        reporter.emit("error", kind="oom", message=message)
                    else:
                        print(message, file=sys.stderr, flush=True)
                finally:
                    os._exit(EXIT_OOM)
            time.sleep(RSS_POLL_S)

    threading.Thread(target=watch, name="rss-watchdog", daemon=True).start()


def memory_cap() -> str:
    """The host-memory cap in force, in words (for the worker's first log line)."""
    return _memory_cap


def apply_thread_cap(threads: int | None) -> None:
    """Before torch is imported (OpenMP reads the environment once)."""
    if threads is None:
        return
    for var in THREAD_ENV_VARS:
        os.environ[var] = str(threads)


def is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and (
        "out of memory" in text or "can't allocate memory" in text or "cannot allocate memory" in text
    )


def run_job(job: Any, reporter: JsonLinesReporter) -> int:
    import torch

    from trainer.recipes.base import EvalJob, get_recipe

    if job.threads is not None:
        torch.set_num_threads(job.threads)
    reporter.log(f"caps: torch threads {torch.get_num_threads()}, memory cap: {memory_cap()}")
    recipe = get_recipe(job.kind)
    if isinstance(job, EvalJob):
        metrics = recipe.evaluate(job, reporter)
        reporter.emit("result", type="eval", metrics=metrics)
        return EXIT_OK
    result = recipe.train(job, reporter)
    bundle_path = None
    if result.stopped_reason != "cancelled":
        reporter.phase("export")
        bundle_path = str(recipe.export(Path(result.artifact_dir), Path(result.artifact_dir + ".bundle")))
    reporter.emit("result", type="train", bundle_path=bundle_path, **result.to_dict())
    return EXIT_OK


def classify_failure(exc: BaseException) -> tuple[int, str, str]:
    """(exit code, error kind, message) for an exception that ended the job."""
    from trainer.data import DataError
    from trainer.recipes.base import ArtifactRejected, TrainerError

    if is_out_of_memory(exc):
        return (
            EXIT_OOM,
            "oom",
            f"out of memory: {exc or type(exc).__name__}; use a smaller micro-batch, gradient "
            "checkpointing, a shorter max_length or a higher memory cap",
        )
    if isinstance(exc, ArtifactRejected):
        return EXIT_REJECTED, "rejected", f"artifact rejected: {exc}"
    if isinstance(exc, FloatingPointError):
        return EXIT_DIVERGED, "diverged", str(exc)
    if isinstance(exc, DataError | TrainerError | FileNotFoundError):
        return EXIT_INVALID, "invalid", str(exc)
    return EXIT_CRASH, "crash", f"{type(exc).__name__}: {exc}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer.worker", description="Run one trainer job.")
    parser.add_argument("job", type=Path, help="path of the job JSON file (TrainJob/EvalJob.to_json())")
    parser.add_argument(
        "--max-memory-bytes",
        type=int,
        default=None,
        help="host memory cap for this job (RLIMIT_AS on CPU, a resident-set watchdog with CUDA)",
    )
    args = parser.parse_args(argv)

    # Private copy of stdout for events; everything else printed to fd 1 lands on stderr.
    events = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    reporter = JsonLinesReporter(events)

    def on_sigterm(signum: int, frame: Any) -> None:
        reporter.stop_requested = True

    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        raw = json.loads(args.job.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        reporter.emit("error", kind="invalid", message=f"cannot read job file {args.job}: {exc}")
        return EXIT_INVALID
    try:
        apply_thread_cap(raw.get("threads") if isinstance(raw, dict) else None)
        apply_memory_cap(args.max_memory_bytes, reporter)
        from trainer.recipes.base import job_from_dict

        job = job_from_dict(raw)
        return run_job(job, reporter)
    except BaseException as exc:  # every failure becomes one clear error event
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        code, kind, message = classify_failure(exc)
        traceback.print_exc(file=sys.stderr)
        try:
            reporter.emit("error", kind=kind, message=message)
        except MemoryError:
            events.write('{"event": "error", "kind": "oom", "message": "out of memory"}\n')
        return code
    finally:
        events.flush()


if __name__ == "__main__":
    sys.exit(main())
