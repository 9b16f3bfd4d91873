"""Start, watch, cancel and resume trainer worker processes. Imports no torch (the GUI process uses it).

    client = WorkerClient(work_dir, max_memory_bytes=4 << 30)
    handle = client.start(job)               # TrainJob / EvalJob / dict
    for event in handle.events():            # dicts, see trainer.worker for the protocol
        ...
    handle.wait(timeout=10)

A worker killed mid-run (crash, power loss, SIGKILL) is resumed by starting the same job again with
the same `checkpoint_dir`: the worker finds its checkpoint and continues from that step.
If the process ends without a "result" or "error" event, `events()` ends with a synthesized
{"event": "error", "kind": "killed"|"crash", ...} carrying the tail of the worker's stderr.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from protocol import strict_json
from trainer.config import TrainerConfig
from trainer.recipes.base import EvalJob, TrainJob

DEFAULT_KILL_GRACE_S = 10.0
STDERR_TAIL_BYTES = 4000


class WorkerHandle:
    """One running worker process."""

    def __init__(
        self,
        proc: subprocess.Popen[str],
        job_file: Path,
        log_file: Path,
        log: IO[bytes],
        kill_grace_s: float = DEFAULT_KILL_GRACE_S,
    ) -> None:
        self.proc = proc
        self.kill_grace_s = kill_grace_s
        self.job_file = job_file
        self.log_file = log_file
        self._log = log
        self.result: dict[str, Any] | None = None
        self.error: dict[str, Any] | None = None
        self.cancelled = False

    @property
    def pid(self) -> int:
        return self.proc.pid

    def events(self) -> Iterator[dict[str, Any]]:
        """Every event until the worker exits (blocking); ends with a result or an error."""
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            event = self._parse(line)
            if event is None:
                continue
            if event.get("event") == "result":
                self.result = event
            elif event.get("event") == "error":
                self.error = event
            yield event
        code = self.proc.wait()
        self._close_streams()
        if self.result is None and self.error is None:
            self.error = self._death_event(code)
            yield self.error

    def _parse(self, line: str) -> dict[str, Any] | None:
        line = line.strip()
        if not line:
            return None
        try:
            event = strict_json.loads(line, "worker event", floats=True)
        except ValueError:
            return {"event": "log", "message": line[:1000]}
        if isinstance(event, dict) and "event" in event:
            return event
        return {"event": "log", "message": line[:1000]}

    def _death_event(self, code: int) -> dict[str, Any]:
        tail = self.stderr_tail()
        if code < 0:
            name = signal.Signals(-code).name
            why = "cancelled" if self.cancelled else "killed"
            return {"event": "error", "kind": why, "message": f"worker {why} by {name}", "stderr": tail}
        return {
            "event": "error",
            "kind": "crash",
            "message": f"worker exited with code {code} without a result (see stderr)",
            "stderr": tail,
        }

    def stderr_tail(self) -> str:
        try:
            with self.log_file.open("rb") as fh:
                fh.seek(max(0, self.log_file.stat().st_size - STDERR_TAIL_BYTES))
                return fh.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def cancel(self, grace_s: float | None = None) -> int:
        """SIGTERM (graceful: checkpoint and stop), then SIGKILL after `grace_s`; returns the exit code."""
        grace_s = self.kill_grace_s if grace_s is None else grace_s
        self.cancelled = True
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.wait()

    def kill(self) -> int:
        """SIGKILL at once (tests use it to simulate a crash)."""
        if self.proc.poll() is None:
            self.proc.kill()
        return self.proc.wait()

    def wait(self, timeout: float | None = None) -> int:
        """Wait for exit (raises subprocess.TimeoutExpired); drain events() to avoid a full pipe."""
        code = self.proc.wait(timeout=timeout)
        return code

    def _close_streams(self) -> None:
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._log.close()

    def close(self) -> None:
        """Kill if still running and release the pipes."""
        self.kill()
        self._close_streams()


class WorkerClient:
    """Starts `python -m trainer.worker` children with caps on memory and threads."""

    def __init__(
        self,
        work_dir: str | Path,
        max_memory_bytes: int | None = None,
        threads: int | None = None,
        python: str = sys.executable,
        nice: int = 0,
        kill_grace_s: float = DEFAULT_KILL_GRACE_S,
    ) -> None:
        self.work_dir = Path(work_dir)
        self.max_memory_bytes = max_memory_bytes
        self.threads = threads
        self.python = python
        self.nice = nice
        self.kill_grace_s = kill_grace_s

    @classmethod
    def from_config(cls, config: TrainerConfig, work_dir: str | Path) -> WorkerClient:
        """A client with the node's trainer settings (0 means "no cap" for threads and memory)."""
        return cls(
            work_dir,
            max_memory_bytes=config.max_memory_bytes or None,
            threads=config.threads or None,
            nice=config.worker_nice,
            kill_grace_s=config.cancel_grace,
        )

    def start(self, job: TrainJob | EvalJob | dict[str, Any]) -> WorkerHandle:
        data = json.loads(job.to_json()) if isinstance(job, TrainJob | EvalJob) else dict(job)
        if self.threads is not None and data.get("threads") is None:
            data["threads"] = self.threads
        jobs = self.work_dir / "jobs"
        jobs.mkdir(parents=True, exist_ok=True)
        name = uuid.uuid4().hex[:12]
        job_file = jobs / f"{name}.json"
        job_file.write_text(json.dumps(data), encoding="utf-8")
        log_file = jobs / f"{name}.stderr.log"
        cmd = [self.python, "-m", "trainer.worker", str(job_file)]
        if self.max_memory_bytes is not None:
            cmd += ["--max-memory-bytes", str(self.max_memory_bytes)]
        if self.nice > 0 and os.name == "posix":
            cmd = ["nice", "-n", str(self.nice), *cmd]
        log = log_file.open("wb")
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            encoding="utf-8",
            cwd=str(Path(__file__).resolve().parent.parent),
            env={**os.environ, "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false"},
        )
        return WorkerHandle(proc, job_file, log_file, log, self.kill_grace_s)
