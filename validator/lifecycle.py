"""The task lifecycle: one step function per phase, driven by the service's loop.

Phases (stored in ``val_task.phase``; docs/PROTOCOL.md and DESIGN.md, "Task lifecycle"):

    created -> joining -> training -> revealing -> evaluating -> scoring -> receipts -> finished
                  \\-> (delayed: deadlines moved, bounded retries) -> failed (too few joiners)

Each step reads the task from the store, does its work, and writes the new phase in the same
transaction as what it decided; anything it then sends (gossip, direct deliveries) is repeatable,
so a restart at any point resumes the step and never decides twice. Evaluations run in sandboxed
child processes from worker threads, at most ``eval_workers`` at a time.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import trio

from protocol.encoding import encode
from protocol.messages import BPS, TaskAnnouncement
from protocol.routes import ASSIGNMENT, RECEIPT
from protocol.signing import Domain, SignerLike, sign
from validator import timing
from validator.config import ValidatorConfig
from validator.db import TaskRow, ValidatorDB
from validator.intake import Intake, now_ms
from validator.sandbox import evaluation_job, run_sandboxed
from validator.scoring import E9, rank_score, task_weight, to_e9
from validator.selection import Candidate, ExplorationBudget, Outcome, after_join_window, select_pool
from validator.settle import settle
from validator.tasks import PreparedTask, prepare_task, read_task_params, resolve_model

log = logging.getLogger("magnet.validator")


class Net(Protocol):
    """What the lifecycle needs of the p2p layer (validator.service adapts P2PService to it)."""

    async def publish(self, signed: bytes) -> None: ...

    async def send(self, peer_id: str, route: str, payload: bytes) -> bool: ...

    def put_public_file(self, path: Path) -> str: ...


@dataclass
class ChainAccess:
    """The registry calls the validator makes (blocking; run from worker threads)."""

    current_epoch: Callable[[], int]
    post: Callable[[int], object | None]  # epoch -> this validator's post, or None
    post_epoch: Callable[[int, bytes, bytes, int], str]  # -> transaction hash


def task_deadlines(
    start: float, rows: int, params: int, cfg: ValidatorConfig, hours: float | None
) -> timing.Deadlines:
    """timing.deadlines, or the same windows around a requested number of training hours."""
    if hours is None:
        return timing.deadlines(start, rows, params, cfg)
    if not 0 < hours <= cfg.max_task_hours:
        raise ValueError(f"hours must be in (0, {cfg.max_task_hours}], got {hours}")
    train = hours * 3600.0 * cfg.time_scale
    join_by = start + max(cfg.join_min_s, cfg.join_fraction * train)
    commit_by = join_by + train
    return timing.Deadlines(
        join_by, commit_by, commit_by + max(cfg.reveal_min_s, cfg.reveal_fraction * train), hours
    )


class TaskEngine:
    """Creates tasks and moves each one through its phases."""

    def __init__(
        self,
        db: ValidatorDB,
        cfg: ValidatorConfig,
        domain: Domain,
        signer: SignerLike,
        intake: Intake,
        net: Net,
        tasks_root: Path,
        chain: ChainAccess | None,
    ) -> None:
        self.db = db
        self.cfg = cfg
        self.domain = domain
        self.signer = signer
        self.intake = intake
        self.net = net
        self.tasks_root = tasks_root
        self.chain = chain
        self.drawn: dict[str, trio.Event] = {}
        self.evaluating: set[tuple[str, str]] = set()
        self.announced_at: dict[str, float] = {}
        workers = cfg.eval_workers or max(1, (os.cpu_count() or 2) // 2)
        self.limiter = trio.CapacityLimiter(workers)
        self.nursery: trio.Nursery | None = None

    # --- creation (any thread) ------------------------------------------------------------------
    def create_task(
        self,
        data_file: Path,
        kind: str,
        model_ref: str,
        hours: float | None = None,
        origin: str = "organic",
        params: dict[str, Any] | None = None,
    ) -> str:
        """Check, split and store a new task (phase ``created``); returns its id (0x hex).
        ``params``: the kind's parameters (grpo: {"rewards": "name:weight,...", "max_new_tokens": N})."""
        task_id = os.urandom(32)
        prepared = prepare_task(
            task_id, data_file, kind, model_ref, self.tasks_root, origin, self.cfg, params
        )
        d = task_deadlines(time.time(), prepared.train_rows, prepared.model_params, self.cfg, hours)
        weight_e9 = to_e9(task_weight(prepared.model_params, d.hours, self.cfg))
        self.db.insert_task(
            id="0x" + task_id.hex(),
            kind=kind,
            origin=origin,
            model_ref=model_ref,
            phase="created",
            dir=str(prepared.directory),
            rows=prepared.train_rows,
            model_params=prepared.model_params,
            hours=d.hours,
            join_by=d.join_by,
            commit_by=d.commit_by,
            reveal_by=d.reveal_by,
            reward_weight_e9=weight_e9,
            max_artifact_bytes=self.cfg.max_artifact_bytes,
            pool_size=self.cfg.pool_size,
            base_blob=self.net.put_public_file(prepared.base_bundle),
            data_blob=self.net.put_public_file(prepared.train_file),
            test_blob="",
            test_split_hash=_test_split_hash(prepared),
        )
        log.info(
            "task %s created (%s, %d train rows, %.2f h nominal)",
            "0x" + task_id.hex()[:12],
            kind,
            prepared.train_rows,
            d.hours,
        )
        return "0x" + task_id.hex()

    # --- the loop's entry -----------------------------------------------------------------------
    async def step(self, task: TaskRow) -> None:
        handler: Callable[[TaskRow], Awaitable[None]] | None = getattr(self, f"_step_{task.phase}", None)
        if handler is not None:
            await handler(task)

    async def _step_created(self, task: TaskRow) -> None:
        signed = encode(sign(self._announcement(task), self.domain, self.signer))
        self.db.update_task(task.id, phase="joining", announcement=signed)
        await self.net.publish(signed)

    async def _reannounce(self, task: TaskRow) -> None:
        """Repeat the announcement (signed anew: a replay would be dropped) every ``reannounce_s``."""
        last = self.announced_at.setdefault(task.id, time.time())
        if self.cfg.reannounce_s > 0 and time.time() - last >= self.cfg.reannounce_s:
            self.announced_at[task.id] = time.time()
            await self.net.publish(encode(sign(self._announcement(task), self.domain, self.signer)))

    def _announcement(self, task: TaskRow) -> TaskAnnouncement:
        directory = Path(task.dir)
        base_size = (directory / "base.bundle").stat().st_size
        data_size = (directory / "train.jsonl").stat().st_size
        tokens = data_size // 4
        return TaskAnnouncement(
            task_id=task.task_id,
            validator=self.signer.address,
            kind=task.kind,
            model_ref=task.model_ref[:256],
            base_model_sha256=bytes.fromhex(task.base_blob),
            base_model_size=base_size,
            train_data_sha256=bytes.fromhex(task.data_blob),
            train_data_size=data_size,
            min_ram_mb=1024 + task.model_params * 16 // (1 << 20),
            min_gpu_mb=0,
            est_tokens=tokens,
            est_gflop=6 * task.model_params * tokens // 10**9,
            join_by=int(task.join_by * 1000),
            commit_by=int(task.commit_by * 1000),
            reveal_by=int(task.reveal_by * 1000),
            eval_metrics=("loss",),
            test_weight_bps=self.cfg.test_weight_bps,
            synthetic_weight_bps=BPS - self.cfg.test_weight_bps,
            max_artifact_bytes=task.max_artifact_bytes,
            reward_weight_e9=task.reward_weight_e9,
            test_split_hash=bytes.fromhex(task.test_split_hash),
            pool_size=task.pool_size,
            params_json=json.dumps(read_task_params(directory), sort_keys=True),
            issued_at=now_ms(),
        )

    async def _step_joining(self, task: TaskRow) -> None:
        if time.time() < task.join_by:
            await self._reannounce(task)
            return
        queued = self.db.joiners(task.id, "queued")
        window = max(self.cfg.join_min_s, task.join_by - task.created_at)
        decision = after_join_window(len(queued), task.retries, window, self.cfg)
        if decision.outcome is Outcome.DELAY:
            d = timing.delayed(
                timing.Deadlines(task.join_by, task.commit_by, task.reveal_by, task.hours), decision.extend_s
            )
            status = self.intake.status(task, decision.reason, next_deadline=int(d.join_by * 1000))
            self.db.update_task(
                task.id,
                join_by=d.join_by,
                commit_by=d.commit_by,
                reveal_by=d.reveal_by,
                retries=task.retries + 1,
                reason=decision.reason,
                status_msg=status,
            )
            await self.net.publish(status)
        elif decision.outcome is Outcome.FAIL:
            await self._fail(task, decision.reason)
        else:
            await self._draw_pool(task, queued)

    async def _fail(self, task: TaskRow, reason: str) -> None:
        self.db.update_task(task.id, phase="failed", reason=reason)
        status = self.intake.status(self._reload(task), reason)
        self.db.update_task(task.id, status_msg=status)
        await self.net.publish(status)
        self._wake(task.id)

    async def _draw_pool(self, task: TaskRow, queued: list[dict[str, object]]) -> None:
        now = time.time()
        budget = ExplorationBudget(**self.db.meta("exploration", {}))
        candidates = [self._candidate(task, j) for j in queued]
        seed = int.from_bytes(task.task_id[:8], "big") + task.retries
        selection = select_pool(candidates, now, seed, budget.left(now, self.cfg), self.cfg, task.pool_size)
        budget.spend(len(selection.explored), now, self.cfg)
        with self.db.store.transaction() as conn:
            for miner in selection.selected:
                conn.execute(
                    "UPDATE val_joiner SET status = 'selected', assignment = ? WHERE task_id = ? "
                    "AND miner = ?",
                    (self.intake.assignment(task, miner, True, "selected"), task.id, miner),
                )
            for miner, refusal in selection.refused.items():
                conn.execute(
                    "UPDATE val_joiner SET status = 'refused', reason = ?, assignment = ? "
                    "WHERE task_id = ? AND miner = ?",
                    (
                        refusal.message,
                        self.intake.assignment(task, miner, False, refusal.message),
                        task.id,
                        miner,
                    ),
                )
            self.db.set_meta("exploration", {"day": budget.day, "used": budget.used})
            self.db.update_task(
                task.id, phase="training", reason=f"{len(selection.selected)} miners selected"
            )
        self.intake.gate.close(task.id)
        self._wake(task.id)
        log.info(
            "task %s: pool of %d drawn from %d joiners", task.id[:14], len(selection.selected), len(queued)
        )

    def _candidate(self, task: TaskRow, joiner: dict[str, object]) -> Candidate:
        miner = str(joiner["miner"])
        last = self.db.store.query_one(
            "SELECT MAX(joined_at) FROM val_joiner WHERE miner = ? AND status = 'selected' AND task_id != ?",
            (miner, task.id),
        )
        since = int((time.time() - max(self.cfg.window_s)) * 1000)
        rows = self.db.store.query(
            "SELECT rank, pool_size FROM val_receipt WHERE miner = ? AND issued_at > ?", (miner, since)
        )
        quality = sum(rank_score(r, n, self.cfg) for r, n in rows) / len(rows) if rows else None
        return Candidate(miner, int(str(joiner["arrival"])), last[0] if last else None, quality)

    def _wake(self, task_id: str) -> None:
        self.drawn.setdefault(task_id, trio.Event()).set()

    async def deliver_assignments(self, task: TaskRow) -> None:
        """Push the drawn Assignment once to joiners whose join request no longer waited for it.

        One attempt each (a miner that missed it asks again with its JoinRequest, which returns the
        recorded Assignment), so an unreachable miner costs nothing on later ticks.
        """
        for joiner in self.db.joiners(task.id):
            if joiner["assignment"] is not None and not joiner["delivered"]:
                await self.net.send(joiner["peer_id"], ASSIGNMENT, joiner["assignment"])
                self.db.mark("val_joiner", "delivered", {"task_id": task.id, "miner": joiner["miner"]})

    async def _step_training(self, task: TaskRow) -> None:
        await self.deliver_assignments(task)
        if time.time() >= task.commit_by:
            self.db.update_task(task.id, phase="revealing")

    async def _step_revealing(self, task: TaskRow) -> None:
        committed = set(self.db.commitments(task.id)) & {
            j["miner"] for j in self.db.joiners(task.id, "selected")
        }
        everyone_revealed = committed <= set(self.db.reveals(task.id))
        if time.time() >= task.reveal_by or (committed and everyone_revealed):
            self.db.update_task(task.id, phase="evaluating")

    # --- evaluation -----------------------------------------------------------------------------
    async def _step_evaluating(self, task: TaskRow) -> None:
        assert self.nursery is not None
        pending = self._pending_evaluations(task)
        for miner in pending:
            if (task.id, miner) not in self.evaluating:
                self.evaluating.add((task.id, miner))
                self.nursery.start_soon(self._evaluate, task, miner)
        if not pending:
            self.db.update_task(task.id, phase="scoring")

    def _pending_evaluations(self, task: TaskRow) -> list[str]:
        """'' (the base model) and every miner whose matching, in-time reveal has no evaluation yet.

        A byte-identical copy of an artifact committed earlier is not run again: it gets the
        original's losses (anti-gaming then calls it a duplicate, crediting the earlier commitment).
        """
        pending = [] if task.base_test_e9 is not None else [""]
        done = self.db.evaluations(task.id)
        seq = {m: c["seq"] for m, c in self.db.commitments(task.id).items()}
        reveals = self.db.reveals(task.id)
        in_time = {m for m, c in self.db.commitments(task.id).items() if c["received_at"] <= task.commit_by}
        for miner, reveal in sorted(reveals.items(), key=lambda mr: (seq.get(mr[0], 1 << 62), mr[0])):
            late = miner not in in_time or reveal["revealed_at"] > task.reveal_by  # judged LATE unevaluated
            if not reveal["matches"] or not reveal["path"] or late:
                continue
            if miner not in done and not self._copy_evaluation(task, miner, reveal, reveals, done, seq):
                pending.append(miner)
        return pending

    def _copy_evaluation(
        self,
        task: TaskRow,
        miner: str,
        reveal: dict[str, Any],
        reveals: dict[str, dict[str, Any]],
        done: dict[str, dict[str, Any]],
        seq: dict[str, int],
    ) -> bool:
        """True when an earlier-committed identical artifact exists: its losses are copied to ``miner``
        once it is evaluated (until then ``miner`` waits rather than being evaluated twice)."""
        for other, r in reveals.items():
            earlier = seq.get(other, 1 << 62) < seq.get(miner, 1 << 62)
            usable = r["matches"] and r["path"] and r["revealed_at"] <= task.reveal_by
            if other != miner and earlier and usable and r["artifact_hash"] == reveal["artifact_hash"]:
                if other not in done:
                    return True
                e = done[other]
                with self.db.store.transaction() as conn:
                    conn.execute(
                        "INSERT OR IGNORE INTO val_evaluation VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (
                            task.id,
                            miner,
                            e["test_e9"],
                            e["syn_e9"],
                            e["malformed"],
                            f"same artifact as {other}: not evaluated again",
                            0.0,
                        ),
                    )
                return True
        return False

    async def _evaluate(self, task: TaskRow, miner: str) -> None:
        try:
            async with self.limiter:
                failure = await trio.to_thread.run_sync(self._evaluate_blocking, task, miner)
            if failure:
                await self._fail(self._reload(task), failure)
        finally:
            self.evaluating.discard((task.id, miner))

    def _evaluate_blocking(self, task: TaskRow, miner: str) -> str:
        """Evaluate one artifact (or the base model, miner ''); returns why the task fails, or ''."""
        directory = Path(task.dir)
        bundle = Path(self.db.reveals(task.id)[miner]["path"]) if miner else None
        splits = {"test": directory / "test.jsonl", "synthetic": directory / "synthetic.jsonl"}
        params = read_task_params(directory)
        job = evaluation_job(
            task.kind, resolve_model(task.model_ref, task.kind), bundle, splits,
            task.max_artifact_bytes, self.cfg,
            rewards=params.get("rewards"), max_new_tokens=params.get("max_new_tokens"),
        )
        outcome = run_sandboxed(job, directory / "eval" / (miner or "base"), self.cfg)
        test, syn = outcome.losses.get("test"), outcome.losses.get("synthetic")
        log.info(
            "task %s: evaluated %s in %.1f s (%s): test %s synthetic %s %s",
            task.id[:14],
            miner or "base",
            outcome.seconds,
            outcome.isolation or "no sandbox report",
            test,
            syn,
            outcome.malformed or outcome.error,
        )
        if not miner:
            if test is None:  # the base model itself failed: nothing can be judged against it
                return f"the base model could not be evaluated: {outcome.error or outcome.malformed}"
            self.db.update_task(
                task.id, base_test_e9=to_e9(test), base_syn_e9=None if syn is None else to_e9(syn)
            )
            return ""
        with self.db.store.transaction() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO val_evaluation VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    task.id,
                    miner,
                    None if test is None else to_e9(test),
                    None if syn is None else to_e9(syn),
                    outcome.malformed,
                    outcome.error,
                    outcome.seconds,
                ),
            )
        return ""

    # --- scoring and receipts -------------------------------------------------------------------
    async def _step_scoring(self, task: TaskRow) -> None:
        epoch = await trio.to_thread.run_sync(self.chain.current_epoch) if self.chain else 0
        while self.db.epoch(epoch) is not None:  # the chain moved on and this epoch is already closed
            epoch += 1
        payouts = {j["miner"]: j["payout"] for j in self.db.joiners(task.id, "selected")}
        count = settle(task, self.db, self.cfg, epoch, self.domain, self.signer, payouts, now_ms())
        log.info("task %s: %d receipts signed for epoch %d", task.id[:14], count, epoch)

    async def _step_receipts(self, task: TaskRow) -> None:
        peers = {j["miner"]: j["peer_id"] for j in self.db.joiners(task.id)}
        for r in self.db.receipts(task.id):
            if not r["gossiped"]:
                await self.net.publish(r["signed"])
                self.db.mark("val_receipt", "gossiped", {"task_id": task.id, "miner": r["miner"]})
            if not r["delivered"] and await self.net.send(peers[r["miner"]], RECEIPT, r["signed"]):
                self.db.mark("val_receipt", "delivered", {"task_id": task.id, "miner": r["miner"]})
        await self._finish(task)

    async def _finish(self, task: TaskRow) -> None:
        test_blob = ""
        if task.origin == "synthetic":  # the test split is published once the task is over (audit)
            test_blob = self.net.put_public_file(Path(task.dir) / "test.jsonl")
        reason = f"finished; winner {task.winner or 'none'}" + (
            f"; test split blob {test_blob}" if test_blob else ""
        )
        self.db.update_task(task.id, phase="finished", reason=reason, test_blob=test_blob)
        status = self.intake.status(self._reload(task), reason)
        self.db.update_task(task.id, status_msg=status)
        await self.net.publish(status)

    def _reload(self, task: TaskRow) -> TaskRow:
        fresh = self.db.task(task.id)
        assert fresh is not None
        return fresh


def _test_split_hash(prepared: PreparedTask) -> str:
    """The announced hash of the private test split: synthetic tasks only (organic: zero)."""
    if prepared.origin != "synthetic":
        return "00" * 32
    from validator.tasks import sha256_file

    return sha256_file(prepared.test_file).hex()


__all__ = ["E9", "ChainAccess", "Net", "TaskEngine", "task_deadlines"]
