"""Training jobs in child processes, watched: progress in, stalls and crashes detected and restarted.

``JobDriver.run()`` starts ``python -m miner.train_child`` (autoresearch + final run + export), relays
its JSON-lines events into trio, and returns the bundle path of the result; ``on_ready`` gets the
seconds from spawning the child to its ``ready`` event (its libraries loaded, its budget set).
The watchdog: a child that sends nothing for ``stall_timeout_s`` is killed and started again (it
resumes from its checkpoint), as is one that dies without a result; after ``max_restarts`` the job
fails with the last reason. Each incident is reported through ``on_alert`` so the user sees why.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from node.child import child_command
from trainer.client import WorkerHandle

REPO_ROOT = Path(__file__).resolve().parent.parent


class JobFailed(RuntimeError):
    """The training job could not produce an artifact; the message says why."""


class JobStopped(RuntimeError):
    """The user stopped mining while the job ran: not a failure, and the job is not restarted."""


@dataclass
class JobSpec:
    train: dict[str, Any]  # TrainJob fields (kind, base_model_dir, train_file, output_dir, budget_s, ...)
    autoresearch: bool
    plan: dict[str, Any] | None = None
    deadline: float = 0.0  # unix time the artifact must exist by; 0: train["budget_s"] as given
    budget_fraction: float = 1.0
    search: dict[str, Any] = field(default_factory=dict)  # trainer.autoresearch.SearchSettings fields
    search_cutoff: float = 0.0  # unix time: no final run started by then -> train with defaults instead
    # > 0 with a deadline: once the child is ready the cutoff moves to this share of the time it has
    # left (a slow start must not eat the search's time: under load the start alone took 30-45 s)
    search_share: float = 0.0


@dataclass
class JobDriver:
    """Runs one job spec to a bundle, restarting it when the watchdog says so."""

    work_dir: Path
    stall_timeout_s: float
    max_restarts: int
    max_memory_bytes: int | None = None
    nice: int = 0
    on_event: Callable[[dict[str, Any]], None] = lambda _e: None
    on_alert: Callable[[str, str], None] = lambda _problem, _action: None
    on_ready: Callable[[float], None] = lambda _seconds: None  # spawn -> "ready" (libraries loaded), s
    command: list[str] = field(default_factory=lambda: child_command("miner.train_child"))
    env: dict[str, str] = field(default_factory=dict)  # extra environment (CUDA_VISIBLE_DEVICES for one GPU)
    restarts: int = 0
    handle: WorkerHandle | None = None
    final_started: bool = False  # autoresearch handed over to its final run
    search_abandoned: bool = False
    stopped: bool = False  # set by `stop` (any thread): the next outcome ends the run, whatever it is

    def stop(self, grace_s: float = 5.0) -> None:
        """Stop the job (thread-safe): its process checkpoints and exits, and `run` raises JobStopped."""
        self.stopped = True
        handle = self.handle
        if handle is not None:
            handle.cancel(grace_s)

    async def run(self, spec_of: Callable[[], JobSpec]) -> str:
        """Run until a result; ``spec_of`` is asked again before each restart (the plan may be known)."""
        while True:
            if self.stopped:
                raise JobStopped("mining was stopped")
            spec = spec_of()
            if self.search_abandoned:
                spec.autoresearch, spec.plan = False, None
            outcome = await self._attempt(spec)
            if self.stopped:  # a cancelled process looks like a crash or an early result: it is neither
                raise JobStopped("mining was stopped during training")
            if outcome.get("event") == "result":
                if not outcome.get("bundle_path"):
                    raise JobFailed("training stopped before it produced an artifact")
                return str(outcome["bundle_path"])
            problem, reason = outcome["problem"], outcome["reason"]
            if outcome.get("fallback"):
                self.search_abandoned = True
                self.on_alert(problem, f"training with default settings instead: {reason}")
                continue
            if outcome.get("final") or self.restarts >= self.max_restarts:
                self.on_alert(problem, f"giving the job up: {reason}")
                raise JobFailed(f"{problem}: {reason}")
            self.restarts += 1
            self.on_alert(
                problem,
                f"restarting the job from its checkpoint ({self.restarts} of {self.max_restarts}): {reason}",
            )

    async def _attempt(self, spec: JobSpec) -> dict[str, Any]:
        spawned = time.monotonic()
        handle = self._start(spec)
        self.handle = handle
        send, receive = trio.open_memory_channel[dict[str, Any]](math.inf)
        token = trio.lowlevel.current_trio_token()
        reader = threading.Thread(target=_pump, args=(handle, send, token), daemon=True, name="miner-job")
        reader.start()
        try:
            async with receive:
                return await self._watch(receive, spec, spawned)
        finally:
            if handle.proc.poll() is None:
                with trio.CancelScope(shield=True):  # also when cancelled (deadline, stop): never orphan it
                    await trio.to_thread.run_sync(handle.cancel, 5.0)
            self.handle = None

    async def _watch(
        self, receive: trio.MemoryReceiveChannel[dict[str, Any]], spec: JobSpec, spawned: float
    ) -> dict[str, Any]:
        searching = spec.autoresearch and not spec.plan and spec.search_cutoff > 0
        alive = False  # the child has loaded its libraries and spoken: only then is a slow search its fault
        while True:
            wait = self.stall_timeout_s
            if searching and alive and not self.final_started:
                wait = min(wait, max(0.0, spec.search_cutoff - time.time()))
                if wait <= 0:
                    return {
                        "problem": "search overran",
                        "fallback": True,
                        "reason": "the hyperparameter search did not hand over to its final run in time",
                    }
            with trio.move_on_after(wait) as waiting:
                try:
                    event = await receive.receive()
                except trio.EndOfChannel:
                    return {"problem": "job crashed", "reason": "the training process ended without a result"}
            if (
                waiting.cancelled_caught
                and searching
                and alive
                and not self.final_started
                and time.time() >= spec.search_cutoff
            ):
                continue  # the cutoff, not a stall: answered at the top of the loop
            if waiting.cancelled_caught:
                return {
                    "problem": "stalled job",
                    "reason": f"no progress from the training process for {self.stall_timeout_s:.0f} s",
                }
            if event.get("event") == "result":
                return event
            if event.get("event") == "error":
                kind = str(event.get("kind", "crash"))
                final = kind in ("invalid", "rejected")  # the same job would fail the same way again
                return {
                    "problem": "job crashed" if kind in ("crash", "killed") else f"job failed ({kind})",
                    "reason": str(event.get("message", ""))[:300],
                    "final": final,
                }
            alive = True
            if event.get("event") == "ready":
                self.on_ready(time.monotonic() - spawned)
                if spec.search_share > 0 and spec.deadline > 0:
                    now = time.time()
                    spec.search_cutoff = now + spec.search_share * max(0.0, spec.deadline - now)
            if event.get("event") == "final_plan":
                self.final_started = True
            self.on_event(event)

    def _start(self, spec: JobSpec) -> WorkerHandle:
        jobs = self.work_dir / "jobs"
        jobs.mkdir(parents=True, exist_ok=True)
        name = uuid.uuid4().hex[:12]
        job_file = jobs / f"{name}.json"
        job_file.write_text(
            json.dumps(
                {
                    "train": spec.train,
                    "autoresearch": spec.autoresearch,
                    "plan": spec.plan,
                    "deadline": spec.deadline,
                    "budget_fraction": spec.budget_fraction,
                }
            ),
            encoding="utf-8",
        )
        log_file = jobs / f"{name}.stderr.log"
        cmd = [*self.command, str(job_file)]
        if self.max_memory_bytes:
            cmd += ["--max-memory-bytes", str(self.max_memory_bytes)]
        if self.nice > 0 and os.name == "posix":
            cmd = ["nice", "-n", str(self.nice), *cmd]
        log = log_file.open("wb")
        env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "TOKENIZERS_PARALLELISM": "false",
            "TORCHDYNAMO_DISABLE": "1",
            **self.env,
        }
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            encoding="utf-8",
            cwd=str(REPO_ROOT),
            env=env,
        )
        return WorkerHandle(proc, job_file, log_file, log)

    def kill(self) -> None:
        """SIGKILL the running child (tests simulate a crash with it)."""
        if self.handle is not None:
            self.handle.kill()


def _pump(
    handle: WorkerHandle, send: trio.MemorySendChannel[dict[str, Any]], token: trio.lowlevel.TrioToken
) -> None:
    """Reader thread: the child's events into trio; the channel closes when the child's stdout does."""
    try:
        for event in handle.events():
            if event.get("event") == "error" and event.get("kind") == "cancelled":
                break  # we stopped it ourselves
            trio.from_thread.run_sync(send.send_nowait, event, trio_token=token)
    except (trio.RunFinishedError, trio.BrokenResourceError, trio.ClosedResourceError, ValueError, OSError):
        return
    finally:
        try:
            trio.from_thread.run_sync(send.close, trio_token=token)
        except trio.RunFinishedError:
            pass
