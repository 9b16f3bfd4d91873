"""The worker process: JSON-line events, kill -9 and resume, cancel, memory cap, clear failures."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from trainer.client import WorkerClient
from trainer.recipes import EvalJob, RecordingReporter, TrainJob, get_recipe

pytestmark = pytest.mark.slow

MEMORY_CAP = 2 << 30  # a tiny job peaks near 1.2 GB of address space with torch loaded
HP = {"max_length": 64, "micro_batch_size": 4, "lr": 3e-3, "epochs": 1000.0, "lora_r": 4}


def job(model: Path, data: Path, out: Path, **kw: Any) -> TrainJob:
    return TrainJob(
        kind="instruct",
        base_model_dir=str(model),
        train_file=str(data),
        output_dir=str(out),
        hparams=kw.pop("hparams", HP),
        threads=1,
        seed=3,
        **{"device": "cpu", **kw},  # the host-memory cap and exact resume are CPU properties
    )


def progress_losses(events: list[dict[str, Any]]) -> dict[int, float]:
    return {e["step"]: e["loss"] for e in events if e["event"] == "progress"}


def test_killed_worker_resumes_from_its_checkpoint_and_matches_an_uninterrupted_run(
    tiny_llama_dir: Path, sft_file: Path, tmp_path: Path
) -> None:
    client = WorkerClient(tmp_path / "work", max_memory_bytes=MEMORY_CAP)
    spec = job(
        tiny_llama_dir,
        sft_file,
        tmp_path / "out",
        max_steps=80,
        checkpoint_dir=str(tmp_path / "ckpt"),
        checkpoint_interval_s=0.2,
    )
    first = client.start(spec)
    seen: list[dict[str, Any]] = []
    for event in first.events():
        seen.append(event)
        if event["event"] == "checkpoint" and event["step"] >= 5:
            assert first.kill() == -9
            break
    first.close()
    killed_at = max(e["step"] for e in seen if e["event"] == "checkpoint")
    assert killed_at < 80

    second = client.start(spec)
    events = list(second.events())
    assert second.wait(5) == 0, second.stderr_tail()
    resumed = [e["message"] for e in events if e["event"] == "log" and "resumed" in e["message"]]
    resumed_at = int(resumed[0].rsplit(" ", 1)[1])
    assert resumed_at >= killed_at
    result = events[-1]
    assert result["event"] == "result" and result["steps"] == 80 and result["stopped_reason"] == "max_steps"
    assert Path(result["bundle_path"]).is_file()
    after = progress_losses(events)
    assert min(after) == resumed_at + 1

    # Same seed, uninterrupted, in this process: the resumed run continues the same loss sequence.
    reference = RecordingReporter()
    get_recipe("instruct").train(job(tiny_llama_dir, sft_file, tmp_path / "ref", max_steps=80), reference)
    ref = {e["step"]: e["loss"] for e in reference.events if e["event"] == "progress"}
    for step, loss in after.items():
        assert loss == pytest.approx(ref[step], rel=1e-4, abs=1e-5), step
    before = progress_losses(seen)
    for step, loss in before.items():
        assert loss == pytest.approx(ref[step], rel=1e-4, abs=1e-5), step


def test_cancel_stops_gracefully_with_a_checkpoint(
    tiny_llama_dir: Path, sft_file: Path, tmp_path: Path
) -> None:
    client = WorkerClient(tmp_path / "work")
    handle = client.start(
        job(tiny_llama_dir, sft_file, tmp_path / "out", checkpoint_dir=str(tmp_path / "ckpt"))
    )
    events = []
    for event in handle.events():
        events.append(event)
        if event["event"] == "progress" and event["step"] >= 3:
            assert handle.cancel(grace_s=30) == 0
    result = events[-1]
    assert result["event"] == "result" and result["stopped_reason"] == "cancelled"
    assert result["bundle_path"] is None
    assert (tmp_path / "ckpt" / "latest.json").is_file()


def test_cancel_escalates_to_sigkill(tiny_llama_dir: Path, sft_file: Path, tmp_path: Path) -> None:
    handle = WorkerClient(tmp_path / "work").start(job(tiny_llama_dir, sft_file, tmp_path / "out"))
    for event in handle.events():
        if event["event"] == "phase":
            # Right after start, before any step polls should_stop: a zero grace forces SIGKILL.
            assert handle.cancel(grace_s=0.0) == -9
    assert handle.error is not None and handle.error["kind"] == "cancelled"


def test_allocation_over_the_memory_cap_fails_the_job_not_the_parent(
    tiny_llama_dir: Path, tmp_path: Path
) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    # Same tokenizer, a 32k-row (tied) output layer: logits of a [16, 512] batch need 1 GB each.
    big_vocab = tmp_path / "big-vocab"
    shutil.copytree(tiny_llama_dir, big_vocab)
    config = LlamaConfig.from_pretrained(str(tiny_llama_dir))
    config.vocab_size = 32000
    LlamaForCausalLM(config).save_pretrained(str(big_vocab))
    rows = [{"question": f"Q{i}", "answer": "word " * 600} for i in range(16)]
    data = tmp_path / "long.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    hp = {"max_length": 512, "micro_batch_size": 16, "packing": False}
    handle = WorkerClient(tmp_path / "work", max_memory_bytes=MEMORY_CAP).start(
        job(big_vocab, data, tmp_path / "out", hparams=hp, max_steps=2)
    )
    events = list(handle.events())
    assert handle.wait(5) == 3
    error = events[-1]
    assert error["event"] == "error" and error["kind"] == "oom"
    assert error["message"].startswith("out of memory") and "smaller micro-batch" in error["message"]


def test_invalid_job_and_rejected_artifact_are_clear_errors(
    tiny_llama_dir: Path, sft_file: Path, tmp_path: Path
) -> None:
    client = WorkerClient(tmp_path / "work")
    bad = client.start({"type": "train", "kind": "instruct", "learning_rate": 1})
    assert list(bad.events())[-1]["kind"] == "invalid" and bad.wait(5) == 2
    assert "unknown train job field(s) ['learning_rate']" in bad.error["message"]  # type: ignore[index]

    fake = tmp_path / "fake-adapter"
    fake.mkdir()
    (fake / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 4096}))
    (fake / "adapter_model.safetensors").write_bytes(b"\x02\x00\x00\x00\x00\x00\x00\x00{}")
    spec = EvalJob(
        kind="instruct",
        base_model_dir=str(tiny_llama_dir),
        artifact_dir=str(fake),
        eval_file=str(sft_file),
        threads=1,
    )
    handle = client.start(spec)
    events = list(handle.events())
    assert handle.wait(5) == 4
    assert events[-1]["kind"] == "rejected" and "exceeds the cap" in events[-1]["message"]


def test_eval_job_reports_metrics(tiny_llama_dir: Path, sft_file: Path, tmp_path: Path) -> None:
    spec = EvalJob(
        kind="instruct",
        base_model_dir=str(tiny_llama_dir),
        artifact_dir=None,
        eval_file=str(sft_file),
        threads=1,
        max_examples=5,
    )
    handle = WorkerClient(tmp_path / "work", max_memory_bytes=MEMORY_CAP).start(spec)
    events = list(handle.events())
    assert handle.wait(5) == 0
    logs = [e["message"] for e in events if e["event"] == "log"]
    cap = f"address space {MEMORY_CAP}" if torch.version.cuda is None else f"resident set {MEMORY_CAP}"
    assert any(m.startswith(f"caps: torch threads 1, memory cap: {cap}") for m in logs), logs
    result = events[-1]
    assert result["event"] == "result" and result["type"] == "eval"
    assert result["metrics"]["examples"] == 5 and 3.0 < result["metrics"]["loss"] < 10.0


def test_client_takes_the_node_trainer_settings(tmp_path: Path) -> None:
    from trainer.config import TrainerConfig

    client = WorkerClient.from_config(
        TrainerConfig(threads=3, max_memory_bytes=0, worker_nice=5, cancel_grace=2.5), tmp_path
    )
    assert (client.threads, client.max_memory_bytes, client.nice, client.kill_grace_s) == (3, None, 5, 2.5)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_job_under_a_host_memory_cap_trains_and_the_cap_still_holds(
    tiny_llama_dir: Path, sft_file: Path, tmp_path: Path
) -> None:
    """RLIMIT_AS would stop CUDA from starting: a CUDA job gets the resident-set watchdog instead."""
    handle = WorkerClient(tmp_path / "work", max_memory_bytes=8 << 30).start(
        job(tiny_llama_dir, sft_file, tmp_path / "out", max_steps=3, device="cuda")
    )
    events = list(handle.events())
    assert handle.wait(5) == 0, events[-3:]
    assert any(e["event"] == "result" for e in events)
    # A cap below what torch + CUDA already hold ends the job as "oom", not as a crash.
    handle = WorkerClient(tmp_path / "work2", max_memory_bytes=64 << 20).start(
        job(tiny_llama_dir, sft_file, tmp_path / "out2", max_steps=3, device="cuda")
    )
    events = list(handle.events())
    assert handle.wait(5) == 3
    assert events[-1]["event"] == "error" and events[-1]["kind"] == "oom"
