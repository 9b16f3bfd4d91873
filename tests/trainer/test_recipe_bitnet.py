"""The `bitnet` recipe: trains from scratch and from a full-precision model (quantisation ramped in);
its loss with quantisation on falls; its artifact is safetensors only and passes its own shape check."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

from protocol.bundle import read_manifest
from trainer.models import tiny_llama
from trainer.recipes import ArtifactRejected, EvalJob, NullReporter, RecordingReporter, TrainJob, get_recipe


def write_arithmetic(path: Path, n: int, seed: int) -> Path:
    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        a, b = rng.randint(0, 30), rng.randint(0, 30)
        lines.append(json.dumps({"question": f"What is {a} + {b}?", "answer": f"{a} + {b} = {a + b}"}))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bitnet-recipe")
    return {
        "root": root,
        "base": tiny_llama(root / "base", hidden=64, intermediate=128),
        "train": write_arithmetic(root / "train.jsonl", 160, 0),
        "test": write_arithmetic(root / "test.jsonl", 24, 1),
    }


def train(
    ws: dict[str, Path], name: str, hparams: dict[str, object], steps: int
) -> tuple[Path, RecordingReporter]:
    reporter = RecordingReporter()
    job = TrainJob(
        kind="bitnet",
        base_model_dir=str(ws["base"]),
        train_file=str(ws["train"]),
        output_dir=str(ws["root"] / name),
        hparams={"seq_len": 64, "batch_size": 8, **hparams},
        max_steps=steps,
        device="cpu",
        threads=1,
        seed=0,
    )
    result = get_recipe("bitnet").train(job, reporter)
    assert result.steps == steps and result.stopped_reason == "max_steps"
    return Path(result.artifact_dir), reporter


def quantised_loss(ws: dict[str, Path], artifact: Path | None) -> float:
    job = EvalJob(
        "bitnet", str(ws["base"]), str(artifact) if artifact else None, str(ws["test"]), device="cpu"
    )
    return get_recipe("bitnet").evaluate(job, NullReporter())["loss"]


@pytest.mark.slow
def test_from_scratch_quantised_loss_falls(workspace: dict[str, Path]) -> None:
    before = quantised_loss(workspace, None)
    artifact, reporter = train(workspace, "scratch", {"init": "scratch", "lr": 3e-3}, 40)
    lambdas = [e["quant_lambda"] for e in reporter.events if e["event"] == "progress"]
    assert set(lambdas) == {1.0}  # from scratch: ternary from the first step
    after = quantised_loss(workspace, artifact)
    assert after < before - 1.0, (before, after)
    assert {p.suffix for p in artifact.iterdir()} <= {".safetensors", ".json"}


@pytest.mark.slow
def test_from_pretrained_ramps_quantisation_in(workspace: dict[str, Path]) -> None:
    before = quantised_loss(workspace, None)
    artifact, reporter = train(workspace, "ramped", {"init": "pretrained", "ramp_fraction": 0.5}, 30)
    lambdas = [e["quant_lambda"] for e in reporter.events if e["event"] == "progress"]
    assert lambdas[0] == 0.0 and lambdas == sorted(lambdas)
    assert 0.0 < lambdas[10] < 1.0 and lambdas[-1] == 1.0
    assert quantised_loss(workspace, artifact) < before


def test_own_bundle_passes_the_shape_check_and_a_foreign_one_fails(
    workspace: dict[str, Path], tmp_path: Path
) -> None:
    recipe = get_recipe("bitnet")
    artifact, _ = train(workspace, "bundle", {"init": "scratch"}, 2)
    bundle = recipe.export(artifact, tmp_path / "artifact.magnet")
    manifest = read_manifest(bundle)
    recipe.check_artifact(manifest, workspace["base"])
    other_base = tiny_llama(tmp_path / "wider", hidden=128, intermediate=256)
    with pytest.raises(ArtifactRejected, match="shapes"):
        recipe.check_artifact(manifest, other_base)


def test_evaluate_refuses_an_artifact_config_with_other_widths(
    workspace: dict[str, Path], tmp_path: Path
) -> None:
    artifact, _ = train(workspace, "tampered", {"init": "scratch"}, 1)
    config = json.loads((artifact / "config.json").read_text())
    config["intermediate_size"] = 4096
    (artifact / "config.json").write_text(json.dumps(config))
    with pytest.raises(ArtifactRejected, match="widths"):
        quantised_loss(workspace, artifact)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_bitnet_trains_and_evaluates_on_cuda(workspace: dict[str, Path], tmp_path: Path) -> None:
    job = TrainJob(
        kind="bitnet",
        base_model_dir=str(workspace["base"]),
        train_file=str(workspace["train"]),
        output_dir=str(tmp_path / "cuda"),
        hparams={"seq_len": 64, "init": "scratch", "lr": 3e-3},
        max_steps=20,
        device="cuda",
    )
    artifact = get_recipe("bitnet").train(job, NullReporter()).artifact_dir
    eval_job = EvalJob("bitnet", str(workspace["base"]), artifact, str(workspace["test"]), device="cuda")
    assert get_recipe("bitnet").evaluate(eval_job, NullReporter())["loss"] < quantised_loss(workspace, None)


class StopAfter(RecordingReporter):
    def __init__(self, steps: int) -> None:
        super().__init__()
        self.steps = steps

    def should_stop(self) -> bool:
        return len(self.losses()) >= self.steps


def test_a_cancelled_run_resumes_exactly_where_it_stopped(workspace: dict[str, Path], tmp_path: Path) -> None:
    def job(name: str, checkpoint: bool) -> TrainJob:
        return TrainJob(
            kind="bitnet",
            base_model_dir=str(workspace["base"]),
            train_file=str(workspace["train"]),
            output_dir=str(tmp_path / name),
            hparams={"seq_len": 32, "batch_size": 4, "init": "scratch"},
            max_steps=6,
            device="cpu",
            threads=1,
            checkpoint_dir=str(tmp_path / "ckpt") if checkpoint else None,
        )

    straight = RecordingReporter()
    get_recipe("bitnet").train(job("straight", False), straight)
    first = get_recipe("bitnet").train(job("resumed", True), StopAfter(3))
    assert (first.stopped_reason, first.steps) == ("cancelled", 3)
    resumed = RecordingReporter()
    second = get_recipe("bitnet").train(job("resumed", True), resumed)
    assert (second.stopped_reason, second.steps) == ("max_steps", 6)
    assert resumed.losses() == pytest.approx(straight.losses()[3:], rel=1e-5)


def test_llama_cpp_widths_from_a_narrower_base_train_from_scratch(workspace: dict[str, Path]) -> None:
    artifact, reporter = train(workspace, "widened", {"init": "pretrained", "architecture": "llama_cpp"}, 2)
    logs = [e["message"] for e in reporter.events if e["event"] == "log"]
    assert any("training from scratch" in m for m in logs)
    assert {e["quant_lambda"] for e in reporter.events if e["event"] == "progress"} == {1.0}
    assert json.loads((artifact / "config.json").read_text())["hidden_size"] == 256


def test_training_stops_within_the_time_budget(workspace: dict[str, Path], tmp_path: Path) -> None:
    job = TrainJob(
        kind="bitnet",
        base_model_dir=str(workspace["base"]),
        train_file=str(workspace["train"]),
        output_dir=str(tmp_path / "budget"),
        hparams={"seq_len": 64, "max_steps": 100_000},
        budget_s=3.0,
        device="cpu",
        threads=1,
    )
    result = get_recipe("bitnet").train(job, NullReporter())
    assert result.stopped_reason == "budget" and result.steps > 0
    assert result.seconds < job.budget_s + 2.0  # the whole call, preparing and saving included
