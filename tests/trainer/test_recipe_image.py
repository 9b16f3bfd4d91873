"""The `image` recipe: diffusion LoRA on a tiny pipeline; denoising error falls; diffusers loads it."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from protocol.bundle import read_manifest
from trainer.diffusion_models import tiny_diffusion_pipeline, untyped_diffusers
from trainer.recipes import ArtifactRejected, EvalJob, NullReporter, RecordingReporter, TrainJob, get_recipe
from trainer.recipes.image import EVAL_LEVELS, EVAL_SEEDS, LORA_WEIGHTS

COLOURS = {"red": (220, 30, 30), "blue": (30, 30, 220), "green": (30, 200, 30), "yellow": (230, 220, 30)}


def write_shapes(folder: Path) -> Path:
    """Eight 32x32 images of coloured squares and circles with their captions."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for colour, rgb in COLOURS.items():
        for shape in ("square", "circle"):
            image = Image.new("RGB", (32, 32), (255, 255, 255))
            draw = ImageDraw.Draw(image)
            (draw.rectangle if shape == "square" else draw.ellipse)([6, 6, 26, 26], fill=rgb)
            image.save(folder / f"{colour}_{shape}.png")
            rows.append({"image": f"{colour}_{shape}.png", "caption": f"a {colour} {shape}"})
    data = folder / "captions.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return data


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    root = tmp_path_factory.mktemp("image")
    base = tiny_diffusion_pipeline(root / "base")
    data = write_shapes(root / "data")
    recipe = get_recipe("image")
    before = recipe.evaluate(EvalJob("image", str(base), None, str(data), threads=1), NullReporter())
    reporter = RecordingReporter()
    job = TrainJob(
        kind="image",
        base_model_dir=str(base),
        train_file=str(data),
        output_dir=str(root / "lora"),
        hparams={"resolution": 32, "lr": 2e-3, "batch_size": 8},
        max_steps=15,
        device="cpu",
        threads=1,
    )
    result = recipe.train(job, reporter)
    after = recipe.evaluate(
        EvalJob("image", str(base), result.artifact_dir, str(data), threads=1), NullReporter()
    )
    return {
        "base": base,
        "artifact": Path(result.artifact_dir),
        "before": before,
        "after": after,
        "reporter": reporter,
    }


@pytest.mark.slow
def test_denoising_error_falls_guided_and_unguided(trained: dict[str, object]) -> None:
    before, after = trained["before"], trained["after"]
    assert isinstance(before, dict) and isinstance(after, dict)
    assert after["loss"] < before["loss"] - 0.02, (before["loss"], after["loss"])
    assert after["loss_guided"] < before["loss_guided"]
    assert after["loss_unguided"] < before["loss_unguided"]
    assert len([k for k in after if k.startswith("guided_t")]) == len(EVAL_LEVELS) * len(EVAL_SEEDS)


@pytest.mark.slow
def test_artifact_loads_in_a_diffusers_pipeline(trained: dict[str, object]) -> None:
    artifact = trained["artifact"]
    assert isinstance(artifact, Path)
    assert [p.name for p in artifact.iterdir()] == [LORA_WEIGHTS]
    pipe = untyped_diffusers().StableDiffusionPipeline.from_pretrained(
        str(trained["base"]), safety_checker=None
    )

    def render() -> np.ndarray:
        generator = torch.Generator().manual_seed(0)
        image: np.ndarray = pipe(
            "a red square", num_inference_steps=2, output_type="np", generator=generator
        ).images[0]
        return image

    plain = render()
    pipe.load_lora_weights(str(artifact))
    adapted = render()
    assert plain.shape == adapted.shape == (32, 32, 3)
    assert np.abs(plain - adapted).max() > 1e-3  # the adapter changes what the pipeline draws


@pytest.mark.slow
def test_bundle_shape_check(trained: dict[str, object], tmp_path: Path) -> None:
    recipe = get_recipe("image")
    artifact, base = trained["artifact"], trained["base"]
    assert isinstance(artifact, Path) and isinstance(base, Path)
    manifest = read_manifest(recipe.export(artifact, tmp_path / "image.magnet"))
    recipe.check_artifact(manifest, base)
    other = tiny_diffusion_pipeline(tmp_path / "other", image_size=32)
    config = json.loads((other / "unet" / "config.json").read_text())
    config["cross_attention_dim"] = 48  # a base whose attention widths differ
    (other / "unet" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ArtifactRejected, match="shape"):
        recipe.check_artifact(manifest, other)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_image_lora_trains_and_evaluates_on_cuda(trained: dict[str, object], tmp_path: Path) -> None:
    base = trained["base"]
    assert isinstance(base, Path)
    data = write_shapes(tmp_path / "data")
    job = TrainJob(
        kind="image",
        base_model_dir=str(base),
        train_file=str(data),
        output_dir=str(tmp_path / "cuda"),
        hparams={"resolution": 32, "lr": 2e-3, "batch_size": 8},
        max_steps=5,
        device="cuda",
    )
    result = get_recipe("image").train(job, NullReporter())
    metrics = get_recipe("image").evaluate(
        EvalJob("image", str(base), result.artifact_dir, str(data), device="cuda"), NullReporter()
    )
    assert math.isfinite(metrics["loss"])


class StopAfter(RecordingReporter):
    def __init__(self, steps: int) -> None:
        super().__init__()
        self.steps = steps

    def should_stop(self) -> bool:
        return len(self.losses()) >= self.steps


@pytest.mark.slow
def test_a_cancelled_run_resumes_exactly(trained: dict[str, object], tmp_path: Path) -> None:
    base = trained["base"]
    assert isinstance(base, Path)
    data = write_shapes(tmp_path / "data")

    def job(name: str, checkpoint: bool) -> TrainJob:
        return TrainJob(
            kind="image",
            base_model_dir=str(base),
            train_file=str(data),
            output_dir=str(tmp_path / name),
            hparams={"resolution": 32, "lr": 2e-3, "batch_size": 2},
            max_steps=4,
            device="cpu",
            threads=1,
            checkpoint_dir=str(tmp_path / "ckpt") if checkpoint else None,
        )

    straight = RecordingReporter()
    get_recipe("image").train(job("straight", False), straight)
    first = get_recipe("image").train(job("resumed", True), StopAfter(2))
    assert (first.stopped_reason, first.steps) == ("cancelled", 2)
    resumed = RecordingReporter()
    assert get_recipe("image").train(job("resumed", True), resumed).steps == 4
    assert resumed.losses() == pytest.approx(straight.losses()[2:], rel=1e-5)
