"""The job watchdog: a stalled or crashed training process is reported with its reason and restarted."""

from __future__ import annotations

import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import trio

from miner.jobs import JobDriver, JobFailed, JobSpec, JobStopped

FAKE_CHILD = Path(__file__).with_name("fake_child.py")


def driver(
    tmp_path: Path, alerts: list[tuple[str, str]], stall_s: float = 1.5, restarts: int = 2
) -> JobDriver:
    return JobDriver(
        tmp_path,
        stall_timeout_s=stall_s,
        max_restarts=restarts,
        on_alert=lambda problem, action: alerts.append((problem, action)),
        command=[sys.executable, str(FAKE_CHILD)],
    )


def spec(tmp_path: Path, mode: str) -> JobSpec:
    return JobSpec({"hparams": {"mode": mode}, "output_dir": str(tmp_path / "out")}, autoresearch=False)


def test_a_healthy_job_returns_its_bundle_without_alerts(tmp_path: Path) -> None:
    alerts: list[tuple[str, str]] = []
    events: list[dict[str, object]] = []
    ready: list[float] = []
    job = driver(tmp_path, alerts)
    job.on_event, job.on_ready = events.append, ready.append
    started = time.monotonic()
    bundle = trio.run(job.run, lambda: spec(tmp_path, "ok"))
    assert Path(bundle).read_bytes() == b"bundle" and not alerts
    assert any(e.get("event") == "progress" for e in events)
    assert len(ready) == 1 and 0 < ready[0] < time.monotonic() - started  # spawn -> ready, timed


def test_a_stalled_job_is_detected_reported_restarted_and_finally_given_up(tmp_path: Path) -> None:
    alerts: list[tuple[str, str]] = []
    job = driver(tmp_path, alerts, stall_s=1.5, restarts=1)

    async def main() -> None:
        with trio.fail_after(30):  # without the watchdog this would wait for the silent child forever
            await job.run(lambda: spec(tmp_path, "stall"))

    with pytest.raises(JobFailed, match="stalled job"):
        trio.run(main)
    assert [problem for problem, _ in alerts] == ["stalled job", "stalled job"]
    assert "restarting the job from its checkpoint (1 of 1)" in alerts[0][1]
    assert "giving the job up" in alerts[1][1] and "no progress" in alerts[1][1]


def test_a_crashed_job_is_restarted_and_the_restart_finishes(tmp_path: Path) -> None:
    alerts: list[tuple[str, str]] = []
    job = driver(tmp_path, alerts)
    bundle = trio.run(job.run, lambda: spec(tmp_path, "crash_once"))
    assert Path(bundle).exists() and job.restarts == 1
    assert alerts and alerts[0][0] == "job crashed" and "without a result" in alerts[0][1]


def test_a_search_that_overruns_its_cutoff_falls_back_to_plain_training(tmp_path: Path) -> None:
    """The child takes 1 s to start: the cutoff planned before (0.5 s) has passed when it is ready, so
    it moves to half of the 3 s left then; the search is cut there, not at once, nor at the stall."""
    alerts: list[tuple[str, str]] = []
    job = driver(tmp_path, alerts, stall_s=60.0)
    job.env = {"FAKE_CHILD_STARTUP_S": "1.0"}
    ready: list[float] = []
    alerted: list[float] = []
    job.on_ready = lambda _s: ready.append(time.monotonic())
    job.on_alert = lambda problem, action: (
        alerts.append((problem, action)),
        alerted.append(time.monotonic()),
    )
    started = time.monotonic()

    def slow_search() -> JobSpec:
        now = time.time()
        base = spec(tmp_path, "slow_search")
        return replace(base, autoresearch=True, search_cutoff=now + 0.5, deadline=now + 4.0, search_share=0.5)

    bundle = trio.run(job.run, slow_search)
    assert Path(bundle).exists() and job.search_abandoned
    assert time.monotonic() - started < 30  # the cutoff, not the 60 s stall timeout, ended the search
    assert alerts[0][0] == "search overran" and "default settings" in alerts[0][1]
    assert alerted[0] - ready[0] > 0.8  # cut at the moved cutoff (~1.5 s after ready), not on arrival


def test_a_job_cancelled_by_its_deadline_leaves_no_training_process_behind(tmp_path: Path) -> None:
    job = driver(tmp_path, [], stall_s=60.0)
    seen: list[object] = []

    async def main() -> None:
        async with trio.open_nursery() as nursery:

            async def watch() -> None:
                while job.handle is None:
                    await trio.sleep(0.05)
                seen.append(job.handle.proc)

            nursery.start_soon(watch)
            with trio.move_on_after(3.0):  # the commit deadline passes mid-training
                await job.run(lambda: spec(tmp_path, "stall"))

    trio.run(main)
    proc = seen[0]
    assert proc.poll() is not None  # type: ignore[attr-defined]


def test_a_job_stopped_by_the_user_is_not_restarted_and_leaves_no_process(tmp_path: Path) -> None:
    """Stop mining mid-training: the cancelled process is neither a crash nor a stall (no restart)."""
    alerts: list[tuple[str, str]] = []
    job = driver(tmp_path, alerts, stall_s=60.0, restarts=3)
    seen: list[object] = []
    stopped: list[JobStopped] = []

    async def main() -> None:
        async with trio.open_nursery() as nursery:

            async def press_stop() -> None:
                while job.handle is None:
                    await trio.sleep(0.05)
                seen.append(job.handle.proc)
                await trio.sleep(0.5)  # mid-run: the child has spoken and is "training"
                await trio.to_thread.run_sync(job.stop, 1.0)  # the GUI calls it from another thread

            nursery.start_soon(press_stop)
            with trio.fail_after(30):
                try:
                    await job.run(lambda: spec(tmp_path, "stall"))
                except JobStopped as exc:
                    stopped.append(exc)

    trio.run(main)
    assert stopped, "the run did not end with JobStopped"
    assert job.restarts == 0 and not alerts, alerts
    assert seen[0].poll() is not None  # type: ignore[attr-defined]
    with pytest.raises(JobStopped):  # a stopped driver does not start another process
        trio.run(job.run, lambda: spec(tmp_path, "ok"))
