"""Hardware profile, throughput benchmark and the fit check."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from trainer.fit import ModelShape, TaskSize, estimate_memory, estimate_seconds, fit_check
from trainer.hardware import VECTOR_FLAGS, HardwareProfile, Throughput, benchmark, detect_hardware

LLAMA_7B = {
    "vocab_size": 32000, "hidden_size": 4096, "num_hidden_layers": 32, "num_attention_heads": 32,
    "num_key_value_heads": 32, "intermediate_size": 11008,
}  # fmt: skip


def test_profile_fields_are_sane() -> None:
    p = detect_hardware()
    assert p.logical_cores >= p.physical_cores >= 1
    assert p.ram_total_bytes >= p.ram_available_bytes > 0
    assert set(p.vector_extensions) <= set(VECTOR_FLAGS)
    assert p.cpu_model and p.os and p.machine
    assert HardwareProfile.from_dict(json.loads(json.dumps(p.to_dict()))) == p


def test_cheap_detection_does_not_import_torch() -> None:
    code = "import sys, trainer.hardware as h; h.detect_hardware(); assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[2])


def test_gpu_detection_agrees_with_torch() -> None:
    p = detect_hardware(gpus=True)
    assert len(p.gpus) == torch.cuda.device_count()
    assert p.best_device == ("cuda" if p.gpus else "mps" if p.mps_available else "cpu")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_fields() -> None:
    gpu = detect_hardware(gpus=True).gpus[0]
    assert gpu.name and gpu.memory_total_bytes > 2**30 and gpu.compute_capability


@pytest.mark.slow
def test_benchmark_measures_positive_throughput() -> None:
    speed = benchmark(device="cpu", seconds=0.5, threads=1)
    assert speed.device == "cpu" and speed.matmul_gflops > 0.1 and speed.train_tokens_per_s > 1
    assert 0 < speed.train_efficiency < 1


def test_parameter_count_matches_a_real_model(tiny_llama_dir: Path) -> None:
    from transformers import AutoModelForCausalLM

    config = json.loads((tiny_llama_dir / "config.json").read_text())
    model = AutoModelForCausalLM.from_pretrained(str(tiny_llama_dir))
    assert ModelShape.from_config(config).params == sum(p.numel() for p in model.parameters())


def test_lora_parameter_count_matches_peft(tiny_llama_dir: Path) -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    config = json.loads((tiny_llama_dir / "config.json").read_text())
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(str(tiny_llama_dir)),
        LoraConfig(r=8, target_modules="all-linear"),
    )
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert ModelShape.from_config(config).lora_params(8) == trainable


def test_memory_estimate_moves_the_right_way() -> None:
    shape = ModelShape.from_config(LLAMA_7B)
    base = TaskSize(train_tokens=10**6, micro_batch_size=4, seq_len=1024)
    assert shape.params == pytest.approx(6.74e9, rel=0.01)  # Llama-2 7B
    assert 27e9 < estimate_memory(shape, base) < 150e9  # fp32 weights alone are 27 GB
    bigger = TaskSize(train_tokens=10**6, micro_batch_size=8, seq_len=1024)
    ckpt = TaskSize(train_tokens=10**6, micro_batch_size=4, seq_len=1024, gradient_checkpointing=True)
    half = TaskSize(train_tokens=10**6, micro_batch_size=4, seq_len=1024, weight_bytes=2)
    assert estimate_memory(shape, bigger) > estimate_memory(shape, base) > estimate_memory(shape, ckpt)
    assert estimate_memory(shape, half) < estimate_memory(shape, base)
    # QLoRA with checkpointing (as it is used): 4-bit linear weights (~3.5 GB for 7B, against 13.5 GB
    # in bf16) outweigh its fp32 norms and embeddings. Without checkpointing activations dominate.
    bf16 = TaskSize(10**6, micro_batch_size=4, seq_len=1024, gradient_checkpointing=True, weight_bytes=2)
    qlora = dataclasses.replace(bf16, qlora=True)
    assert 3.5e9 < estimate_memory(shape, qlora) < estimate_memory(shape, bf16) - 8e9
    # On CUDA (16-bit) the fused attention kernels keep memory linear in tokens: 4 x 1024 = 8 x 512.
    long = TaskSize(train_tokens=10**6, micro_batch_size=4, seq_len=1024, weight_bytes=2)
    short = TaskSize(train_tokens=10**6, micro_batch_size=8, seq_len=512, weight_bytes=2)
    assert estimate_memory(shape, long) == estimate_memory(shape, short)
    # A LoRA on the output head: its weights and optimizer state, and one more logits-sized tensor.
    head = dataclasses.replace(half, lora_head=True)
    extra = 16 * 16 * (shape.hidden + shape.vocab) + 4 * 1024 * shape.vocab * 4
    assert estimate_memory(shape, head) - estimate_memory(shape, half) == extra
    # The whole embedding as trainable tokens: delta, gradient, two moments and two merged copies.
    tokens = dataclasses.replace(half, token_delta=True)
    assert estimate_memory(shape, tokens) - estimate_memory(shape, half) == 24 * shape.vocab * shape.hidden


def test_fit_check_refuses_what_does_not_fit() -> None:
    profile = detect_hardware()
    speed = Throughput(
        "cpu", matmul_gflops=50.0, train_tokens_per_s=1000.0, train_efficiency=0.2, bench_params=10**6
    )
    tiny = {**LLAMA_7B, "hidden_size": 64, "num_hidden_layers": 2, "intermediate_size": 256,
            "vocab_size": 512, "num_attention_heads": 4, "num_key_value_heads": 4}  # fmt: skip
    ok = fit_check(tiny, TaskSize(train_tokens=10_000), profile, speed, budget_s=600)
    assert ok.fits and ok.reasons == () and 0 < ok.estimated_seconds < 600
    huge = {**LLAMA_7B, "num_hidden_layers": 32 * 40}
    refused = fit_check(huge, TaskSize(train_tokens=10**7), profile, speed, budget_s=600)
    assert not refused.fits
    assert "GiB" in refused.reasons[0] and "smaller micro-batch" in refused.reasons[0]
    assert "budget" in refused.reasons[1]


def test_time_estimate_is_linear_in_tokens() -> None:
    shape = ModelShape.from_config(LLAMA_7B)
    speed = Throughput("cpu", 100.0, 10.0, 0.25, 10**6)
    one = estimate_seconds(shape, TaskSize(train_tokens=1000), speed)
    assert estimate_seconds(shape, TaskSize(train_tokens=3000), speed) == pytest.approx(3 * one)
    assert one == pytest.approx(4 * shape.params * 1000 / (100e9 * 0.25))


def test_bad_config_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="Llama-style field"):
        ModelShape.from_config({"hidden_size": 8})
