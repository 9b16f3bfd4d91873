"""`image` tasks at the validator: the bundled pipeline and shapes set, self-contained splits (images
inline), untrusted images refused with what to do, and a real sandboxed evaluation of a trained LoRA."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from protocol.bundle import write_bundle
from trainer.data import DataError, load_examples
from trainer.recipes import NullReporter, TrainJob, get_recipe
from validator.config import ValidatorConfig
from validator.sandbox import evaluation_job, run_sandboxed
from validator.tasks import (
    TaskInputError,
    bundled_dataset,
    bundled_image_model_dir,
    load_rows,
    prepare_task,
    resolve_model,
)

TASK_ID = bytes(range(32))


def png(colour: tuple[int, int, int], size: tuple[int, int] = (32, 32)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="PNG")
    return buf.getvalue()


def write_folder_set(folder: Path, rows: int = 40) -> Path:
    """A data file naming PNG files beside it (the contract's path form)."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(rows):
        (folder / f"{i}.png").write_bytes(png((i * 6 % 256, 40, 200)))
        lines.append(json.dumps({"image": f"{i}.png", "caption": f"picture {i}"}) + "\n")
    data = folder / "captions.jsonl"
    data.write_text("".join(lines), encoding="utf-8")
    return data


def test_bundled_image_model_and_data_make_a_task(tmp_path: Path) -> None:
    base = resolve_model("bundled", "image")
    assert base == bundled_image_model_dir()
    rows = load_rows(bundled_dataset("image"), "image")
    assert len(rows) == 320 and all(r["image"].startswith("data:image/png;base64,") for r in rows)
    prepared = prepare_task(
        TASK_ID, bundled_dataset("image"), "image", "bundled", tmp_path, "synthetic", ValidatorConfig()
    )
    assert prepared.model_params > 900_000  # unet 0.8 M + vae + text encoder, from subfolder headers
    assert prepared.base_bundle.stat().st_size > prepared.model_params  # fp32 weights were packed
    split_rows = [load_examples(p, "image") for p in (prepared.train_file, prepared.test_file)]
    train, test = ({ex.image_bytes for ex in s} for s in split_rows)
    assert len(split_rows[0]) == prepared.train_rows and not train & test


def test_image_files_are_inlined_so_the_train_split_travels_alone(tmp_path: Path) -> None:
    data = write_folder_set(tmp_path / "src")
    prepared = prepare_task(
        TASK_ID, data, "image", str(bundled_image_model_dir()), tmp_path / "tasks", "organic",
        ValidatorConfig(),
    )
    moved = tmp_path / "elsewhere" / "train.jsonl"  # as a miner stores the blob: no images beside it
    moved.parent.mkdir()
    moved.write_bytes(prepared.train_file.read_bytes())
    examples = load_examples(moved, "image")
    assert examples and all(ex.image_path is None for ex in examples)
    assert examples[0].open_image().size == (32, 32)


@pytest.mark.parametrize(
    ("image", "says"),
    [
        ("data:image/gif;base64,R0lGODlhAQABAAAAACw=", "must start with one of"),
        ("data:image/png;base64,@@not base64@@", "not valid base64"),
        ("data:image/png;base64," + base64.b64encode(b"\x80\x04pickle").decode(), "not a readable PNG"),
        ("../outside.png", "leaves the data directory"),
    ],
)
def test_untrusted_images_are_refused_with_what_to_do(tmp_path: Path, image: str, says: str) -> None:
    data = tmp_path / "bad" / "captions.jsonl"
    data.parent.mkdir()
    (tmp_path / "outside.png").write_bytes(png((1, 2, 3)))
    data.write_text(json.dumps({"image": image, "caption": "x"}) + "\n", encoding="utf-8")
    with pytest.raises(TaskInputError, match=says):
        load_rows(data, "image")


def test_a_gif_file_and_a_pixel_bomb_are_refused(tmp_path: Path) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, format="GIF")
    (tmp_path / "a.gif").write_bytes(buf.getvalue())
    (tmp_path / "huge.png").write_bytes(png((0, 0, 0), (3000, 3000)))  # small file, 9 M pixels
    for name, says in (("a.gif", "not a readable PNG or JPEG"), ("huge.png", "pixel cap")):
        data = tmp_path / f"{name}.jsonl"
        data.write_text(json.dumps({"image": name, "caption": "x"}) + "\n", encoding="utf-8")
        with pytest.raises(TaskInputError, match=says):
            load_rows(data, "image")
        example = load_examples(data, "image")[0]  # the path form is checked when the image is used
        with pytest.raises(DataError, match=says):
            example.open_image()


@pytest.mark.slow
def test_the_sandbox_scores_a_trained_image_lora_below_the_base(tmp_path: Path) -> None:
    cfg = ValidatorConfig(eval_max_examples=24)
    prepared = prepare_task(
        TASK_ID, bundled_dataset("image"), "image", "bundled", tmp_path / "tasks", "organic", cfg
    )
    base = bundled_image_model_dir()
    job = TrainJob(
        kind="image",
        base_model_dir=str(base),
        train_file=str(prepared.train_file),
        output_dir=str(tmp_path / "lora"),
        hparams={"lr": 2e-3, "batch_size": 8},
        max_steps=20,
        device="cpu",
        threads=1,
    )
    result = get_recipe("image").train(job, NullReporter())
    bundle = get_recipe("image").export(Path(result.artifact_dir), tmp_path / "lora.bundle")
    splits = {"test": prepared.test_file, "synthetic": prepared.synthetic_file}
    limit = 64 * 1024 * 1024
    before = run_sandboxed(evaluation_job("image", base, None, splits, limit, cfg), tmp_path / "e0", cfg)
    after = run_sandboxed(evaluation_job("image", base, bundle, splits, limit, cfg), tmp_path / "e1", cfg)
    assert not before.error and not after.error, (before, after)
    assert after.losses["test"] < before.losses["test"] - 0.01, (before.losses, after.losses)
    # A bundle of the wrong shape is refused before any weight is loaded.
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    name = "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora.down.weight"
    save_file({name: torch.zeros(4, 7)}, str(wrong / "pytorch_lora_weights.safetensors"))  # in is 32
    write_bundle(wrong, tmp_path / "wrong.bundle", kind="image")
    bad = run_sandboxed(
        evaluation_job("image", base, tmp_path / "wrong.bundle", splits, limit, cfg), tmp_path / "e2", cfg
    )
    assert "has shape [4, 7]" in bad.malformed, bad
