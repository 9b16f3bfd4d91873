"""`dpo`: LoRA Direct Preference Optimisation.

The loss is the standard DPO loss (Rafailov et al. 2023) with optional label smoothing (cDPO):
    -log sigmoid(beta * [(log pi(c) - log ref(c)) - (log pi(r) - log ref(r))])
over the response tokens of each (prompt, chosen, rejected) triple. The reference model is the base
model itself with the LoRA adapter switched off (`disable_adapter`), so no second copy is held in
memory; reference log-probabilities never change, so each example's are computed once and cached.

An own loop rather than trl's DPOTrainer: it honours the job's wall-clock budget, checkpoints and
reports through the same interface as the other recipes, and scores exactly the tokens
`trainer.data.tokenize_for_sft` scores, the same code the validator's evaluation runs.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from trainer.artifacts import check_lora_artifact_dir, check_lora_manifest
from trainer.checkpoint import LoopState, job_fingerprint, load_checkpoint, save_checkpoint
from trainer.data import IGNORE_INDEX, PreferenceExample, SFTExample, load_examples, split, tokenize_for_sft
from trainer.loop import SCHEDULES, lr_factor
from trainer.lora import load_adapter, load_base_model, load_tokenizer, qlora_available, wrap_lora
from trainer.models import pick_device, pick_dtype
from trainer.packing import collate_padded
from trainer.recipes.base import (
    EvalJob,
    JobSpecError,
    ParamSpec,
    Recipe,
    Reporter,
    TrainJob,
    TrainResult,
    register_recipe,
)
from trainer.recipes.instruct import RESUME_INDEPENDENT_FIELDS

EVAL_BATCH_PAIRS = 4


@dataclasses.dataclass(frozen=True)
class PairBatch:
    """2B padded rows: the B chosen responses first, then the B rejected ones (same prompts)."""

    input_ids: torch.Tensor  # (2B, T)
    labels: torch.Tensor  # (2B, T), IGNORE_INDEX on prompt and padding
    attention_mask: torch.Tensor  # (2B, T)

    @property
    def pairs(self) -> int:
        return self.input_ids.shape[0] // 2


def tokenize_pairs(
    tokenizer: Any, examples: Sequence[PreferenceExample], max_length: int
) -> list[tuple[Any, Any]]:
    """(chosen, rejected) tokenised with the prompt masked, exactly as SFT scoring masks it."""
    return [
        (
            tokenize_for_sft(tokenizer, SFTExample(ex.prompt, ex.chosen), max_length),
            tokenize_for_sft(tokenizer, SFTExample(ex.prompt, ex.rejected), max_length),
        )
        for ex in examples
    ]


def collate_pairs(pairs: Sequence[tuple[Any, Any]], pad_id: int) -> PairBatch:
    rows = [c for c, _ in pairs] + [r for _, r in pairs]
    batch = collate_padded(rows, pad_id)
    return PairBatch(batch["input_ids"], batch["labels"], batch["attention_mask"])


def sequence_logps(model: Any, batch: PairBatch, device: str) -> torch.Tensor:
    """(2B,) summed log-probabilities of each row's scored (response) tokens."""
    # On CUDA the frozen base is in bf16/fp16 and LoRA in fp32: autocast runs both in the compute dtype.
    with torch.autocast("cuda", dtype=pick_dtype("cuda"), enabled=device == "cuda"):
        logits = model(
            input_ids=batch.input_ids.to(device),
            attention_mask=batch.attention_mask.to(device),
            use_cache=False,
        ).logits.float()
    # Position t predicts token t+1: logits (2B, T-1, V) against labels (2B, T-1).
    labels = batch.labels[:, 1:].to(device)
    token_nll = F.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]),
        labels.reshape(-1),
        ignore_index=IGNORE_INDEX,
        reduction="none",
    ).view(labels.shape)
    return -(token_nll * (labels != IGNORE_INDEX)).sum(dim=1)


def reference_logps(model: Any, batch: PairBatch, device: str) -> torch.Tensor:
    """The base model's log-probabilities: the same weights with the adapter switched off."""
    with torch.no_grad(), model.disable_adapter():
        return sequence_logps(model, batch, device)


def dpo_loss(
    policy: torch.Tensor, reference: torch.Tensor, beta: float, label_smoothing: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean loss, per-pair implicit reward margin) from (2B,) log-probs laid out chosen-then-rejected."""
    pairs = policy.shape[0] // 2
    chosen_ratio = policy[:pairs] - reference[:pairs]
    rejected_ratio = policy[pairs:] - reference[pairs:]
    margin = beta * (chosen_ratio - rejected_ratio)
    losses = -(1 - label_smoothing) * F.logsigmoid(margin) - label_smoothing * F.logsigmoid(-margin)
    return losses.mean(), margin.detach()


def resume_fingerprint(job: TrainJob) -> str:
    """Identifies a job for resuming; budget, threads, device and checkpoint interval may change."""
    fields = dataclasses.asdict(job)
    return job_fingerprint({k: v for k, v in fields.items() if k not in RESUME_INDEPENDENT_FIELDS})


SAVE_RESERVE = 0.1  # share of a job's budget kept for saving the artifact after the loop


def loop_budget(job: TrainJob, started: float) -> float:
    """Seconds the training loop may use: the job's budget less preparation so far and the reserve."""
    return max(1.0, job.budget_s * (1 - SAVE_RESERVE) - (time.monotonic() - started))


def stop_signal(reporter: Reporter) -> Callable[[], bool]:
    """The reporter's optional `should_stop` (the worker's cancel flag), else never stop."""
    should_stop = getattr(reporter, "should_stop", None)
    return should_stop if callable(should_stop) else (lambda: False)


def lora_model(job: TrainJob, hp: dict[str, Any], device: str) -> Any:
    """The base model (4-bit when `qlora`) with LoRA weights (fresh, or the job's initial adapter); the
    adapter-off model is the reference."""
    qlora = bool(hp["qlora"])
    base = load_base_model(job.base_model_dir, device, pick_dtype(device), quantize_4bit=qlora)
    return wrap_lora(base, hp, bool(hp["gradient_checkpointing"]), qlora, job.init_adapter_dir)


def check_hparams(hp: dict[str, Any]) -> None:
    if hp["qlora"] and not qlora_available():
        raise JobSpecError("qlora needs a CUDA GPU and bitsandbytes; set qlora false on this machine")
    if hp["schedule"] not in SCHEDULES:
        raise JobSpecError(f"schedule {hp['schedule']!r} is not one of {SCHEDULES}")
    for key in ("lr", "beta", "micro_batch_size", "grad_accum", "lora_r", "max_length", "epochs"):
        if not hp[key] > 0:
            raise JobSpecError(f"hyperparameter {key} must be positive, got {hp[key]!r}")
    if not 0.0 <= hp["label_smoothing"] < 0.5:
        raise JobSpecError(f"label_smoothing must be in [0, 0.5), got {hp['label_smoothing']}")


class DPOLoop:
    """Optimizer steps over preference pairs, with a cached reference, budget and checkpoints."""

    def __init__(
        self, model: Any, pairs: list[tuple[Any, Any]], hp: dict[str, Any], job: TrainJob, pad_id: int
    ):
        self.model, self.pairs, self.hp, self.job, self.pad_id = model, pairs, hp, job, pad_id
        self.device = pick_device(job.device)
        self.trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
        self.optimizer = torch.optim.AdamW(
            self.trainable.values(), lr=hp["lr"], weight_decay=hp["weight_decay"]
        )
        per_step = int(hp["micro_batch_size"]) * int(hp["grad_accum"])
        total = max(1, math.ceil(len(pairs) / per_step * float(hp["epochs"])))
        self.state = LoopState(total_steps=min(total, job.max_steps) if job.max_steps else total)
        self.reference: dict[int, torch.Tensor] = {}  # pair index -> (2,) reference log-probs
        self.fingerprint = resume_fingerprint(job)
        # Loop seconds allowed; the recipe lowers it by what preparing took and a reserve for saving.
        self.budget_s = job.budget_s
        self.last_step_s = 0.0
        self.accuracies: list[float] = []

    def _indices(self, step: int) -> list[list[int]]:
        """Pair indices of each micro-batch of `step`: a seeded permutation per epoch (exact resume)."""
        mb, accum = int(self.hp["micro_batch_size"]), int(self.hp["grad_accum"])
        per_epoch = math.ceil(len(self.pairs) / mb)
        out = []
        for a in range(accum):
            epoch, within = divmod(step * accum + a, per_epoch)
            order = torch.randperm(
                len(self.pairs), generator=torch.Generator().manual_seed(self.job.seed * 1000 + epoch)
            )
            out.append([int(i) for i in order[within * mb : (within + 1) * mb]])
        return out

    def _reference(self, indices: list[int], batch: PairBatch) -> torch.Tensor:
        missing = [i for i in indices if i not in self.reference]
        if missing:
            logps = reference_logps(self.model, batch, self.device).cpu()
            n = len(indices)
            for k, i in enumerate(indices):
                self.reference[i] = torch.stack([logps[k], logps[n + k]])
        ref = torch.stack([self.reference[i] for i in indices])  # (B, 2)
        return torch.cat([ref[:, 0], ref[:, 1]]).to(self.device)

    def step(self) -> tuple[float, int]:
        factor = lr_factor(
            self.state.step, self.state.total_steps, self.hp["warmup_ratio"], self.hp["schedule"]
        )
        for group in self.optimizer.param_groups:
            group["lr"] = self.hp["lr"] * factor
        groups = self._indices(self.state.step)
        total_loss, tokens, weight = 0.0, 0, sum(len(g) for g in groups)
        for indices in groups:
            batch = collate_pairs([self.pairs[i] for i in indices], self.pad_id)
            reference = self._reference(indices, batch)
            loss, margin = dpo_loss(
                sequence_logps(self.model, batch, self.device),
                reference,
                self.hp["beta"],
                self.hp["label_smoothing"],
            )
            (loss * len(indices) / weight).backward()  # type: ignore[no-untyped-call]
            total_loss += float(loss.detach()) * len(indices) / weight
            tokens += int(batch.attention_mask.sum())
            self.accuracies.append(float((margin > 0).float().mean()))
        torch.nn.utils.clip_grad_norm_(self.trainable.values(), self.hp["max_grad_norm"])
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return total_loss, tokens

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
                    f"DPO loss became {loss} at step {self.state.step}; lower the learning rate"
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
                self._checkpoint(ckpt, reporter)
                last_ckpt = time.monotonic()
        if reason == "cancelled" and ckpt is not None:
            self._checkpoint(ckpt, reporter)
        reason = self.state.stopped_reason(reason, self.job.max_steps)
        self.model.eval()
        return reason

    def _checkpoint(self, ckpt: Path, reporter: Reporter) -> None:
        path = save_checkpoint(ckpt, self.fingerprint, self.state, self.trainable, self.optimizer)
        on_checkpoint = getattr(reporter, "checkpoint", None)
        if callable(on_checkpoint):
            on_checkpoint(self.state.step, str(path))

    def _report(self, reporter: Reporter) -> None:
        s = self.state
        percent, eta = s.progress(self.budget_s)
        reporter.progress(
            s.step,
            s.total_steps,
            loss=s.losses[-1],
            tokens_per_s=s.tokens / max(1e-9, s.seconds),
            percent=percent,
            eta_s=eta,
            preference_accuracy=sum(self.accuracies[-8:]) / max(1, len(self.accuracies[-8:])),
        )


@torch.no_grad()
def preference_metrics(
    model: Any, tokenizer: Any, examples: Sequence[PreferenceExample], hp: dict[str, Any], device: str
) -> dict[str, float]:
    """DPO loss and preference accuracy of `model` (a PeftModel) against its own base as reference.

    Without an adapter (the base model scored against itself) the loss is log 2 and accuracy 0.
    """
    pairs = tokenize_pairs(tokenizer, examples, int(hp["max_length"]))
    has_adapter = hasattr(model, "disable_adapter")
    model.eval()
    losses, margins, policy_wins = [], [], []
    for start in range(0, len(pairs), EVAL_BATCH_PAIRS):
        batch = collate_pairs(pairs[start : start + EVAL_BATCH_PAIRS], int(tokenizer.pad_token_id))
        policy = sequence_logps(model, batch, device)
        reference = reference_logps(model, batch, device) if has_adapter else policy
        loss, margin = dpo_loss(policy, reference, float(hp["beta"]))
        losses.append(float(loss) * batch.pairs)
        margins.append(margin.cpu())
        policy_wins.append((policy[: batch.pairs] > policy[batch.pairs :]).float().cpu())
    margin_all = torch.cat(margins)
    return {
        "loss": sum(losses) / len(pairs),
        "preference_accuracy": float((margin_all > 0).float().mean()),
        "reward_margin": float(margin_all.mean()),
        "policy_prefers_chosen": float(torch.cat(policy_wins).mean()),
        "examples": float(len(pairs)),
    }


@register_recipe
class DPORecipe(Recipe):
    kind = "dpo"

    @classmethod
    def default_hparams(cls) -> dict[str, Any]:
        return {
            "lr": 5e-4,
            "beta": 0.1,
            "label_smoothing": 0.0,
            "weight_decay": 0.0,
            "warmup_ratio": 0.1,
            "schedule": "cosine",
            "micro_batch_size": 4,
            "grad_accum": 1,
            "max_grad_norm": 1.0,
            "epochs": 1.0,
            "max_length": 512,
            "lora_r": 16,
            "lora_alpha": 32.0,
            "lora_dropout": 0.05,
            "lora_targets": "all-linear",
            "gradient_checkpointing": False,
            "qlora": False,  # 4-bit NF4 base: needs CUDA and bitsandbytes
        }

    @classmethod
    def search_space(cls) -> dict[str, ParamSpec]:
        return {
            "lr": ParamSpec("float_log", 1e-5, 5e-3),
            "beta": ParamSpec("float_log", 0.02, 0.5),
            "label_smoothing": ParamSpec("float", 0.0, 0.2),
            "warmup_ratio": ParamSpec("float", 0.0, 0.2),
            "schedule": ParamSpec("categorical", choices=SCHEDULES),
            "micro_batch_size": ParamSpec("categorical", choices=(2, 4, 8)),
            "epochs": ParamSpec("float", 0.5, 3.0),
            "lora_r": ParamSpec("categorical", choices=(4, 8, 16, 32)),
            "lora_alpha": ParamSpec("float_log", 4.0, 64.0),
            "lora_dropout": ParamSpec("float", 0.0, 0.2),
        }

    def train(self, job: TrainJob, reporter: Reporter) -> TrainResult:
        started = time.monotonic()
        hp = self.merged_hparams(job.hparams)
        check_hparams(hp)
        if job.threads:
            torch.set_num_threads(job.threads)
        device = pick_device(job.device)
        torch.manual_seed(job.seed)
        reporter.phase("prepare")
        tokenizer = load_tokenizer(job.base_model_dir)
        train_set, val_set = split(load_examples(job.train_file, self.kind), job.val_fraction, job.seed)
        pairs = tokenize_pairs(tokenizer, train_set, int(hp["max_length"]))
        reporter.log(f"{len(train_set)} train / {len(val_set)} val preference pairs")
        model = lora_model(job, hp, device)
        loop = DPOLoop(model, pairs, hp, job, int(tokenizer.pad_token_id))
        loop.budget_s = loop_budget(job, started)
        reporter.phase("train")
        reason = loop.run(reporter, stop_signal(reporter))
        reporter.phase("save")
        out = Path(job.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(str(out), safe_serialization=True, save_embedding_layers=False)
        metrics = {"train_loss": sum(loop.state.losses[-10:]) / max(1, len(loop.state.losses[-10:]))}
        if val_set:
            reporter.phase("validate")
            metrics["val_loss"] = preference_metrics(model, tokenizer, val_set, hp, device)["loss"]
        for name, value in metrics.items():
            reporter.metric(name, value)
        return TrainResult(
            str(out), metrics, loop.state.step, loop.state.tokens, time.monotonic() - started, reason
        )

    def evaluate(self, job: EvalJob, reporter: Reporter) -> dict[str, float]:
        if job.threads:
            torch.set_num_threads(job.threads)
        device = pick_device(job.device)
        torch.manual_seed(job.seed)
        reporter.phase("prepare")
        if job.artifact_dir is not None:
            check_lora_artifact_dir(job.artifact_dir, job.base_model_dir)
        examples = load_examples(job.eval_file, self.kind, max_rows=job.max_examples)
        tokenizer = load_tokenizer(job.base_model_dir)
        model = load_base_model(job.base_model_dir, device, pick_dtype(device))
        if job.artifact_dir is not None:
            model = load_adapter(model, job.artifact_dir)
        reporter.phase("evaluate")
        metrics = preference_metrics(model, tokenizer, examples, self.default_hparams(), device)
        for name, value in metrics.items():
            reporter.metric(name, value)
        return metrics

    def export(self, artifact_dir: Path, out_path: Path) -> Path:
        from trainer.bundles import export_adapter_bundle

        return export_adapter_bundle(Path(artifact_dir), Path(out_path), self.kind)

    def check_artifact(self, manifest: Any, base_model_dir: Path) -> None:
        if isinstance(manifest, str | Path):
            check_lora_artifact_dir(manifest, base_model_dir)
        else:
            check_lora_manifest(manifest, base_model_dir)
