"""The `dpo` recipe: LoRA DPO against the adapter-less base as reference; its own metrics improve."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest
import torch

from protocol.bundle import read_manifest
from trainer.data import PreferenceExample
from trainer.models import tiny_llama
from trainer.recipes import ArtifactRejected, EvalJob, NullReporter, RecordingReporter, TrainJob, get_recipe
from trainer.recipes.dpo import dpo_loss


def polite_pairs(n: int, seed: int) -> list[dict[str, str]]:
    """A learnable preference: a helpful answer is preferred over a rude wrong one."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        a, b = rng.randint(0, 40), rng.randint(0, 40)
        rows.append(
            {
                "prompt": f"Question: What is {a} + {b}?\nAnswer:",
                "chosen": f" Happy to help: {a} + {b} = {a + b}.",
                "rejected": f" No. Go away. {rng.randint(0, 99)}",
            }
        )
    return rows


def write_jsonl(path: Path, rows: list[dict[str, str]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("dpo")
    return {
        "root": root,
        "base": tiny_llama(root / "base", hidden=64, intermediate=128),
        "train": write_jsonl(root / "train.jsonl", polite_pairs(64, 0)),
        "test": write_jsonl(root / "test.jsonl", polite_pairs(16, 1)),
    }


def evaluate(ws: dict[str, Path], artifact: Path | None, data: Path | None = None) -> dict[str, float]:
    job = EvalJob(
        "dpo",
        str(ws["base"]),
        str(artifact) if artifact else None,
        str(data or ws["test"]),
        device="cpu",
        threads=1,
    )
    return get_recipe("dpo").evaluate(job, NullReporter())


def train(
    ws: dict[str, Path], name: str, steps: int, data: Path | None = None
) -> tuple[Path, RecordingReporter]:
    reporter = RecordingReporter()
    job = TrainJob(
        kind="dpo",
        base_model_dir=str(ws["base"]),
        train_file=str(data or ws["train"]),
        output_dir=str(ws["root"] / name),
        hparams={"lr": 3e-3, "micro_batch_size": 8, "max_length": 64, "epochs": 10.0},
        max_steps=steps,
        device="cpu",
        threads=1,
    )
    result = get_recipe("dpo").train(job, reporter)
    assert result.steps == steps
    return Path(result.artifact_dir), reporter


def test_dpo_loss_matches_the_formula() -> None:
    policy = torch.tensor([-1.0, -2.0, -3.0, -1.5])  # chosen (2), then rejected (2)
    reference = torch.tensor([-1.5, -2.0, -2.5, -2.0])
    loss, margin = dpo_loss(policy, reference, beta=0.5)
    expected_margin = 0.5 * torch.tensor([(-1.0 + 1.5) - (-3.0 + 2.5), (-2.0 + 2.0) - (-1.5 + 2.0)])
    assert torch.allclose(margin, expected_margin)
    assert loss.item() == pytest.approx(float(-torch.nn.functional.logsigmoid(expected_margin).mean()))


def test_base_model_scored_against_itself_is_log_two(workspace: dict[str, Path]) -> None:
    metrics = evaluate(workspace, None)
    assert metrics["loss"] == pytest.approx(math.log(2), abs=1e-6)
    assert metrics["preference_accuracy"] == 0.0


def test_dpo_training_lowers_loss_and_raises_preference_accuracy(workspace: dict[str, Path]) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    artifact, reporter = train(workspace, "adapter", 24)
    losses = reporter.losses()
    assert losses[0] == pytest.approx(math.log(2), abs=0.01)  # adapter starts as a no-op (B = 0)
    metrics = evaluate(workspace, artifact)
    assert metrics["loss"] < 0.5 and metrics["preference_accuracy"] >= 0.9, metrics
    # The artifact is a plain PEFT adapter in safetensors that PEFT's own loader reads.
    assert {p.suffix for p in artifact.iterdir()} <= {".safetensors", ".json", ".md"}
    base = AutoModelForCausalLM.from_pretrained(str(workspace["base"]))
    model = PeftModel.from_pretrained(base, str(artifact))
    assert any("lora_A" in n for n, _ in model.named_parameters())


def test_a_budget_cut_run_fits_its_schedule_to_the_budget(workspace: dict[str, Path]) -> None:
    """Planned at 10**6 steps (no pace measured), cut by a 5 s budget: the warm-up (10 % of the plan)
    would hold the learning rate near zero for the whole run unless the plan is fitted to the budget."""
    reporter = RecordingReporter()
    job = TrainJob(
        kind="dpo",
        base_model_dir=str(workspace["base"]),
        train_file=str(workspace["train"]),
        output_dir=str(workspace["root"] / "budget-cut"),
        hparams={"lr": 3e-3, "micro_batch_size": 8, "max_length": 64, "epochs": 1e5},
        max_steps=10**6,
        budget_s=5.0,
        device="cpu",
        threads=1,
    )
    result = get_recipe("dpo").train(job, reporter)
    assert 2 <= result.steps < 10**6
    assert evaluate(workspace, Path(result.artifact_dir))["loss"] < math.log(2) - 0.02
    assert any("schedule shortened" in str(e.get("message")) for e in reporter.events if e["event"] == "log")


def test_hh_style_dialogues_train(workspace: dict[str, Path], shared_datasets: Path, tmp_path: Path) -> None:
    import gzip

    with gzip.open(shared_datasets / "hh_rlhf_harmless_test.jsonl.gz", "rt", encoding="utf-8") as fh:
        rows = [json.loads(next(fh)) for _ in range(8)]
    data = write_jsonl(tmp_path / "hh.jsonl", rows)
    artifact, reporter = train(workspace, "hh", 2, data)
    assert all(math.isfinite(x) for x in reporter.losses())
    assert math.isfinite(evaluate(workspace, artifact, data)["loss"])


def test_bundle_passes_the_shape_check_against_its_base_only(
    workspace: dict[str, Path], tmp_path: Path
) -> None:
    artifact, _ = train(workspace, "bundle", 1)
    recipe = get_recipe("dpo")
    manifest = read_manifest(recipe.export(artifact, tmp_path / "dpo.magnet"))
    recipe.check_artifact(manifest, workspace["base"])
    with pytest.raises(ArtifactRejected):
        recipe.check_artifact(manifest, tiny_llama(tmp_path / "other", hidden=96, intermediate=128))


def test_preference_example_split_of_hh_prefix() -> None:
    from trainer.data import preference_example

    row = {
        "chosen": "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: how?\n\nAssistant: fine, thanks",
        "rejected": "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: how?\n\nAssistant: go away",
    }
    assert preference_example(row, "row") == PreferenceExample(
        "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: how?\n\nAssistant:", " fine, thanks", " go away"
    )


class StopAfter(RecordingReporter):
    def __init__(self, steps: int) -> None:
        super().__init__()
        self.steps = steps

    def should_stop(self) -> bool:
        return len(self.losses()) >= self.steps


def test_cancelled_run_checkpoints_and_the_same_job_resumes(
    workspace: dict[str, Path], tmp_path: Path
) -> None:
    job = TrainJob(
        kind="dpo",
        base_model_dir=str(workspace["base"]),
        train_file=str(workspace["train"]),
        output_dir=str(tmp_path / "out"),
        hparams={"micro_batch_size": 8, "max_length": 64},
        max_steps=4,
        device="cpu",
        threads=1,
        checkpoint_dir=str(tmp_path / "ckpt"),
        checkpoint_interval_s=3600.0,
    )
    first = get_recipe("dpo").train(job, StopAfter(2))
    assert (first.stopped_reason, first.steps) == ("cancelled", 2)
    reporter = RecordingReporter()
    second = get_recipe("dpo").train(job, reporter)
    assert (second.stopped_reason, second.steps) == ("max_steps", 4)
    assert {"event": "log", "message": "resumed from checkpoint at step 2"} in reporter.events
    assert len(reporter.losses()) == 2


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_dpo_trains_and_evaluates_on_cuda(workspace: dict[str, Path], tmp_path: Path) -> None:
    job = TrainJob(
        kind="dpo",
        base_model_dir=str(workspace["base"]),
        train_file=str(workspace["train"]),
        output_dir=str(tmp_path / "cuda"),
        hparams={"lr": 3e-3, "micro_batch_size": 8, "max_length": 64, "epochs": 10.0},
        max_steps=10,
        device="cuda",
    )
    result = get_recipe("dpo").train(job, NullReporter())
    eval_job = EvalJob(
        "dpo", str(workspace["base"]), result.artifact_dir, str(workspace["test"]), device="cuda"
    )
    assert get_recipe("dpo").evaluate(eval_job, NullReporter())["loss"] < math.log(2)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_qlora_dpo_on_cuda(workspace: dict[str, Path], tmp_path: Path) -> None:
    from trainer.lora import qlora_available

    if not qlora_available():
        pytest.skip("QLoRA needs the bitsandbytes package (the `gpu` extra)")
    job = TrainJob(
        kind="dpo",
        base_model_dir=str(workspace["base"]),
        train_file=str(workspace["train"]),
        output_dir=str(tmp_path / "qlora"),
        hparams={"lr": 3e-3, "micro_batch_size": 8, "max_length": 64, "qlora": True},
        max_steps=3,
        device="cuda",
    )
    reporter = RecordingReporter()
    get_recipe("dpo").train(job, reporter)
    assert all(math.isfinite(x) for x in reporter.losses())
