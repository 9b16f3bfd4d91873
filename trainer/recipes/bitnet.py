"""`bitnet`: BitNet b1.58 ternary training, packed 2-bit safetensors, GGUF TQ2_0 / TQ1_0 export.

Training keeps full-precision latent weights and runs every decoder linear through `BitLinear`
(ternary weights, int8 activations, straight-through gradients). Starting from a pretrained model,
quantisation is ramped in over the first `ramp_fraction` of the run so the model is not destroyed in
one step; from scratch it is ternary from the first step. The artifact is a packed checkpoint that
transformers' own BitNet loader reads; evaluation scores it through that loader, quantisation on.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from trainer.bitnet.gguf_export import export_gguf
from trainer.bitnet.layers import set_quant_lambda
from trainer.bitnet.model import (
    ARCHITECTURES,
    INITS,
    BitnetModelError,
    bitnet_config_dict,
    build_model,
    check_artifact_config,
    expected_tensor_shapes,
    load_artifact,
    reuses_base_weights,
)
from trainer.bitnet.packing import WEIGHTS_FILE, save_packed_model
from trainer.bitnet.training import BitnetLoop
from trainer.data import IGNORE_INDEX, load_examples, split, tokenize_for_sft
from trainer.evaluate import masked_test_loss
from trainer.lora import load_tokenizer
from trainer.models import pick_device, read_model_config
from trainer.recipes.base import (
    ArtifactRejected,
    EvalJob,
    ParamSpec,
    Recipe,
    Reporter,
    TrainerError,
    TrainJob,
    TrainResult,
    register_recipe,
)
from trainer.recipes.dpo import loop_budget, stop_signal

# Evaluation window, the same as the instruct recipe's so bitnet and instruct losses compare.
EVAL_MAX_LENGTH = 512
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
ARTIFACT_FILES = frozenset({WEIGHTS_FILE, "config.json", "bitnet.json", *TOKENIZER_FILES})


def apply_threads(threads: int | None) -> None:
    # More compute threads than free cores makes torch spin: on a loaded 2-core machine 2 threads
    # ran 15x slower than 1. The job's cap is the worker's to choose.
    if threads:
        torch.set_num_threads(threads)


def token_blocks(tokenizer: Any, examples: list[Any], seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pack tokenised examples end to end into (n_blocks, seq_len) input ids and labels."""
    ids: list[int] = []
    labels: list[int] = []
    for example in examples:
        tokenized = tokenize_for_sft(tokenizer, example, seq_len)
        ids += tokenized.input_ids
        labels += tokenized.labels
    n_blocks = max(1, len(ids) // seq_len)
    pad = n_blocks * seq_len - len(ids)
    if pad > 0:  # fewer tokens than one block: pad with ignored positions
        ids += [tokenizer.eos_token_id or 0] * pad
        labels += [IGNORE_INDEX] * pad
    # flat stream -> (n_blocks, seq_len); a tail shorter than a block is dropped.
    cut = n_blocks * seq_len
    return torch.tensor(ids[:cut]).view(n_blocks, seq_len), torch.tensor(labels[:cut]).view(n_blocks, seq_len)


@register_recipe
class BitnetRecipe(Recipe):
    kind = "bitnet"

    @classmethod
    def default_hparams(cls) -> dict[str, Any]:
        return {
            "lr": 1.5e-3,  # BitNet b1.58 trains with a higher peak than full precision
            "min_lr_ratio": 0.1,
            "weight_decay": 0.01,
            "warmup_ratio": 0.05,
            "batch_size": 8,
            "seq_len": 128,
            "max_steps": 300,
            "init": "pretrained",
            "architecture": "base",
            "ramp_fraction": 0.3,  # share of the run over which quantisation goes from 0 to 1
            "max_grad_norm": 1.0,
        }

    @classmethod
    def search_space(cls) -> dict[str, ParamSpec]:
        return {
            "lr": ParamSpec("float_log", 2e-4, 5e-3),
            "warmup_ratio": ParamSpec("float", 0.0, 0.2),
            "batch_size": ParamSpec("categorical", choices=(4, 8, 16)),
            "ramp_fraction": ParamSpec("float", 0.1, 0.6),
            "weight_decay": ParamSpec("float", 0.0, 0.1),
        }

    def _check_hparams(self, hp: dict[str, Any]) -> None:
        if hp["architecture"] not in ARCHITECTURES:
            raise TrainerError(f"architecture must be one of {ARCHITECTURES}, got {hp['architecture']!r}")
        if hp["init"] not in INITS:
            raise TrainerError(f"init must be one of {INITS}, got {hp['init']!r}")

    def train(self, job: TrainJob, reporter: Reporter) -> TrainResult:
        started = time.monotonic()
        hp = self.merged_hparams(job.hparams)
        self._check_hparams(hp)
        apply_threads(job.threads)
        torch.manual_seed(job.seed)
        device = pick_device(job.device)
        base_dir = Path(job.base_model_dir)
        reporter.phase("prepare")
        tokenizer = load_tokenizer(base_dir)
        examples, _ = split(load_examples(job.train_file, "bitnet"), job.val_fraction, job.seed)
        ids, labels = token_blocks(tokenizer, examples, int(hp["seq_len"]))
        model = build_model(base_dir, hp["architecture"], hp["init"], job.seed).to(device)
        if hp["init"] == "pretrained" and not reuses_base_weights(base_dir, hp["architecture"]):
            reporter.log("llama_cpp widths differ from the base model's: training from scratch, no ramp")
            hp = {**hp, "init": "scratch"}
        ramp = hp["ramp_fraction"] if hp["init"] == "pretrained" else 0.0
        loop = BitnetLoop(model, ids, labels, hp, ramp, job)
        loop.budget_s = loop_budget(job, started)
        reporter.phase("train")
        reason = loop.run(reporter, stop_signal(reporter))
        reporter.phase("save")
        set_quant_lambda(model, 1.0)
        out = Path(job.output_dir)
        self._save(model.cpu(), base_dir, out, hp)
        tail = loop.state.losses[-10:]
        metrics = {"train_loss": sum(tail) / max(1, len(tail)), "quant_lambda": 1.0}
        reporter.metric("train_loss", metrics["train_loss"])
        return TrainResult(
            str(out), metrics, loop.state.step, loop.state.tokens, time.monotonic() - started, reason
        )

    def _save(self, model: Any, base_dir: Path, out: Path, hp: dict[str, Any]) -> None:
        save_packed_model(model, out)
        for name in TOKENIZER_FILES:
            if (base_dir / name).is_file():
                shutil.copyfile(base_dir / name, out / name)
        meta = {"architecture": hp["architecture"], "init": hp["init"], "bits_per_weight": 2}
        (out / "bitnet.json").write_text(json.dumps(meta, sort_keys=True))

    def evaluate(self, job: EvalJob, reporter: Reporter) -> dict[str, float]:
        apply_threads(job.threads)
        device = pick_device(job.device)
        base_dir = Path(job.base_model_dir)
        reporter.phase("evaluate")
        examples = load_examples(job.eval_file, "bitnet", max_rows=job.max_examples)
        tokenizer = load_tokenizer(base_dir)
        if job.artifact_dir is None:
            model = build_model(base_dir, "base", "pretrained", job.seed)  # the base model made ternary
            set_quant_lambda(model, 1.0)
        else:
            artifact = Path(job.artifact_dir)
            config = json.loads((artifact / "config.json").read_text(encoding="utf-8"))
            try:
                check_artifact_config(config, read_model_config(base_dir))
            except BitnetModelError as exc:
                raise ArtifactRejected(str(exc)) from exc
            model = load_artifact(artifact, device)
        metrics = masked_test_loss(model.to(device), tokenizer, examples, EVAL_MAX_LENGTH, device)
        reporter.metric("loss", metrics["loss"])
        return metrics

    def export(self, artifact_dir: Path, out_path: Path) -> Path:
        from protocol.bundle import write_bundle

        write_bundle(artifact_dir, out_path, kind=self.kind, meta={"format": "bitnet-b158-packed"})
        return out_path

    def export_gguf(self, artifact_dir: Path, out_path: Path, quant: str = "TQ2_0") -> Path:
        """The CPU-inference form for llama.cpp (needs architecture "llama_cpp" or 256-multiple widths)."""
        return export_gguf(artifact_dir, out_path, quant)

    def check_artifact(self, manifest: Any, base_model_dir: Path) -> None:
        base_config = read_model_config(base_model_dir)
        names = {f.path for f in manifest.files}
        if not names <= ARTIFACT_FILES or WEIGHTS_FILE not in names or "config.json" not in names:
            raise ArtifactRejected(
                f"bitnet artifact files {sorted(names)}; expected a subset of {sorted(ARTIFACT_FILES)}"
            )
        tensors = {t.name: (t.dtype, tuple(t.shape)) for t in manifest.file(WEIGHTS_FILE).tensors or ()}
        for architecture in ARCHITECTURES:
            if tensors == expected_tensor_shapes(bitnet_config_dict(base_config, architecture)):
                return
        raise ArtifactRejected(
            "bitnet artifact tensors do not match the base model's shapes (either architecture)"
        )
