"""Run one evaluation (or a self-check) in a sandboxed child process and read back its outcome.

The child is ``python -m validator.sandbox_child`` (see that module for the sandbox itself: no
network, RLIMIT_AS and RLIMIT_CPU, bundle and manifest checks before loading). Here the parent
adds what a child cannot do for itself: an environment with the model hub switched off and no
proxy or credentials passed down, its own process group (so a timeout kills everything it
started), a wall-clock limit, and a reading of its JSON lines that trusts nothing in them beyond
the numbers it asked for. A crash, an out-of-memory kill or a timeout of the child is an outcome of
the job, never an exception in the validator.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from node.child import child_command
from protocol import strict_json
from validator.config import ValidatorConfig

REPO_ROOT = Path(__file__).resolve().parent.parent
# Only these variables reach the child: no tokens, keys or proxies.
PASSED_ENV = ("PATH", "LANG", "LC_ALL", "HOME", "TMPDIR", "PYTHONPATH", "VIRTUAL_ENV", "TORCHDYNAMO_DISABLE")
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "PYTHONUNBUFFERED": "1",
}


@dataclass
class SandboxOutcome:
    """What one sandboxed job produced."""

    losses: dict[str, float] = field(default_factory=dict)  # split -> finite loss
    malformed: str = ""  # the artifact was rejected before loading: why
    error: str = ""  # the job failed otherwise (oom, crash, timeout): why
    isolation: str = ""  # "namespace" | "socket_block" | "" (child died first)
    checks: dict[str, dict[str, Any]] = field(default_factory=dict)  # selfcheck results
    seconds: float = 0.0


def child_env() -> dict[str, str]:
    env = {k: os.environ[k] for k in PASSED_ENV if k in os.environ}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    return {**env, **OFFLINE_ENV}


def run_sandboxed(
    job: dict[str, Any],
    work_dir: Path,
    cfg: ValidatorConfig,
    memory_bytes: int | None = None,
    timeout_s: float | None = None,
) -> SandboxOutcome:
    """Run ``job`` in a fresh sandboxed child; blocking (call it from a worker thread)."""
    name = uuid.uuid4().hex[:10]
    work_dir = work_dir / f"run-{name}"  # fresh per attempt: a killed run's leftovers are never reused
    work_dir.mkdir(parents=True)
    job_file = work_dir / f"job-{name}.json"
    job_file.write_text(json.dumps({**job, "work_dir": str(work_dir)}), encoding="utf-8")
    cmd = [
        *child_command("validator.sandbox_child"),
        str(job_file),
        "--memory-bytes",
        str(memory_bytes or cfg.eval_memory_bytes),
        "--cpu-seconds",
        str(cfg.eval_cpu_seconds),
    ]
    started = time.monotonic()
    limit = timeout_s or cfg.eval_timeout_s
    with (
        (work_dir / f"job-{name}.stderr.log").open("wb") as log,
        subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log,
            cwd=str(work_dir),
            env=child_env(),
            start_new_session=True,
        ) as proc,
    ):
        try:
            out, _ = proc.communicate(timeout=limit)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            return SandboxOutcome(
                error=f"evaluation timed out after {limit:.0f} s", seconds=time.monotonic() - started
            )
    outcome = parse_events(out.decode("utf-8", "replace"), proc.returncode)
    outcome.seconds = time.monotonic() - started
    return outcome


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def parse_events(text: str, returncode: int) -> SandboxOutcome:
    """The outcome from the child's JSON lines (malformed lines are ignored)."""
    outcome = SandboxOutcome()
    for line in text.splitlines():
        try:
            event = strict_json.loads(line, "sandbox event", floats=True)
        except ValueError:
            continue
        if isinstance(event, dict):
            _apply_event(outcome, event)
    if not outcome.malformed and not outcome.error and returncode != 0:
        how = f"killed by signal {-returncode}" if returncode < 0 else f"exited with status {returncode}"
        if returncode == -signal.SIGXCPU or returncode == -signal.SIGKILL:
            how += " (CPU-time or memory limit)"
        outcome.error = f"evaluation worker {how}"
    return outcome


def _apply_event(outcome: SandboxOutcome, event: dict[str, Any]) -> None:
    kind = event.get("event")
    if kind == "sandbox":
        outcome.isolation = str(event.get("isolation", ""))[:32]
    elif kind == "result":
        metrics = event.get("metrics")
        loss = metrics.get("loss") if isinstance(metrics, dict) else None
        if isinstance(loss, int | float) and math.isfinite(loss) and loss >= 0:
            outcome.losses[str(event.get("split"))[:32]] = float(loss)
    elif kind == "check":
        outcome.checks[str(event.get("name"))[:32]] = {
            "ok": bool(event.get("ok")),
            "message": str(event.get("message"))[:300],
        }
    elif kind == "error":
        message = f"{event.get('kind')}: {str(event.get('message'))[:500]}"
        if event.get("kind") == "malformed":
            outcome.malformed = str(event.get("message"))[:500]
        else:
            outcome.error = message


def selfcheck(
    work_dir: Path,
    cfg: ValidatorConfig,
    connect: tuple[str, int] = ("127.0.0.1", 9),
    allocate_bytes: int = 0,
    memory_bytes: int | None = None,
) -> SandboxOutcome:
    """Check the sandbox on this machine: a connect and (optionally) an over-cap allocation."""
    job = {"mode": "selfcheck", "connect": list(connect), "allocate_bytes": allocate_bytes}
    return run_sandboxed(job, work_dir, cfg, memory_bytes=memory_bytes, timeout_s=60)


def evaluation_job(
    kind: str,
    base_model_dir: Path,
    bundle: Path | None,
    splits: dict[str, Path],
    max_bytes: int,
    cfg: ValidatorConfig,
    seed: int = 0,
    rewards: str | None = None,
    max_new_tokens: int | None = None,
) -> dict[str, Any]:
    """The sandbox child's evaluate job; ``rewards`` (grpo) names the task's reward functions and
    ``max_new_tokens`` (grpo) the completion length it is judged at (None: the recipe's default)."""
    return {
        "mode": "evaluate",
        "kind": kind,
        "base_model_dir": str(base_model_dir),
        "bundle": str(bundle) if bundle else None,
        "max_bytes": max_bytes,
        "splits": {k: str(v) for k, v in splits.items()},
        "threads": cfg.eval_threads,
        "max_examples": cfg.eval_max_examples,
        "seed": seed,
        "rewards": rewards,
        "max_new_tokens": max_new_tokens,
    }


MAX_TEACHER_ANSWER_CHARS = 16_384


class TeacherError(RuntimeError):
    """The teacher model could not answer (its job failed in the sandbox, or its output is unusable)."""


def run_teacher(rows: list[dict[str, Any]], work_dir: Path, cfg: ValidatorConfig) -> list[str]:
    """The configured teacher model's answers to ``rows`` (instruct rows; their answers are ignored),
    one per row in order, made in the evaluation sandbox with its limits; blocking."""
    work_dir.mkdir(parents=True, exist_ok=True)
    name = uuid.uuid4().hex[:10]
    rows_file, out_file = work_dir / f"teach-{name}.jsonl", work_dir / f"teach-{name}.answers.jsonl"
    rows_file.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    job = {
        "mode": "teach",
        "model_dir": str(Path(cfg.teacher_model).expanduser().resolve()),
        "rows_file": str(rows_file),
        "out_file": str(out_file),
        "max_new_tokens": cfg.teacher_max_new_tokens,
        "batch_size": cfg.teacher_batch_size,
        "threads": cfg.eval_threads,
    }
    outcome = run_sandboxed(job, work_dir, cfg)
    if outcome.error or outcome.malformed or not out_file.is_file():
        why = outcome.error or outcome.malformed or "it wrote no answers"
        raise TeacherError(f"the teacher model {cfg.teacher_model} could not answer: {why}")
    answers = []
    for i, line in enumerate(out_file.read_text(encoding="utf-8").splitlines()):
        row = strict_json.loads(line, f"teacher answer {i}")
        answer = row.get("answer") if isinstance(row, dict) else None
        if not isinstance(answer, str) or len(answer) > MAX_TEACHER_ANSWER_CHARS:
            raise TeacherError(f"teacher answer {i} is not a string of at most {MAX_TEACHER_ANSWER_CHARS} "
                               "characters")
        answers.append(answer)
    if len(answers) != len(rows):
        raise TeacherError(f"the teacher answered {len(answers)} of {len(rows)} prompts")
    return answers
