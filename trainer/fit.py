"""Will a task fit this machine? Memory and time estimates for LoRA training (pure arithmetic, no torch).

Memory = frozen weights + LoRA weights, gradients and AdamW moments (fp32) + activations of one
micro-batch + logits. Activations per token per layer at 16-bit are ~(34 h + 10 i) bytes (h hidden,
i MLP width; Korthikanti et al. (2022) give 34 h + 5 a s for the attention block, and PEFT's LoRA
branches plus the gated MLP add ~10 i), doubled at fp32. The fused attention kernels that transformers
uses on CUDA (SDPA) do not materialise the s x s scores, so that term is counted only for fp32 (CPU)
runs. Logits cost ~14 bytes per vocabulary entry per token (16-bit logits, the fp32 copy the loss
makes, its softmax and gradients), plus ~4 (16-bit) or 8 (fp32) with a LoRA on the output head
(its output before the sum; not yet checked against a CUDA peak). Gradient checkpointing keeps
~2 h bytes per token per layer plus one layer's full activations. QLoRA keeps the linear weights in
4-bit NF4 (~0.55 bytes per parameter with its scales) but embeddings and norms in fp32, and its fp32
norms add ~24 h bytes per token per layer. bench/memory_fit.py checks these against CUDA peaks of
real runs (125M-1.1B parameters).

Time = 4 x params x tokens (forward + activation gradients; the
frozen weights need no weight gradients) at the benchmarked efficiency, which already folds in how
far real training falls short of peak matmul speed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from trainer.hardware import HardwareProfile, Throughput

# Fraction of available memory a job may plan to use (allocator slack, the OS, the node itself).
MEMORY_HEADROOM = 0.8


@dataclass(frozen=True)
class ModelShape:
    vocab: int
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    tied_embeddings: bool = False

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ModelShape:
        try:
            heads = int(config["num_attention_heads"])
            return cls(
                vocab=int(config["vocab_size"]),
                hidden=int(config["hidden_size"]),
                layers=int(config["num_hidden_layers"]),
                heads=heads,
                kv_heads=int(config.get("num_key_value_heads") or heads),
                intermediate=int(config["intermediate_size"]),
                # transformers' Llama default is untied (a separate lm_head).
                tied_embeddings=bool(config.get("tie_word_embeddings", False)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(
                f"model config lacks a Llama-style field ({exc}); cannot estimate its size"
            ) from exc

    @property
    def linear_shapes(self) -> list[tuple[int, int]]:
        """(in, out) of each linear layer of one decoder layer: q, k, v, o, gate, up, down."""
        h, kv = self.hidden, self.hidden * self.kv_heads // self.heads
        i = self.intermediate
        return [(h, h), (h, kv), (h, kv), (h, h), (h, i), (h, i), (i, h)]

    @property
    def params(self) -> int:
        per_layer = sum(a * b for a, b in self.linear_shapes) + 2 * self.hidden
        embeddings = self.vocab * self.hidden * (1 if self.tied_embeddings else 2)
        return embeddings + self.layers * per_layer + self.hidden

    def lora_params(self, rank: int) -> int:
        return self.layers * sum(rank * (a + b) for a, b in self.linear_shapes)


@dataclass(frozen=True)
class TaskSize:
    train_tokens: int
    epochs: float = 1.0
    micro_batch_size: int = 8
    seq_len: int = 512
    lora_r: int = 16
    gradient_checkpointing: bool = False
    weight_bytes: float = 4  # 4 fp32 (CPU), 2 bf16/fp16 (GPU)
    qlora: bool = False  # 4-bit NF4 linear weights (CUDA); weight_bytes then applies to nothing
    # LoRA on the output head too (lora_targets "all-linear+head"): its A/B weights, and one more
    # logits-sized tensor per micro-batch (the adapter's output before it is added to the head's).
    lora_head: bool = False
    # The whole token embedding trained as PEFT trainable tokens (lora_targets "all-linear+embeddings"):
    # a vocab x hidden delta with its gradient and two AdamW moments, and the merged embedding matrix
    # that each forward builds from it (for the input and, tied, for the head).
    token_delta: bool = False


@dataclass(frozen=True)
class FitReport:
    fits: bool
    memory_bytes: int
    memory_available_bytes: int
    estimated_seconds: float
    budget_s: float | None
    reasons: tuple[str, ...]


def estimate_memory(shape: ModelShape, task: TaskSize) -> int:
    embeddings = shape.vocab * shape.hidden * (1 if shape.tied_embeddings else 2)
    if task.qlora:
        weights = (shape.params - embeddings) * 0.55 + embeddings * 4
    else:
        weights = shape.params * task.weight_bytes
    lora_params = shape.lora_params(task.lora_r)
    if task.lora_head:
        lora_params += task.lora_r * (shape.hidden + shape.vocab)
    lora = lora_params * 4 * 4  # weights, grads, two AdamW moments, fp32
    if task.token_delta:  # the same four fp32 tensors for the rows, and two merged fp32 copies
        lora += shape.vocab * shape.hidden * (4 * 4 + 2 * 4)
    tokens = task.micro_batch_size * task.seq_len
    fp32 = task.weight_bytes >= 4 and not task.qlora
    act_scale = 2 if fp32 else 1
    per_token = 34 * shape.hidden + 10 * shape.intermediate + (24 * shape.hidden if task.qlora else 0)
    if fp32:
        per_token += 5 * shape.heads * task.seq_len
    full_layer = tokens * per_token * act_scale
    if task.gradient_checkpointing:
        activations = shape.layers * tokens * 2 * shape.hidden * act_scale + full_layer
    else:
        activations = shape.layers * full_layer
    logits = tokens * shape.vocab * (14 + (4 * act_scale if task.lora_head else 0))
    return int(weights + lora + activations + logits)


def estimate_seconds(shape: ModelShape, task: TaskSize, speed: Throughput) -> float:
    useful_flops = speed.matmul_gflops * 1e9 * max(speed.train_efficiency, 1e-3)
    return 4 * shape.params * task.train_tokens * task.epochs / useful_flops


def fit_check(
    config: dict[str, Any],
    task: TaskSize,
    profile: HardwareProfile,
    speed: Throughput,
    budget_s: float | None = None,
) -> FitReport:
    """Memory and time of `task` on the measured device; `fits` is False with the reasons when not."""
    shape = ModelShape.from_config(config)
    memory = estimate_memory(shape, task)
    if speed.device == "cuda" and profile.gpus:
        gpu = profile.gpus[0]
        available = gpu.memory_free_bytes if gpu.memory_free_bytes is not None else gpu.memory_total_bytes
    else:
        available = profile.ram_available_bytes
    seconds = estimate_seconds(shape, task, speed)
    reasons = []
    if memory > available * MEMORY_HEADROOM:
        reasons.append(
            f"needs ~{memory / 2**30:.1f} GiB but {available / 2**30:.1f} GiB is available on "
            f"{speed.device}; "
            "try a smaller micro-batch, gradient checkpointing or a shorter sequence"
        )
    if budget_s is not None and seconds > budget_s:
        reasons.append(f"would take ~{seconds:.0f} s here, over the {budget_s:.0f} s budget")
    return FitReport(not reasons, memory, int(available), seconds, budget_s, tuple(reasons))
