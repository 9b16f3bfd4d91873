"""One task, step by step: join, download, train, commit, reveal. Each step is written to the store
before the next one relies on it, so a miner restarted at any point resumes the same task.

Every step is a method named after the phase it leaves (``_from_<phase>``); ``advance`` runs them until
the task waits for something outside the miner (the commit deadline, a receipt) or ends.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from miner import events as ev
from miner.db import MinerDB, TaskRow
from miner.jobs import JobDriver, JobFailed, JobSpec
from miner.memory import estimate_fit
from miner.policy import Verdict, task_hparams
from protocol.encoding import decode, encode
from protocol.messages import Assignment, Commitment, JoinRequest, Reveal, TaskAnnouncement, commitment_hash
from protocol.routes import JOIN, REVEAL
from protocol.signing import recover_signer, sign

if TYPE_CHECKING:
    from miner.service import MinerService

log = logging.getLogger("magnet.miner")
EXPORT_RESERVE_S = 5.0  # export + bundle + commitment after training stops
# The training budget starts inside the child once Python, torch and transformers are loaded (its
# "ready" event): ~5 s on an idle 2-core machine, 15-30 s on a busy one. The miner times spawn ->
# ready for each job and keeps a per-kind estimate in its store (a slower start counts at once, a
# faster one decays in); it plans with the estimate x STARTUP_MARGIN (the default before the first
# measurement): the budget it hands over, the search cutoff, the earliest give-up, and admission.
STARTUP_DEFAULT_S = 15.0
STARTUP_MARGIN = 1.25
STARTUP_FLOOR_S = 1.0
STARTUP_DECAY = 0.3  # weight of a faster measurement against the estimate
SEARCH_SHARE = 0.6  # of the time left once the child is ready: no final run by then -> train plainly


class GiveUp(Exception):
    """The task cannot be completed; the message is the reason shown to the user."""


def now_ms() -> int:
    return int(time.time() * 1000)


def decayed(estimate: float | None, measured: float) -> float:
    """The next start-up estimate: a slower start replaces it, a faster one pulls it down slowly."""
    if estimate is None or measured >= estimate:
        return measured
    return estimate + STARTUP_DECAY * (measured - estimate)


class TaskSteps:
    """Drives one task through its phases for a ``MinerService``."""

    def __init__(self, svc: MinerService) -> None:
        self.svc = svc
        self.driver: JobDriver | None = None
        self.job_command: list[str] | None = None  # None: python -m miner.train_child (tests swap it)
        self.job_env: dict[str, str] = {}

    def startup_estimate(self, kind: str) -> float | None:
        """Seconds from spawning a training child of ``kind`` to its "ready" (None: never measured)."""
        raw = self.db.meta(f"startup_s:{kind}")
        return float(raw) if raw else None

    def startup_reserve(self, kind: str) -> float:
        """Seconds to plan for a job's start-up: the measured estimate with a margin, or the default."""
        estimate = self.startup_estimate(kind)
        if estimate is None:
            return STARTUP_DEFAULT_S
        return max(STARTUP_FLOOR_S, estimate * STARTUP_MARGIN)

    def training_budget(self, kind: str, left: float) -> float:
        """The budget handed to a job with ``left`` seconds until it must stop (the child sets its own
        from the deadline once ready; this one is what it plans with until then)."""
        return max(3.0, (left - self.startup_reserve(kind)) * self.svc.cfg.budget_fraction)

    def record_startup(self, kind: str, seconds: float) -> None:
        estimate = decayed(self.startup_estimate(kind), seconds)
        self.db.set_meta(f"startup_s:{kind}", f"{estimate:.3f}")
        log.info("%s training child ready in %.1f s (start-up estimate now %.1f s)", kind, seconds, estimate)

    async def advance(self, task: TaskRow) -> None:
        """Run the task's steps until it waits for the network or ends (terminal phase)."""
        while True:
            step: Callable[[TaskRow], Awaitable[bool]] | None = getattr(self, f"_from_{task.phase}", None)
            if step is None:
                return
            try:
                moved = await step(task)
            except GiveUp as exc:
                self.give_up(task, str(exc))
                return
            fresh = self.db.task(task.id)
            if not moved or fresh is None:
                return
            task = fresh

    @property
    def db(self) -> MinerDB:
        assert self.svc.db is not None, "the miner service is not running"
        return self.svc.db

    def give_up(self, task: TaskRow, reason: str) -> None:
        log.warning("task %s given up: %s", task.id[:14], reason)
        self.db.update(task.id, phase="given_up", reason=reason)
        self.svc.emit(ev.TaskGivenUp(task_id=task.id, reason=reason))

    def announcement(self, task: TaskRow) -> TaskAnnouncement:
        msg = decode(task.announcement).message
        assert isinstance(msg, TaskAnnouncement)
        return msg

    def task_dir(self, task: TaskRow) -> Path:
        return self.svc.work_root / task.id[2:18]

    # --- join -------------------------------------------------------------------------------------
    async def _from_seen(self, task: TaskRow) -> bool:
        self.db.update(task.id, phase="joining")
        return True

    async def _from_joining(self, task: TaskRow) -> bool:
        self.svc.set_state(ev.JOINING, task.id, "asking the validator for a place in the pool")
        request = self._join_request(task)
        grace = self.svc.net_cfg.request_timeout + self.svc.cfg.join_retry_s
        while time.time() < task.join_by + grace:
            if self.svc.assignments.get(task.id) is not None:  # delivered on the assignment route
                return self._take_assignment(task, self.svc.assignments.pop(task.id))
            try:
                reply = await self.svc.request(task.validator_peer, JOIN, request)
                return self._take_assignment(task, reply)
            except Exception as exc:  # queued (ask again), or the validator is busy or away
                log.info("join %s: %s", task.id[:14], exc)
            await trio.sleep(self.svc.cfg.join_retry_s)
        raise GiveUp("the validator gave no assignment before the join window closed")

    def _join_request(self, task: TaskRow) -> bytes:
        m = self.svc.machine()
        msg = JoinRequest(
            task_id=bytes.fromhex(task.id[2:]),
            miner=self.svc.address,
            peer_id=self.svc.peer_id,
            cpu_cores=m.cpu_cores,
            ram_mb=min(m.ram_mb, 2**32 - 1),
            gpu_name="",
            gpu_mb=m.gpu_mb,
            est_gflops=max(0, int(m.speed_gflops)),
            issued_at=now_ms(),
        )
        return encode(sign(msg, self.svc.domain, self.svc.signer))

    def _take_assignment(self, task: TaskRow, payload: bytes) -> bool:
        signed = decode(payload)
        assignment = signed.message
        if (
            not isinstance(assignment, Assignment)
            or recover_signer(signed, self.svc.domain) != task.validator
        ):
            raise GiveUp("the join answer is not an Assignment signed by the task's validator")
        if assignment.miner != self.svc.address or "0x" + assignment.task_id.hex() != task.id:
            raise GiveUp("the Assignment is for another miner or task")
        self.svc.emit(ev.Joined(task_id=task.id, accepted=assignment.accepted, reason=assignment.reason))
        if not assignment.accepted:
            self.db.update(task.id, phase="refused", reason=assignment.reason)
            return False
        self.db.update(
            task.id,
            phase="assigned",
            commit_by=assignment.commit_by / 1000,
            reveal_by=assignment.reveal_by / 1000,
            reason="selected for the pool",
        )
        return True

    # --- download ---------------------------------------------------------------------------------
    async def _from_assigned(self, task: TaskRow) -> bool:
        self.svc.set_state(ev.DOWNLOADING, task.id, "fetching the base model and the training data")
        ann = self.announcement(task)
        providers = self.svc.providers(task.validator_peer)
        for blob, size in (
            (ann.base_model_sha256, ann.base_model_size),
            (ann.train_data_sha256, ann.train_data_size),
        ):
            try:
                await self.svc.p2p.blobs.fetch(blob.hex(), size, providers)
            except Exception as exc:
                if time.time() > task.commit_by:
                    raise GiveUp(f"the task expired before its data could be fetched: {exc}") from None
                raise  # the loop retries this step
            self.svc.p2p.store.pin(blob.hex())
        train_copy = self.task_dir(task) / "train.jsonl"  # the trainer reads data by its extension
        if not train_copy.exists():
            train_copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(self.svc.p2p.store.path(ann.train_data_sha256.hex()), train_copy)
        base_dir = self.task_dir(task) / "base"
        if not base_dir.exists():
            from protocol.bundle import extract_bundle

            base_dir.parent.mkdir(parents=True, exist_ok=True)
            await trio.to_thread.run_sync(
                extract_bundle, self.svc.p2p.store.path(ann.base_model_sha256.hex()), base_dir
            )
        fit = self.memory_fit(task, base_dir)
        if not fit.ok:
            raise GiveUp(f"the task does not fit this machine: {fit.reason}")
        log.info("task %s: %s", task.id[:14], fit.reason)
        self.db.update(task.id, phase="downloaded")
        return True

    def memory_fit(self, task: TaskRow, base_dir: Path) -> Verdict:
        """The job's estimated peak memory (its base model's shape, the kind's batch, the operator's
        pins and the task's parameters) against the free memory of the device it trains on."""
        params = self.announcement(task).params_json
        hparams = {**self.svc.cfg.pinned_hparams, **task_hparams(task.kind, params)}
        return estimate_fit(base_dir, task.kind, hparams, self.svc.training_device())

    # --- train ------------------------------------------------------------------------------------
    async def _from_downloaded(self, task: TaskRow) -> bool:
        self.db.update(task.id, phase="training")
        return True

    async def _from_training(self, task: TaskRow) -> bool:
        if time.time() > task.commit_by - EXPORT_RESERVE_S:
            raise GiveUp("task expired: no time was left to train before the commit deadline")
        await self.svc.wait_until_allowed(task.id)
        self.svc.set_state(
            ev.SEARCHING if self.svc.cfg.autoresearch and not task.plan else ev.TRAINING,
            task.id,
            "training within the task's budget",
        )
        bundle = await self._train(task)
        artifact_hash = self.svc.p2p.store.put_file(Path(bundle), public=False, pinned=True)
        size = Path(bundle).stat().st_size
        self.db.update(
            task.id,
            phase="trained",
            artifact_hash=str(artifact_hash),
            artifact_size=size,
            salt=os.urandom(32),
        )
        return True

    async def _train(self, task: TaskRow) -> str:
        cfg = self.svc.cfg
        out = self.task_dir(task)

        def spec() -> JobSpec:
            fresh = self.db.task(task.id) or task
            left = fresh.commit_by - time.time() - cfg.commit_margin_s - EXPORT_RESERVE_S
            measured = self.startup_estimate(fresh.kind) or 0.0
            if left < measured + 3:
                raise GiveUp(
                    "task expired: the commit deadline is too close to train"
                    + (f" (the trainer takes ~{measured:.0f} s to start here)" if measured >= 1 else "")
                )
            output_dir = out / "artifact"
            shutil.rmtree(output_dir, ignore_errors=True)  # a previous attempt's partial output
            train: dict[str, Any] = {
                "kind": fresh.kind,
                "base_model_dir": str(out / "base"),
                "train_file": str(out / "train.jsonl"),
                "output_dir": str(output_dir),
                "hparams": {
                    **{k: int(v) if float(v).is_integer() else v for k, v in cfg.pinned_hparams.items()},
                    # what the task fixes (grpo's rewards) wins over the operator's pins
                    **task_hparams(fresh.kind, self.announcement(fresh).params_json),
                },
                "budget_s": self.training_budget(fresh.kind, left),
                "seed": _seed(fresh.id, self.svc.address),  # our own: two miners never train the same run
                "device": self.svc.device(),
                "threads": cfg.max_threads or None,
                "checkpoint_dir": str(out / "checkpoint"),
                "checkpoint_interval_s": cfg.checkpoint_interval_s,
            }
            deadline = fresh.commit_by - cfg.commit_margin_s - EXPORT_RESERVE_S
            self.svc.job_started, self.svc.job_budget_s = time.monotonic(), max(1.0, deadline - time.time())
            # No final run by 60 % of the time left after start-up: the search overran; train plainly.
            # The driver moves the cutoff to 60 % of what is left when the child says it is ready.
            ready = time.time() + min(self.startup_reserve(fresh.kind), left / 2)
            cutoff = ready + SEARCH_SHARE * (deadline - ready)
            search = {"max_trials": cfg.search_max_trials, "final_fraction": cfg.search_final_fraction}
            return JobSpec(
                train,
                cfg.autoresearch,
                fresh.plan,
                deadline,
                cfg.budget_fraction,
                search,
                cutoff,
                SEARCH_SHARE,
            )

        self.driver = JobDriver(
            out,
            cfg.stall_timeout_s,
            cfg.max_job_restarts,
            cfg.max_ram_mb * (1 << 20) if cfg.max_ram_mb else None,
            cfg.nice,
            on_event=lambda e: self._on_job_event(task, e),
            on_alert=lambda p, a: self.svc.emit(ev.WatchdogAlert(task_id=task.id, problem=p, action=a)),
            on_ready=lambda seconds: self.record_startup(task.kind, seconds),
        )
        if self.job_command is not None:
            self.driver.command = list(self.job_command)
        self.driver.env.update(self.job_env)
        gpu = cfg.gpu.partition(":")[2]
        if cfg.gpu.startswith("cuda:") and gpu.isdigit():
            self.driver.env["CUDA_VISIBLE_DEVICES"] = gpu  # the one GPU this miner may use
        self.driver.restarts = task.restarts
        if not self.svc.mining:  # Stop pressed while the job was being prepared
            self.driver.stopped = True
        try:
            with trio.move_on_at(self._deadline_clock(task)) as scope:
                bundle = await self.driver.run(spec)
            if scope.cancelled_caught:
                raise GiveUp("task expired: training did not finish before the commit deadline")
            return bundle
        except JobFailed as exc:
            raise GiveUp(f"training failed: {exc}") from None
        finally:
            self.db.update(task.id, restarts=self.driver.restarts)
            self.driver = None

    def _deadline_clock(self, task: TaskRow) -> float:
        return trio.current_time() + max(0.0, task.commit_by - time.time() - 1.0)

    def _on_job_event(self, task: TaskRow, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == "final_plan":
            plan = {"hparams": event.get("hparams") or {}, "max_steps": event.get("max_steps")}
            self.db.update(task.id, plan=plan)
            self.svc.set_state(ev.TRAINING, task.id, "final run with the best settings found")
        elif kind == "progress":
            self.svc.on_progress(task.id, event)
        elif kind == "phase":
            self.svc.job_phase = str(event.get("name", ""))
            log.info("task %s: job phase %s", task.id[:14], self.svc.job_phase)

    # --- commit and reveal ------------------------------------------------------------------------
    async def _from_trained(self, task: TaskRow) -> bool:
        if time.time() >= task.commit_by:
            raise GiveUp("task expired: the artifact was ready after the commit deadline")
        self.svc.set_state(ev.SUBMITTING, task.id, "committing to the artifact")
        assert task.salt is not None and task.artifact_hash is not None
        digest = commitment_hash(
            bytes.fromhex(task.id[2:]), self.svc.address, bytes.fromhex(task.artifact_hash), task.salt
        )
        msg = Commitment(
            task_id=bytes.fromhex(task.id[2:]), miner=self.svc.address, commitment=digest, issued_at=now_ms()
        )
        await self.svc.p2p.gossip.publish(sign(msg, self.svc.domain, self.svc.signer))
        self.db.update(task.id, phase="committed")
        self.svc.emit(
            ev.Committed(
                task_id=task.id,
                artifact_hash=task.artifact_hash,
                seconds_before_deadline=task.commit_by - time.time(),
            )
        )
        return True

    async def _from_committed(self, task: TaskRow) -> bool:
        self.svc.set_state(ev.WAITING, task.id, "committed; revealing after the commit deadline")
        await trio.sleep(max(0.0, task.commit_by - time.time()) + 0.5)
        self.svc.set_state(ev.SUBMITTING, task.id, "pushing the artifact to the validator")
        assert task.artifact_hash is not None and task.artifact_size is not None and task.salt is not None
        reveal = Reveal(
            task_id=bytes.fromhex(task.id[2:]),
            miner=self.svc.address,
            artifact_hash=bytes.fromhex(task.artifact_hash),
            artifact_size=task.artifact_size,
            salt=task.salt,
            issued_at=now_ms(),
        )
        payload = encode(sign(reveal, self.svc.domain, self.svc.signer))
        last = ""
        while time.time() < task.reveal_by:
            try:
                await self.svc.p2p.blobs.push(task.validator_peer, task.artifact_hash)
                reply = await self.svc.request(task.validator_peer, REVEAL, payload)
                status = decode(reply).message
                reason = str(getattr(status, "reason", ""))
                accepted = reason in ("revealed", "already revealed")
                self.svc.emit(ev.Revealed(task_id=task.id, accepted=accepted, reason=reason))
                self.db.update(task.id, phase="revealed", reason=reason)
                self.svc.last_submission = time.time() if accepted else self.svc.last_submission
                if accepted:
                    self.db.set_meta("last_accepted_submission", str(time.time()))
                return False  # now waiting for the receipt (the rewards loop)
            except Exception as exc:
                last = str(exc)
                log.info("reveal %s: %s", task.id[:14], exc)
            await trio.sleep(self.svc.cfg.join_retry_s)
        raise GiveUp(f"the validator could not be reached before the reveal deadline ({last or 'no answer'})")


def _seed(task_id: str, miner: str) -> int:
    import hashlib

    return int.from_bytes(hashlib.sha256(f"{task_id}:{miner}".encode()).digest()[:4], "big") % 1_000_000
