"""The plain supervised training loop: micro-batches, accumulation, AdamW, warm-up + schedule,
mixed precision on GPUs and on CPUs with native bf16 (autocast; weights, optimizer and loss stay
fp32), a wall-clock budget, periodic checkpoints and exact resume.

Deliberately small (no Trainer machinery) so its overhead over a bare torch loop is negligible.
The loss of one optimizer step is the mean over every scored token of its accumulation group:
each micro-batch returns sum(token losses) / N with N the group's scored-token count
(`num_items_in_batch`), so accumulation gives the same gradient as one big batch.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from trainer.checkpoint import LoopState, load_checkpoint, save_checkpoint
from trainer.packing import PackedRow, collate_packed
from trainer.recipes.base import Reporter
from trainer.schedule import unmeasured

SCHEDULES = ("cosine", "linear", "constant")


@dataclass
class LoopSettings:
    lr: float
    weight_decay: float
    warmup_ratio: float
    schedule: str
    micro_batch_size: int
    grad_accum: int
    max_grad_norm: float
    epochs: float
    max_steps: int | None
    budget_s: float
    seed: int
    device: str
    dtype: torch.dtype
    pad_id: int
    checkpoint_dir: Path | None = None
    checkpoint_interval_s: float = 60.0
    # Fraction of the budget kept back for saving the artifact and the final evaluation.
    reserve_fraction: float = 0.1
    # bf16 autocast on the CPU (trainer.hardware.cpu_has_native_bf16 decides where it pays).
    cpu_bf16: bool = False


def lr_factor(step: int, total: int, warmup_ratio: float, schedule: str) -> float:
    """Multiplier of the peak learning rate for optimizer step `step` (0-based) of `total`."""
    warmup = 0 if unmeasured(total) else math.ceil(total * warmup_ratio)
    if step < warmup:
        return (step + 1) / (warmup + 1)
    if schedule == "constant":
        return 1.0
    progress = (step - warmup) / max(1, total - warmup)
    if schedule == "linear":
        return max(0.0, 1.0 - progress)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def planned_steps(n_rows: int, s: LoopSettings) -> int:
    per_step = s.micro_batch_size * s.grad_accum
    steps_per_epoch = max(1, math.ceil(n_rows / per_step))
    total = max(1, math.ceil(steps_per_epoch * s.epochs))
    return min(total, s.max_steps) if s.max_steps is not None else total


def micro_batches(rows: Sequence[PackedRow], step: int, s: LoopSettings) -> list[list[PackedRow]]:
    """The micro-batches of optimizer step `step`: a pure function of (rows, step, seed), so resume is exact.

    Rows are visited in a fresh seeded permutation each epoch; an epoch's last batch may be short.
    """
    per_epoch = math.ceil(len(rows) / s.micro_batch_size)
    out = []
    for a in range(s.grad_accum):
        index = step * s.grad_accum + a
        epoch, within = divmod(index, per_epoch)
        order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(s.seed * 1000 + epoch))
        picked = order[within * s.micro_batch_size : (within + 1) * s.micro_batch_size]
        out.append([rows[int(i)] for i in picked])
    return out


class TrainingLoop:
    """Runs optimizer steps on a model whose trainable parameters are the ones to learn."""

    def __init__(
        self,
        model: Any,
        rows: Sequence[PackedRow],
        settings: LoopSettings,
        reporter: Reporter,
        fingerprint: str,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> None:
        if not rows:
            raise ValueError("no training rows: the training data is empty after tokenization")
        self.model = model
        self.rows = rows
        self.s = settings
        self.reporter = reporter
        self.fingerprint = fingerprint
        self.should_stop = should_stop
        self.trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
        self.optimizer = torch.optim.AdamW(
            self.trainable.values(), lr=settings.lr, weight_decay=settings.weight_decay
        )
        use_fp16 = settings.device == "cuda" and settings.dtype == torch.float16
        self.scaler = torch.amp.GradScaler("cuda") if use_fp16 else None
        self.state = LoopState(total_steps=planned_steps(len(rows), settings))
        self.resumed_from: int | None = None

    def resume_if_possible(self) -> None:
        if self.s.checkpoint_dir is None:
            return
        restored = load_checkpoint(self.s.checkpoint_dir, self.fingerprint, self.trainable, self.optimizer)
        if restored is not None:
            self.state = restored
            self.resumed_from = restored.step
            self.reporter.log(f"resumed from checkpoint at step {restored.step}")

    def _autocast(self) -> Any:
        if self.s.device == "cuda" and self.s.dtype != torch.float32:
            return torch.autocast("cuda", dtype=self.s.dtype)
        if self.s.device == "cpu" and self.s.cpu_bf16:
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return nullcontext()

    def _step(self) -> tuple[float, int]:
        """One optimizer step; returns (mean loss per scored token, non-padding tokens)."""
        batches = micro_batches(self.rows, self.state.step, self.s)
        n_scored = sum(r.scored_tokens for b in batches for r in b)
        n_tokens = sum(len(r.input_ids) for b in batches for r in b)
        factor = lr_factor(self.state.step, self.state.total_steps, self.s.warmup_ratio, self.s.schedule)
        for group in self.optimizer.param_groups:
            group["lr"] = self.s.lr * factor
        total = 0.0
        for rows in batches:
            batch = {k: v.to(self.s.device) for k, v in collate_packed(rows, self.s.pad_id).items()}
            with self._autocast():
                out = self.model(**batch, use_cache=False, num_items_in_batch=max(1, n_scored))
            loss = out.loss
            (self.scaler.scale(loss) if self.scaler else loss).backward()
            total += float(loss.detach())
        if self.scaler:
            self.scaler.unscale_(self.optimizer)
        if self.s.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.trainable.values(), self.s.max_grad_norm)
        if self.scaler:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return total, n_tokens

    def _fit_budget(self, run_seconds: float, steps_run: int) -> None:
        usable = self.s.budget_s * (1 - self.s.reserve_fraction)
        affordable = self.state.fit_to_budget(usable, run_seconds, steps_run)
        if affordable is not None:
            pace = run_seconds / steps_run
            self.reporter.log(f"budget allows {affordable} steps at {pace:.3f} s/step; schedule shortened")

    def run(self) -> str:
        """Train until done, out of budget or told to stop; returns the stopped reason."""
        self.model.train()
        started = time.monotonic()
        seconds_before = self.state.seconds
        last_ckpt = started
        steps_run, reason = 0, "completed"
        while self.state.step < self.state.total_steps:
            if self.should_stop():
                reason = "cancelled"
                break
            if self.state.seconds >= self.s.budget_s:
                reason = "budget"
                break
            loss, n_tokens = self._step()
            if not math.isfinite(loss):
                raise FloatingPointError(
                    f"loss became {loss} at step {self.state.step}: training diverged; "
                    "lower the learning rate"
                )
            steps_run += 1
            now = time.monotonic()
            self.state.step += 1
            self.state.tokens += n_tokens
            self.state.seconds = seconds_before + (now - started)
            self.state.losses.append(loss)
            self._fit_budget(now - started, steps_run)
            # Every step is reported: miner and autoresearch read the loss curve; the node throttles the GUI.
            self._report(now - started, steps_run, loss)
            if self.s.checkpoint_dir is not None and now - last_ckpt >= self.s.checkpoint_interval_s:
                self.checkpoint()
                last_ckpt = now
        if reason == "cancelled" and self.s.checkpoint_dir is not None:
            self.checkpoint()
        reason = self.state.stopped_reason(reason, self.s.max_steps)
        self.model.eval()
        return reason

    def _report(self, run_seconds: float, steps_run: int, loss: float) -> None:
        percent, eta = self.state.progress(self.s.budget_s, pace=run_seconds / steps_run)
        self.reporter.progress(
            self.state.step,
            self.state.total_steps,
            loss=loss,
            tokens_per_s=self.state.tokens / max(1e-9, self.state.seconds),
            percent=percent,
            eta_s=eta,
        )

    def checkpoint(self) -> None:
        assert self.s.checkpoint_dir is not None
        path = save_checkpoint(
            self.s.checkpoint_dir, self.fingerprint, self.state, self.trainable, self.optimizer
        )
        # The worker's reporter turns this into a "checkpoint" event; plain reporters get a log line.
        on_checkpoint = getattr(self.reporter, "checkpoint", None)
        if callable(on_checkpoint):
            on_checkpoint(self.state.step, str(path))
        else:
            self.reporter.log(f"checkpoint at step {self.state.step}")
