"""``python -m validator.sandbox_child JOB.json --memory-bytes N --cpu-seconds S``: one sandboxed job.

Runs in a child process of the validator, and before anything else:

1. cuts itself off the network: a new user + network namespace (``unshare(CLONE_NEWUSER |
   CLONE_NEWNET)``: no interface but a down loopback, so every connect fails), or, where the
   kernel refuses unprivileged namespaces, replaces socket creation for IP families with a
   function that raises. Which one applied is reported (``{"event": "sandbox", "isolation": ...}``);
2. caps its address space (RLIMIT_AS) and CPU time (RLIMIT_CPU; the kernel kills it past the hard
   limit) and disables core dumps;
3. only then imports torch and the trainer.

Jobs (JSON): ``{"mode": "evaluate", ...}`` extracts an artifact bundle into a fresh directory under
the bundle caps, checks its manifest against the base model with the recipe's ``check_artifact``
(names, shapes, dtypes, rank) before anything is loaded, then runs the trainer's ``evaluate`` on each
private split; ``{"mode": "selfcheck", ...}`` tries a connect and an allocation and reports what
happened (the validator's start-up check, and what the tests use); ``{"mode": "teach", ...}`` has
a teacher model answer held-back prompts (trainer.teacher) and writes the answers to a file.

Events are JSON lines on the original stdout (trainer.worker's reporter); everything else goes to
stderr. Error kinds: ``malformed`` (bundle or manifest rejected), ``oom``, ``crash``, ``invalid``.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import resource
import socket
import sys
from pathlib import Path
from typing import Any

CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
IP_FAMILIES = (socket.AF_INET, socket.AF_INET6)


class NetworkBlocked(PermissionError):
    """Raised by socket creation when the namespace could not be made."""


def isolate_network() -> str:
    """'namespace' when unshare worked, else 'socket_block' (sockets refused in Python)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.unshare(CLONE_NEWUSER | CLONE_NEWNET) == 0:
            return "namespace"
    except (OSError, AttributeError):
        pass
    block_sockets()
    return "socket_block"


def block_sockets() -> None:
    original = socket.socket

    class GuardedSocket(original):  # type: ignore[misc, valid-type]
        def __init__(self, family: Any = socket.AF_INET, *args: Any, **kwargs: Any) -> None:
            if family in IP_FAMILIES:
                raise NetworkBlocked("network access is blocked inside the evaluation sandbox")
            super().__init__(family, *args, **kwargs)

    socket.socket = GuardedSocket  # type: ignore[misc]

    def refuse(*_args: Any, **_kwargs: Any) -> Any:
        raise NetworkBlocked("network access is blocked inside the evaluation sandbox")

    socket.create_connection = refuse
    socket.getaddrinfo = refuse


def apply_limits(memory_bytes: int, cpu_seconds: int) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 5))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def selfcheck(job: dict[str, Any], reporter: Any) -> None:
    """Try a TCP connect and an allocation; report each outcome (both should fail)."""
    host, port = job.get("connect") or ("127.0.0.1", 9)
    try:
        with socket.create_connection((str(host), int(port)), timeout=2):
            reporter.emit("check", name="connect", ok=True, message="connected")
    except OSError as exc:
        reporter.emit("check", name="connect", ok=False, message=f"{type(exc).__name__}: {exc}")
    size = int(job.get("allocate_bytes") or 0)
    if size:
        block = bytearray(size)  # over RLIMIT_AS: MemoryError, reported as an "oom" job failure
        reporter.emit("check", name="allocate", ok=True, message=f"allocated {len(block)} bytes")


def evaluate(job: dict[str, Any], reporter: Any) -> None:
    from protocol.bundle import BundleCaps, extract_bundle
    from protocol.errors import BundleError
    from trainer.recipes.base import ArtifactRejected, EvalJob

    artifact_dir: str | None = None
    manifest = None
    if job.get("bundle"):  # extracted before torch is even imported: a bad bundle fails in a blink
        target = Path(job["work_dir"]) / "artifact"
        try:
            manifest = extract_bundle(job["bundle"], target, BundleCaps().limited_to(int(job["max_bytes"])))
            if manifest.kind != job["kind"]:
                raise ArtifactRejected(f"bundle kind {manifest.kind!r} is not the task's {job['kind']!r}")
        except (BundleError, ArtifactRejected) as exc:
            reporter.emit("error", kind="malformed", message=str(exc)[:500])
            raise SystemExit(4) from None
        artifact_dir = str(target)
    from trainer.recipes.base import get_recipe

    recipe = get_recipe(job["kind"])
    if manifest is not None:
        try:  # names, shapes, dtypes and rank against the base model, before any weight is loaded
            recipe.check_artifact(manifest, Path(job["base_model_dir"]))
        except ArtifactRejected as exc:
            reporter.emit("error", kind="malformed", message=str(exc)[:500])
            raise SystemExit(4) from None
    for split, path in job["splits"].items():
        eval_job = EvalJob(
            kind=job["kind"], base_model_dir=job["base_model_dir"], artifact_dir=artifact_dir,
            eval_file=path, seed=int(job.get("seed", 0)), device="cpu", threads=job.get("threads"),
            max_examples=job.get("max_examples"), rewards=job.get("rewards"),
            max_new_tokens=job.get("max_new_tokens"),
        )
        metrics = recipe.evaluate(eval_job, reporter)
        reporter.emit("result", split=split, metrics=metrics)


def teach(job: dict[str, Any], reporter: Any) -> None:
    """The teacher model's answers to held-back prompts (validator.synthetic, generator ``teacher``):
    rows in ``rows_file`` (jsonl), answers to ``out_file`` (jsonl of {"answer": str}), same order."""
    from trainer.data import instruct_prompt, read_records
    from trainer.teacher import teach as answer

    rows = read_records(job["rows_file"])
    prompts = [instruct_prompt(row, f"held-back row {i}") for i, row in enumerate(rows)]
    answers = answer(
        job["model_dir"], prompts, int(job["max_new_tokens"]), int(job.get("batch_size") or 8)
    )
    Path(job["out_file"]).write_text(
        "".join(json.dumps({"answer": a}, ensure_ascii=False) + "\n" for a in answers), encoding="utf-8"
    )
    reporter.emit("check", name="teach", ok=True, message=f"{len(answers)} answers")


MODES = {"selfcheck": selfcheck, "teach": teach}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m validator.sandbox_child")
    parser.add_argument("job", type=Path)
    parser.add_argument("--memory-bytes", type=int, required=True)
    parser.add_argument("--cpu-seconds", type=int, required=True)
    args = parser.parse_args(argv)
    isolation = isolate_network()
    apply_limits(args.memory_bytes, args.cpu_seconds)
    events = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    from trainer.worker import JsonLinesReporter, classify_failure

    reporter = JsonLinesReporter(events)
    reporter.emit("sandbox", isolation=isolation)
    try:
        job = json.loads(args.job.read_text(encoding="utf-8"))
        if job.get("threads"):
            from trainer.worker import apply_thread_cap

            apply_thread_cap(int(job["threads"]))
        MODES.get(str(job.get("mode")), evaluate)(job, reporter)
        reporter.emit("done")
        return 0
    except SystemExit as exc:
        return int(exc.code or 0)
    except BaseException as exc:  # every failure is one error event; the validator carries on
        if isinstance(exc, KeyboardInterrupt):
            raise
        code, kind, message = classify_failure(exc)
        try:
            reporter.emit("error", kind=kind, message=message[:500])
        except MemoryError:
            events.write('{"event": "error", "kind": "oom", "message": "out of memory"}\n')
        return code
    finally:
        events.flush()


if __name__ == "__main__":
    sys.exit(main())
