"""`instruct`: LoRA supervised fine-tuning with the prompt masked from the loss and sequence packing.

Train: load the data (trainer.data contract), carve the validation split, tokenize with the prompt
masked, pack, wrap the base model with LoRA (all linear layers by default) and run the plain loop in
trainer.loop. The artifact is a PEFT adapter directory (adapter_config.json + safetensors).
Evaluate: the masked test loss of trainer.evaluate, for an adapter or for the base model alone, after
the adapter has passed the shape check against the base model.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from trainer.artifacts import MAX_LORA_RANK, check_lora_artifact_dir, check_lora_manifest
from trainer.checkpoint import job_fingerprint
from trainer.data import SFTExample, load_examples, split, tokenize_for_sft
from trainer.evaluate import masked_test_loss
from trainer.hardware import cpu_has_native_bf16
from trainer.loop import SCHEDULES, LoopSettings, TrainingLoop
from trainer.lora import (
    load_adapter,
    load_base_model,
    load_tokenizer,
    qlora_available,
    wrap_lora,
)
from trainer.models import pick_device, pick_dtype
from trainer.packing import PackedRow, pack_examples
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
from trainer.targets import ALL_LINEAR, ALL_LINEAR_AND_HEAD, AUTO_TARGETS

# Job fields that may change between a run and its resumption without invalidating the checkpoint.
RESUME_INDEPENDENT_FIELDS = frozenset({"budget_s", "threads", "checkpoint_interval_s", "device"})


def stop_requested(reporter: Reporter) -> Callable[[], bool]:
    """The reporter's optional `should_stop()` (the worker's is set by SIGTERM), else never."""
    hook = getattr(reporter, "should_stop", None)
    return hook if callable(hook) else (lambda: False)


def apply_threads(threads: int | None) -> None:
    if threads is not None:
        torch.set_num_threads(max(1, threads))


def to_rows(tokenized: list[Any], max_length: int, packing: bool) -> list[PackedRow]:
    if packing:
        return pack_examples(tokenized, max_length)
    return [PackedRow(t.input_ids, t.labels, list(range(len(t.input_ids)))) for t in tokenized]


def check_hparams(hp: dict[str, Any]) -> None:
    if hp["schedule"] not in SCHEDULES:
        raise JobSpecError(f"schedule {hp['schedule']!r} is not one of {SCHEDULES}")
    for key in ("lr", "micro_batch_size", "grad_accum", "lora_r", "max_length", "epochs"):
        if not hp[key] > 0:
            raise JobSpecError(f"hyperparameter {key} must be positive, got {hp[key]!r}")
    if int(hp["lora_r"]) > MAX_LORA_RANK:
        raise JobSpecError(f"lora_r {hp['lora_r']} exceeds the rank cap {MAX_LORA_RANK}")
    if hp["qlora"] and not qlora_available():
        raise JobSpecError("qlora needs a CUDA GPU and bitsandbytes; set qlora false on this machine")


@register_recipe
class InstructRecipe(Recipe):
    kind = "instruct"

    @classmethod
    def default_hparams(cls) -> dict[str, Any]:
        return {
            "lr": 1e-3,
            "weight_decay": 0.0,
            "warmup_ratio": 0.05,
            "schedule": "cosine",
            "micro_batch_size": 8,
            "grad_accum": 1,
            "max_grad_norm": 1.0,
            "epochs": 1.0,
            "max_length": 512,
            "packing": True,
            "lora_r": 16,
            "lora_alpha": 32.0,
            "lora_dropout": 0.05,
            "lora_targets": AUTO_TARGETS,
            "gradient_checkpointing": False,
            "qlora": False,
        }

    @classmethod
    def search_space(cls) -> dict[str, ParamSpec]:
        return {
            "lr": ParamSpec("float_log", 1e-5, 1e-2),
            "weight_decay": ParamSpec("float", 0.0, 0.1),
            "warmup_ratio": ParamSpec("float", 0.0, 0.2),
            "schedule": ParamSpec("categorical", choices=SCHEDULES),
            "micro_batch_size": ParamSpec("categorical", choices=(2, 4, 8, 16)),
            "grad_accum": ParamSpec("categorical", choices=(1, 2, 4)),
            "epochs": ParamSpec("float", 0.5, 4.0),
            "lora_r": ParamSpec("categorical", choices=(4, 8, 16, 32, 64)),
            "lora_alpha": ParamSpec("float_log", 4.0, 128.0),
            "lora_dropout": ParamSpec("float", 0.0, 0.2),
            "lora_targets": ParamSpec(
                "categorical",
                choices=(
                    AUTO_TARGETS,
                    ALL_LINEAR_AND_HEAD,
                    ALL_LINEAR,
                    "q_proj,v_proj",
                    "q_proj,k_proj,v_proj,o_proj",
                ),
            ),
        }

    def load_split(self, job: TrainJob, hp: dict[str, Any]) -> tuple[list[SFTExample], list[SFTExample]]:
        examples = load_examples(job.train_file, self.kind)
        return split(examples, job.val_fraction, job.seed)

    def train(self, job: TrainJob, reporter: Reporter) -> TrainResult:
        started = time.monotonic()
        hp = self.merged_hparams(job.hparams)
        check_hparams(hp)
        apply_threads(job.threads)
        device = pick_device(job.device)
        dtype = pick_dtype(device)
        torch.manual_seed(job.seed)
        reporter.phase("prepare")
        tokenizer = load_tokenizer(job.base_model_dir)
        train_set, val_set = self.load_split(job, hp)
        max_length = int(hp["max_length"])
        tokenized = [tokenize_for_sft(tokenizer, ex, max_length) for ex in train_set]
        rows = to_rows(tokenized, max_length, bool(hp["packing"]))
        reporter.log(f"{len(train_set)} train / {len(val_set)} val examples packed into {len(rows)} rows")
        model = load_base_model(job.base_model_dir, device, dtype, quantize_4bit=bool(hp["qlora"]))
        model = wrap_lora(
            model, hp, bool(hp["gradient_checkpointing"]), bool(hp["qlora"]), job.init_adapter_dir
        )
        settings = LoopSettings(
            lr=float(hp["lr"]),
            weight_decay=float(hp["weight_decay"]),
            warmup_ratio=float(hp["warmup_ratio"]),
            schedule=str(hp["schedule"]),
            micro_batch_size=int(hp["micro_batch_size"]),
            grad_accum=int(hp["grad_accum"]),
            max_grad_norm=float(hp["max_grad_norm"]),
            epochs=float(hp["epochs"]),
            max_steps=job.max_steps,
            budget_s=job.budget_s - (time.monotonic() - started),
            seed=job.seed,
            device=device,
            dtype=dtype,
            pad_id=int(tokenizer.pad_token_id),
            checkpoint_dir=Path(job.checkpoint_dir) if job.checkpoint_dir else None,
            checkpoint_interval_s=job.checkpoint_interval_s,
            cpu_bf16=device == "cpu" and cpu_has_native_bf16(),
        )
        fingerprint = job_fingerprint(
            {k: v for k, v in dataclasses.asdict(job).items() if k not in RESUME_INDEPENDENT_FIELDS}
        )
        loop = TrainingLoop(model, rows, settings, reporter, fingerprint, stop_requested(reporter))
        loop.resume_if_possible()
        reporter.phase("train")
        reason = loop.run()
        reporter.phase("save")
        out = Path(job.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(str(out), safe_serialization=True, save_embedding_layers=False)
        metrics = {"train_loss": _tail_mean(loop.state.losses)}
        if val_set:
            reporter.phase("validate")
            val = masked_test_loss(model, tokenizer, val_set, max_length, device, dtype)
            metrics["val_loss"] = val["loss"]
        for name, value in metrics.items():
            reporter.metric(name, value)
        return TrainResult(
            artifact_dir=str(out),
            metrics=metrics,
            steps=loop.state.step,
            tokens=loop.state.tokens,
            seconds=time.monotonic() - started,
            stopped_reason=reason,
        )

    def evaluate(self, job: EvalJob, reporter: Reporter) -> dict[str, float]:
        apply_threads(job.threads)
        device = pick_device(job.device)
        dtype = pick_dtype(device)
        torch.manual_seed(job.seed)
        reporter.phase("prepare")
        if job.artifact_dir is not None:
            check_lora_artifact_dir(job.artifact_dir, job.base_model_dir)
        examples = load_examples(job.eval_file, self.kind, max_rows=job.max_examples)
        tokenizer = load_tokenizer(job.base_model_dir)
        model = load_base_model(job.base_model_dir, device, dtype)
        if job.artifact_dir is not None:
            model = load_adapter(model, job.artifact_dir)
        reporter.phase("evaluate")
        max_length = int(self.default_hparams()["max_length"])
        metrics = masked_test_loss(model, tokenizer, examples, max_length, device, dtype)
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


def _tail_mean(losses: list[float], n: int = 10) -> float:
    tail = losses[-n:]
    return sum(tail) / len(tail) if tail else float("nan")
