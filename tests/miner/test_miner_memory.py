"""The memory fit: the base model's size at admission, then the estimated peak of the job once the base
model is fetched (a made-up 7B config, a malformed one, and the real bundled model through the
download step, refused before it trains)."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import trio
from miner_offline import BASE, DATA, add_task, offline_service

from miner import events as ev
from miner.config import MinerConfig
from miner.memory import LM_DEFAULTS, TrainingDevice, estimate_fit, training_device
from miner.policy import Machine, TaskOffer, admit
from miner.steps import GiveUp
from protocol.bundle import write_bundle
from trainer.models import bundled_base_model_dir

MIB = 1 << 20
NOW = 1_000_000.0
OFFER = TaskOffer("instruct", 0, 0, 400, NOW + 10, NOW + 310, base_model_size=300 * MIB)
LLAMA_7B = {
    "vocab_size": 32000,
    "hidden_size": 4096,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "intermediate_size": 11008,
    "torch_dtype": "float16",
}


def model_dir(tmp_path: Path, config: Any) -> Path:
    path = tmp_path / "base"
    path.mkdir()
    (path / "config.json").write_text(config if isinstance(config, str) else json.dumps(config))
    return path


def test_a_base_model_larger_than_the_device_is_refused_saying_what_would_fit() -> None:
    machine = Machine(ram_mb=8000, gpu_mb=0, cpu_cores=4, speed_gflops=0.0)
    assert admit(OFFER, machine, MinerConfig(), NOW).ok
    verdict = admit(replace(OFFER, base_model_size=7000 * MIB), machine, MinerConfig(), NOW)
    assert not verdict.ok and "of RAM" in verdict.reason and "up to 6400 MiB fit" in verdict.reason
    capped = admit(OFFER, machine, MinerConfig(max_ram_mb=300), NOW)
    assert not capped.ok and "up to 240 MiB" in capped.reason
    # On a GPU the weights are 16-bit: a 7000 MiB fp32 file needs ~3500 MiB of the 6000 MiB GPU.
    gpu = replace(machine, gpu_mb=6000)
    assert admit(replace(OFFER, base_model_size=7000 * MIB), gpu, MinerConfig(), NOW).ok
    big = admit(replace(OFFER, base_model_size=13000 * MIB), gpu, MinerConfig(), NOW)
    assert not big.ok and "GPU memory" in big.reason and "up to 9600 MiB" in big.reason
    # ... unless the miner is told to train on the CPU.
    assert not admit(replace(OFFER, base_model_size=7000 * MIB), gpu, MinerConfig(gpu="cpu"), NOW).ok


def test_the_estimate_refuses_a_7b_model_on_a_small_machine_and_says_what_to_change(tmp_path: Path) -> None:
    base = model_dir(tmp_path, LLAMA_7B)
    verdict = estimate_fit(base, "instruct", {}, TrainingDevice("cpu", 16_000))
    assert not verdict.ok
    assert "7B" not in verdict.reason and "6738M parameters" in verdict.reason
    assert "8 x 512 tokens" in verdict.reason and "pinned_hparams" in verdict.reason
    assert estimate_fit(base, "instruct", {}, TrainingDevice("cuda:0", 80_000)).ok  # bf16 on an 80 GB GPU
    # dpo scores chosen and rejected together: twice the rows of its micro-batch
    assert "8 x 512 tokens" in estimate_fit(base, "dpo", {}, TrainingDevice("cpu", 1000)).reason
    grpo = estimate_fit(base, "grpo", {}, TrainingDevice("cpu", 1000)).reason
    assert "32 x 512 tokens" in grpo
    # the pins and the task's parameters are what the job trains with
    short = estimate_fit(
        base, "instruct", {"micro_batch_size": 1, "max_length": 64}, TrainingDevice("cpu", 16_000)
    )
    assert "1 x 64 tokens" in short.reason


def test_a_config_without_a_shape_is_refused_and_other_kinds_pass_on_size(tmp_path: Path) -> None:
    bad = estimate_fit(
        model_dir(tmp_path, '{"vocab_size": NaN}'), "instruct", {}, TrainingDevice("cpu", 8000)
    )
    assert not bad.ok and "cannot estimate the training memory" in bad.reason
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text('{"model_type": "unet"}')
    assert not estimate_fit(other, "dpo", {}, TrainingDevice("cpu", 8000)).ok
    image = estimate_fit(other, "image", {}, TrainingDevice("cpu", 8000))
    assert image.ok and "no memory estimate for image" in image.reason


def test_the_mirrored_defaults_are_the_recipes_defaults() -> None:
    from trainer.recipes.base import get_recipe

    for kind, mirrored in LM_DEFAULTS.items():
        defaults = get_recipe(kind).default_hparams()
        assert {k: defaults[k] for k in mirrored} == mirrored, kind


def test_the_device_follows_the_gpu_setting(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import miner.memory as memory

    monkeypatch.setattr(memory, "gpu_free_mb", lambda ttl_s=10.0: {0: 20_000, 1: 5_000})
    assert training_device("auto", 8000, 0) == TrainingDevice("cuda:0", 20_000)
    assert training_device("cuda:1", 8000, 0) == TrainingDevice("cuda:1", 5_000)
    assert training_device("cpu", 8000, 2000) == TrainingDevice("cpu", 2000)
    monkeypatch.setattr(memory, "gpu_free_mb", lambda ttl_s=10.0: {})
    assert training_device("auto", 8000, 0) == TrainingDevice("cpu", 8000)
    unknown = training_device("cuda:0", 8000, 0)  # a GPU named, but no NVML to read its memory
    assert unknown == TrainingDevice("cuda:0", 0)
    verdict = estimate_fit(model_dir(tmp_path, LLAMA_7B), "instruct", {}, unknown)
    assert verdict.ok and "nvidia-ml-py" in verdict.reason


def test_a_job_that_does_not_fit_is_given_up_after_the_download_before_training(tmp_path: Path) -> None:
    """The real bundled base model, bundled and extracted by the download step: it fits this machine,
    and is given up (reason recorded, event sent) on a miner capped at 64 MiB of RAM."""
    bundle = tmp_path / "base.bundle"
    write_bundle(bundled_base_model_dir(), bundle, kind="model", skip_other_extensions=True)
    data = tmp_path / "train.jsonl"
    data.write_text('{"prompt": "a", "response": "b"}\n')
    outcomes = {}
    for name, cap in (("roomy", 0), ("capped", 64)):
        svc, events = offline_service(
            tmp_path / name, MinerConfig(gpu="cpu", max_ram_mb=cap), {BASE: bundle, DATA: data}
        )
        task = add_task(svc, "assigned", time.time() + 600, bundle.stat().st_size)
        try:  # what TaskSteps.advance does with the step's answer
            trio.run(svc.steps._from_assigned, task)
        except GiveUp as exc:
            svc.steps.give_up(task, str(exc))
        assert svc.db is not None
        outcomes[name] = (svc.db.task(task.id), [e for e in events if isinstance(e, ev.TaskGivenUp)])
    roomy, roomy_events = outcomes["roomy"]
    assert roomy is not None and roomy.phase == "downloaded" and not roomy_events
    capped, capped_events = outcomes["capped"]
    assert capped is not None and capped.phase == "given_up"
    assert "does not fit this machine" in capped.reason and "may use 51 MiB" in capped.reason
    assert capped_events and capped_events[0].reason == capped.reason
