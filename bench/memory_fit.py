"""The admission memory estimate (trainer.fit.estimate_memory) against the peak a real run allocates.

A miner refuses a task whose estimated peak does not fit the device (trainer.fit.fit_check). The
estimate is only useful if it is never below the real peak (an admitted job would then run out of
memory) and not far above it (a job that fits would be refused). For Llama-shaped models built from
configs (~125M, ~350M and ~1.1B parameters, vocabulary 32,000, random weights) and several micro-batch,
sequence-length, gradient-checkpointing and QLoRA settings, each case trains 3 optimizer steps of the
`instruct` recipe on CUDA with packed, full-length sequences, and the bench reports the estimate, the
measured peak (torch.cuda.max_memory_allocated above what was allocated before the job) and their ratio.
The estimate's constants were fitted to the first four cases on the first three shapes (an H100 run,
2026-11-23); the 600m shape and the last three cases are held out, so their ratios test the fit.

    python bench/memory_fit.py [--sizes 125m,350m,1.1b] [--steps 3]

Needs a CUDA GPU (the estimate for CUDA is what it checks); elsewhere it prints a JSON object saying so.
QLoRA cases run only where bitsandbytes is installed. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from trainer.fit import ModelShape, TaskSize, estimate_memory  # noqa: E402
from trainer.lora import qlora_available  # noqa: E402
from trainer.models import tiny_llama  # noqa: E402
from trainer.recipes import NullReporter, TrainJob, get_recipe  # noqa: E402

# name: (hidden, layers, heads, kv_heads, intermediate)
SIZES: dict[str, tuple[int, int, int, int, int]] = {
    "125m": (768, 12, 12, 12, 3072),
    "350m": (1024, 24, 16, 16, 2816),
    "1.1b": (2048, 22, 32, 4, 5632),  # TinyLlama's shape
    "600m": (1536, 16, 12, 4, 4096),  # held out: not among the shapes the constants were fitted to
}
VOCAB = 32000
# (micro_batch_size, max_length, gradient_checkpointing, qlora)
CASES: list[tuple[int, int, bool, bool]] = [
    (8, 512, False, False),
    (4, 1024, False, False),
    (16, 512, True, False),
    (8, 512, False, True),
    (2, 2048, False, False),  # held out, as are the two below
    (32, 256, True, False),
    (4, 1024, True, True),
]


def build_model(root: Path, name: str) -> Path:
    """A Llama of the named shape with random bf16 weights and the tiny BPE tokenizer (ids < 512)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    hidden, layers, heads, kv_heads, intermediate = SIZES[name]
    out = tiny_llama(root / name, max_positions=2048)  # writes the tokenizer (and a tiny model we replace)
    small = json.loads((out / "config.json").read_text())
    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=2048,
        bos_token_id=small["bos_token_id"],
        eos_token_id=small["eos_token_id"],
        pad_token_id=small["pad_token_id"],
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = LlamaForCausalLM(config).to(torch.bfloat16)
    for stale in out.glob("*.safetensors"):
        stale.unlink()
    model.save_pretrained(str(out))
    del model
    torch.cuda.empty_cache()
    return out


def write_data(path: Path, rows: int) -> Path:
    rng = random.Random(0)
    words = ["alpha", "beta", "gamma", "delta", "sum", "of", "and", "the", "number", "is"]
    lines = []
    for _ in range(rows):
        question = " ".join(rng.choice(words) + str(rng.randint(0, 99)) for _ in range(300))
        lines.append(json.dumps({"question": question, "answer": f"#### {rng.randint(0, 999)}"}))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def measure(model_dir: Path, data: Path, out: Path, case: tuple[int, int, bool, bool], steps: int) -> int:
    mbs, seq, ckpt, qlora = case
    gc.collect()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    job = TrainJob(
        kind="instruct",
        base_model_dir=str(model_dir),
        train_file=str(data),
        output_dir=str(out),
        hparams={
            "micro_batch_size": mbs,
            "max_length": seq,
            "packing": True,
            "gradient_checkpointing": ckpt,
            "qlora": qlora,
            "epochs": 100.0,
        },
        max_steps=steps,
        budget_s=600,
        device="cuda",
    )
    get_recipe("instruct").train(job, NullReporter())
    peak = torch.cuda.max_memory_allocated() - before
    gc.collect()
    torch.cuda.empty_cache()
    return int(peak)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=",".join(SIZES))
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print(json.dumps({"benchmark": "memory_fit", "skipped": "needs a CUDA GPU"}))
        return
    rows: list[dict[str, Any]] = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = write_data(root / "train.jsonl", 400)
        for name in args.sizes.split(","):
            model_dir = build_model(root, name)
            shape = ModelShape.from_config(json.loads((model_dir / "config.json").read_text()))
            for i, case in enumerate(CASES):
                mbs, seq, ckpt, qlora = case
                if qlora and not qlora_available():
                    continue
                task = TaskSize(
                    train_tokens=mbs * seq * args.steps,
                    micro_batch_size=mbs,
                    seq_len=seq,
                    lora_r=16,
                    gradient_checkpointing=ckpt,
                    weight_bytes=2,
                    qlora=qlora,
                )
                estimate = estimate_memory(shape, task)
                peak = measure(model_dir, data, root / f"out-{name}-{i}", case, args.steps)
                rows.append(
                    {
                        "model": name,
                        "params": shape.params,
                        "micro_batch_size": mbs,
                        "seq_len": seq,
                        "gradient_checkpointing": ckpt,
                        "qlora": qlora,
                        "estimate_gib": round(estimate / 2**30, 3),
                        "measured_peak_gib": round(peak / 2**30, 3),
                        "estimate_over_measured": round(estimate / peak, 3),
                    }
                )
            print(json.dumps(rows[-1]), file=sys.stderr)
    ratios = [r["estimate_over_measured"] for r in rows]
    print(
        json.dumps(
            {
                "benchmark": "memory_fit",
                "device": torch.cuda.get_device_name(0),
                "steps": args.steps,
                "cases": rows,
                "min_ratio": min(ratios),
                "max_ratio": max(ratios),
                "under_estimates": sum(1 for r in ratios if r < 1.0),
                "seconds": round(time.monotonic() - started, 1),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
