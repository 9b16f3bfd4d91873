"""Write the bundled `image` base model and the bundled shapes image-caption set (deterministic).

    .venv/bin/python scripts/make_image_model.py
    # writes assets/image-model/ and assets/datasets/shapes_captions.jsonl.gz

The model is `trainer.diffusion_models.tiny_diffusion_pipeline` (seed 0, 32x32 images): a small
UNet2DConditionModel, AutoencoderKL, a 2-layer CLIP text encoder with a character-level tokenizer and
a DDPM scheduler, built from configs and saved in diffusers' layout (safetensors only). It is not
pretrained: the devnet only needs a LoRA's effect on the denoising error to be measurable in seconds.

The data set is procedural: each row draws a colour, a shape and a quadrant with `random.Random(11)`,
paints that shape (with a jittered size and offset) on a light background, and captions it with all
three ("a red circle in the top left"), so the captions carry what a LoRA can learn. Every image is a
32x32 PNG stored inline as a `data:image/png;base64,` URL (the trainer's data contract), so the one
file is the whole data set. Both outputs are byte-for-byte reproducible.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import random
import shutil
import sys
from pathlib import Path

from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from trainer.data import image_data_url  # noqa: E402
from trainer.diffusion_models import tiny_diffusion_pipeline  # noqa: E402

COLOURS = {
    "red": (215, 35, 35),
    "green": (40, 170, 60),
    "blue": (40, 70, 215),
    "yellow": (235, 210, 40),
    "purple": (140, 50, 170),
    "black": (20, 20, 20),
}
SHAPES = ("square", "circle", "triangle")
QUADRANTS = {"top left": (0, 0), "top right": (16, 0), "bottom left": (0, 16), "bottom right": (16, 16)}
SIZE = 32
ROWS = 320


def draw_row(rng: random.Random) -> tuple[bytes, str]:
    colour, shape, place = rng.choice(sorted(COLOURS)), rng.choice(SHAPES), rng.choice(sorted(QUADRANTS))
    grey = rng.randint(225, 250)
    image = Image.new("RGB", (SIZE, SIZE), (grey, grey, grey))
    draw = ImageDraw.Draw(image)
    x0, y0 = QUADRANTS[place]
    side = rng.randint(9, 14)
    x, y = x0 + rng.randint(1, 15 - side + 1), y0 + rng.randint(1, 15 - side + 1)
    box = [x, y, x + side, y + side]
    if shape == "square":
        draw.rectangle(box, fill=COLOURS[colour])
    elif shape == "circle":
        draw.ellipse(box, fill=COLOURS[colour])
    else:
        draw.polygon([(x + side / 2, y), (x, y + side), (x + side, y + side)], fill=COLOURS[colour])
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=True)
    return buf.getvalue(), f"a {colour} {shape} in the {place}"


def write_dataset(out: Path, rows: int = ROWS, seed: int = 11) -> Path:
    rng = random.Random(seed)
    lines = []
    for _ in range(rows):
        png, caption = draw_row(rng)
        lines.append(json.dumps({"caption": caption, "image": image_data_url(png)}, sort_keys=True) + "\n")
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as gz:
        gz.write("".join(lines).encode("utf-8"))
    return out


def write_model(out: Path) -> Path:
    staging = out.with_name(out.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    tiny_diffusion_pipeline(staging, seed=0, image_size=SIZE)
    shutil.rmtree(out, ignore_errors=True)
    staging.rename(out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model-dir", type=Path, default=ROOT / "assets" / "image-model")
    parser.add_argument(
        "--data", type=Path, default=ROOT / "assets" / "datasets" / "shapes_captions.jsonl.gz"
    )
    args = parser.parse_args(argv)
    write_model(args.model_dir)
    write_dataset(args.data)
    print(json.dumps({"model_dir": str(args.model_dir), "data": str(args.data)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
