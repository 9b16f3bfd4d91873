"""The BitNet training loop: full-precision latent weights, quantisation ramped in, budget, checkpoints.

Batches are a pure function of (seed, step), and the checkpoint (trainer.checkpoint: safetensors +
JSON, no pickle) holds the latent weights and optimizer moments, so a killed run resumes exactly.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from trainer.bitnet.layers import lambda_schedule, set_quant_lambda
from trainer.checkpoint import LoopState, load_checkpoint, save_checkpoint
from trainer.data import IGNORE_INDEX
from trainer.models import pick_dtype
from trainer.recipes.base import Reporter, TrainJob
from trainer.recipes.dpo import resume_fingerprint
from trainer.schedule import linear_warmup_steps


def lr_at(step: int, total: int, hp: dict[str, Any]) -> float:
    """Linear warm-up then cosine decay to min_lr_ratio of the peak."""
    warmup = linear_warmup_steps(total, hp["warmup_ratio"])
    if step < warmup:
        return float(hp["lr"]) * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    floor = float(hp["min_lr_ratio"])
    return float(hp["lr"]) * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


class BitnetLoop:
    """Optimizer steps on token blocks (ids, labels: (n_blocks, seq_len)) of a BitLinear model."""

    def __init__(
        self,
        model: Any,
        ids: torch.Tensor,
        labels: torch.Tensor,
        hp: dict[str, Any],
        ramp: float,
        job: TrainJob,
    ) -> None:
        self.model, self.ids, self.labels, self.hp, self.ramp, self.job = model, ids, labels, hp, ramp, job
        self.device = str(next(model.parameters()).device.type)
        self.trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
        self.optimizer = torch.optim.AdamW(
            self.trainable.values(), lr=hp["lr"], weight_decay=hp["weight_decay"]
        )
        self.state = LoopState(total_steps=int(job.max_steps or hp["max_steps"]))
        self.fingerprint = resume_fingerprint(job)
        # Loop seconds allowed; the recipe lowers it by what preparing took and a reserve for saving.
        self.budget_s = job.budget_s
        self.last_step_s = 0.0
        self.quant_lambda = 0.0

    def _rows(self, step: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self.job.seed * 1_000_003 + step)
        return torch.randint(0, self.ids.shape[0], (int(self.hp["batch_size"]),), generator=generator)

    def step(self) -> tuple[float, int]:
        s = self.state
        # Progress is whichever of steps or time runs out first, so the ramp always completes.
        progress = max(s.step / s.total_steps, s.seconds / self.budget_s)
        self.quant_lambda = lambda_schedule(int(progress * 1000), int(self.ramp * 1000))
        set_quant_lambda(self.model, self.quant_lambda)
        for group in self.optimizer.param_groups:
            group["lr"] = lr_at(s.step, s.total_steps, self.hp)
        rows = self._rows(s.step)
        with torch.autocast("cuda", dtype=pick_dtype("cuda"), enabled=self.device == "cuda"):
            out = self.model(
                input_ids=self.ids[rows].to(self.device), labels=self.labels[rows].to(self.device)
            )
        self.optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(self.trainable.values(), self.hp["max_grad_norm"])
        self.optimizer.step()
        return float(out.loss.detach()), int((self.labels[rows] != IGNORE_INDEX).sum())

    def run(self, reporter: Reporter, should_stop: Callable[[], bool]) -> str:
        ckpt = Path(self.job.checkpoint_dir) if self.job.checkpoint_dir else None
        if ckpt is not None:
            restored = load_checkpoint(ckpt, self.fingerprint, self.trainable, self.optimizer)
            if restored is not None:
                self.state = restored
                reporter.log(f"resumed from checkpoint at step {restored.step}")
        self.model.train()
        started = last_ckpt = time.monotonic()
        before, reason, step0 = self.state.seconds, "completed", self.state.step
        while self.state.step < self.state.total_steps:
            if should_stop():
                reason = "cancelled"
                break
            # Stop when the next step would overrun, not after it has.
            if self.state.seconds + self.last_step_s >= self.budget_s:
                reason = "budget"
                break
            loss, tokens = self.step()
            if not math.isfinite(loss):
                raise FloatingPointError(
                    f"loss became {loss} at step {self.state.step}; lower the learning rate"
                )
            self.state.step += 1
            self.state.tokens += tokens
            now = before + time.monotonic() - started
            self.last_step_s, self.state.seconds = now - self.state.seconds, now
            # Warm-up and decay are fractions of the plan: fit the plan to what the budget allows.
            fit = self.state.fit_to_budget(self.budget_s, now - before, self.state.step - step0)
            if fit is not None:
                reporter.log(f"budget allows {fit} steps; schedule shortened")
            self.state.losses.append(loss)
            self._report(reporter)
            if ckpt is not None and time.monotonic() - last_ckpt >= self.job.checkpoint_interval_s:
                save_checkpoint(ckpt, self.fingerprint, self.state, self.trainable, self.optimizer)
                last_ckpt = time.monotonic()
        if reason == "cancelled" and ckpt is not None:
            save_checkpoint(ckpt, self.fingerprint, self.state, self.trainable, self.optimizer)
        reason = self.state.stopped_reason(reason, self.job.max_steps)
        self.model.eval()
        return reason

    def _report(self, reporter: Reporter) -> None:
        s = self.state
        percent, eta = s.progress(self.budget_s)
        reporter.progress(
            s.step,
            s.total_steps,
            loss=s.losses[-1],
            tokens_per_s=s.tokens / max(s.seconds, 1e-9),
            percent=percent,
            eta_s=eta,
            quant_lambda=self.quant_lambda,
        )
