"""Will a task's training fit this machine's memory? Two checks, without torch (the node never loads it).

1. At admission (``miner.policy.size_bound``): the announcement gives the base model's bundle size
   but not its shape; a base model whose weights alone exceed what the miner may use is refused,
   with the largest base model that would fit.
2. Once the base model is fetched (``estimate_fit``): its config.json gives the shape, and
   ``trainer.fit.estimate_memory`` (checked against real CUDA peaks, 1.0-1.4x, bench/memory_fit.py)
   estimates the job's peak with the kind's default micro-batch and sequence length, the operator's
   pinned hyperparameters and the task's own. A job over ``MEMORY_HEADROOM`` of the device's free
   memory (host RAM capped by ``miner.max_ram_mb``, or the chosen GPU's free memory) is refused
   before it trains, with the reason recorded.

The memory-relevant defaults of each kind are mirrored here (the recipes import torch);
tests/miner/test_miner_memory.py checks them against the recipes' ``default_hparams``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from miner.policy import Verdict, ram_cap
from protocol import strict_json
from protocol.errors import ProtocolError
from trainer.fit import MEMORY_HEADROOM, ModelShape, TaskSize, estimate_memory
from trainer.targets import ALL_LINEAR_AND_EMBEDDINGS, ALL_LINEAR_AND_HEAD, AUTO_TARGETS, resolve_targets

MIB = 1 << 20
# The kinds whose jobs put LoRA on a Llama-style language model: what trainer.fit can estimate.
LM_DEFAULTS: dict[str, dict[str, Any]] = {
    "instruct": {
        "micro_batch_size": 8,
        "max_length": 512,
        "lora_r": 16,
        "lora_targets": AUTO_TARGETS,
        "gradient_checkpointing": False,
        "qlora": False,
    },
    "dpo": {
        "micro_batch_size": 4,
        "max_length": 512,
        "lora_r": 16,
        "lora_targets": "all-linear",
        "gradient_checkpointing": False,
        "qlora": False,
    },
    "grpo": {
        "group_size": 8,
        "prompts_per_step": 4,
        "max_prompt_tokens": 384,
        "max_new_tokens": 128,
        "lora_r": 16,
        "lora_targets": "all-linear",
        "gradient_checkpointing": False,
        "qlora": False,
    },
}
MAX_CONFIG_BYTES = 1 << 20


@dataclass(frozen=True)
class TrainingDevice:
    """Where a job of this miner trains, and how much of its memory the job may use."""

    name: str  # "cpu" or "cuda:N"
    free_mb: int  # 0 on a GPU: unknown (no NVML)

    @property
    def cuda(self) -> bool:
        return self.name.startswith("cuda")

    @property
    def what(self) -> str:
        return f"GPU memory on {self.name}" if self.cuda else "RAM"


def task_size(kind: str, hparams: dict[str, Any], cuda: bool, shape: ModelShape) -> TaskSize | None:
    """The job's memory-relevant size (trainer.fit.TaskSize) on a base model of `shape`; None for
    kinds it cannot estimate. Raises ValueError for targets the model cannot have."""
    defaults = LM_DEFAULTS.get(kind)
    if defaults is None:
        return None
    hp = {**defaults, **{k: v for k, v in hparams.items() if k in defaults}}
    targets = resolve_targets(str(hp["lora_targets"]), shape.vocab, shape.hidden)
    qlora = bool(hp["qlora"]) and cuda  # QLoRA needs CUDA; the recipe refuses it elsewhere
    if kind == "grpo":  # one update over every sampled completion of the step, prompt + completion
        rows = int(hp["group_size"]) * int(hp["prompts_per_step"])
        seq_len = int(hp["max_prompt_tokens"]) + int(hp["max_new_tokens"])
    else:  # dpo scores chosen and rejected responses in one batch of 2B rows
        rows = int(hp["micro_batch_size"]) * (2 if kind == "dpo" else 1)
        seq_len = int(hp["max_length"])
    return TaskSize(
        train_tokens=0,
        micro_batch_size=rows,
        seq_len=seq_len,
        lora_r=int(hp["lora_r"]),
        gradient_checkpointing=bool(hp["gradient_checkpointing"]),
        weight_bytes=2 if cuda else 4,
        qlora=qlora,
        lora_head=targets == ALL_LINEAR_AND_HEAD,
        token_delta=targets == ALL_LINEAR_AND_EMBEDDINGS,
    )


def read_config(base_dir: Path) -> dict[str, Any]:
    """The fetched base model's config.json (untrusted: parsed strictly, size-capped)."""
    path = base_dir / "config.json"
    if not path.is_file():
        raise ValueError("the base model has no config.json")
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise ValueError("the base model's config.json is over 1 MiB")
    try:
        config = strict_json.loads(path.read_bytes(), "the base model's config.json", floats=True)
    except ProtocolError as exc:
        raise ValueError(str(exc)) from None
    if not isinstance(config, dict):
        raise ValueError("the base model's config.json is not a JSON object")
    return config


def estimate_fit(base_dir: Path, kind: str, hparams: dict[str, Any], device: TrainingDevice) -> Verdict:
    """Whether the job's estimated peak fits ``device``; refused (with what to change) when not."""
    if device.cuda and device.free_mb <= 0:  # NVML absent: the GPU's memory cannot be read
        return Verdict(
            True,
            f"the free memory of {device.name} is unknown (install nvidia-ml-py: "
            "pip install 'magnet[gpu]'): the memory fit is not checked",
        )
    if kind not in LM_DEFAULTS:
        return Verdict(True, f"no memory estimate for {kind} tasks (admitted on the base model's size)")
    try:
        shape = ModelShape.from_config(read_config(base_dir))
        size = task_size(kind, hparams, device.cuda, shape)
    except ValueError as exc:
        return Verdict(False, f"cannot estimate the training memory: {exc}")
    assert size is not None
    need = estimate_memory(shape, size) / MIB
    usable = device.free_mb * MEMORY_HEADROOM
    if need > usable:
        return Verdict(
            False,
            f"training needs ~{need:.0f} MiB of {device.what} ({shape.params / 1e6:.0f}M parameters, "
            f"{size.micro_batch_size} x {size.seq_len} tokens a step), this miner may use "
            f"{usable:.0f} MiB: free memory, raise miner.max_ram_mb, or pin a smaller "
            "micro_batch_size / max_length (miner.pinned_hparams)",
        )
    return Verdict(True, f"fits: training needs ~{need:.0f} MiB of {device.what}, {usable:.0f} MiB usable")


_gpu_cache: tuple[float, dict[int, int]] = (0.0, {})


def gpu_free_mb(ttl_s: float = 10.0) -> dict[int, int]:
    """Free memory of each NVIDIA GPU, MiB, through NVML (empty without a driver or nvidia-ml-py)."""
    global _gpu_cache
    if time.monotonic() - _gpu_cache[0] < ttl_s:
        return _gpu_cache[1]
    from trainer.hardware import nvml_gpus  # NVML only: never torch in the node

    free = {g.index: (g.memory_free_bytes or g.memory_total_bytes) // MIB for g in nvml_gpus()}
    _gpu_cache = (time.monotonic(), free)
    return free


def training_device(gpu_setting: str, ram_mb: int, max_ram_mb: int) -> TrainingDevice:
    """The device a job trains on for ``miner.gpu`` ('auto', 'cpu', 'cuda:N'), with its usable memory."""
    ram = ram_cap(ram_mb, max_ram_mb)
    if gpu_setting == "cpu":
        return TrainingDevice("cpu", ram)
    gpus = gpu_free_mb()
    index = gpu_setting.partition(":")[2]
    if gpu_setting.startswith("cuda"):
        chosen = int(index) if index.isdigit() else 0
        return TrainingDevice(f"cuda:{chosen}", gpus.get(chosen, 0))
    if gpus:  # 'auto' trains on the first GPU when there is one (trainer.models.pick_device)
        return TrainingDevice("cuda:0", gpus[min(gpus)])
    return TrainingDevice("cpu", ram)
