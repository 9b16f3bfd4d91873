"""Training throughput of the `instruct` recipe against a bare torch + peft loop and transformers' Trainer.

All three train the same LoRA (r 16, alpha 32, dropout 0.05, all linear layers) on the same base
model and examples (prompt masked, same tokenization) with the same micro-batch, for the same
number of optimizer steps. The figure is non-padding tokens per second of the training loop
(model loading and tokenization excluded for all three). Methods run round-robin within each repeat,
so a change in machine load hits all of them alike; medians over the repeats are reported, with
ratios of medians. The recipe is measured twice: as shipped (packing on) and with packing off
(same batches as the bare loop, so that ratio is pure loop overhead).

    .venv/bin/python bench/train_throughput.py [--repeats 5] [--steps 5] [--model DIR] [--data FILE]
                                               [--device cpu|cuda|auto]

On CUDA all three hold the frozen base in the recipe's compute dtype (bf16 where supported) and run
under autocast, as the recipe does; CUDA timings synchronise the device before the clock stops. On a
CPU with native bf16 (AVX512-BF16 / AMX) all three autocast to bf16, as the recipe does there.

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple
from unittest import mock

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from trainer.data import load_examples, tokenize_for_sft  # noqa: E402
from trainer.hardware import cpu_has_native_bf16  # noqa: E402
from trainer.loop import TrainingLoop  # noqa: E402
from trainer.lora import load_base_model, load_tokenizer, lora_config  # noqa: E402
from trainer.models import bundled_base_model_dir, pick_device, pick_dtype  # noqa: E402
from trainer.packing import collate_padded  # noqa: E402
from trainer.recipes import NullReporter, TrainJob, get_recipe  # noqa: E402

HP: dict[str, Any] = {
    "lora_r": 16,
    "lora_alpha": 32.0,
    "lora_dropout": 0.05,
    "lora_targets": "all-linear",
    "micro_batch_size": 8,
    "max_length": 256,
    "lr": 2e-4,
}


def fresh_lora_model(model_dir: Path, device: str) -> Any:
    from peft import get_peft_model

    torch.manual_seed(0)
    return get_peft_model(load_base_model(model_dir, device, pick_dtype(device)), lora_config(HP))


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


class Timing(NamedTuple):
    tokens: int
    wall_s: float
    cpu_s: float  # this process's CPU time: less sensitive than wall time to other load on the machine


def measured(fn: Callable[[], int], device: str = "cpu") -> Timing:
    synchronize(device)
    cpu, wall = time.process_time(), time.perf_counter()
    tokens = fn()
    synchronize(device)
    return Timing(tokens, time.perf_counter() - wall, time.process_time() - cpu)


def run_recipe(model_dir: Path, data: Path, steps: int, packing: bool, device: str) -> Timing:
    """The recipe's own train(); only its TrainingLoop.run() is timed (loading and tokenizing excluded)."""
    timings: list[Timing] = []
    original = TrainingLoop.run

    def timed_run(loop: TrainingLoop) -> str:
        reason: list[str] = []

        def body() -> int:
            reason.append(original(loop))
            return loop.state.tokens

        timings.append(measured(body, device))
        return reason[0]

    with tempfile.TemporaryDirectory() as tmp, mock.patch.object(TrainingLoop, "run", timed_run):
        job = TrainJob(
            kind="instruct",
            base_model_dir=str(model_dir),
            train_file=str(data),
            output_dir=tmp,
            hparams={**HP, "packing": packing, "epochs": 100.0},
            max_steps=steps,
            budget_s=3600,
            device=device,
        )
        get_recipe("instruct").train(job, NullReporter())
    return timings[0]


def run_bare(model_dir: Path, tokenized: list[Any], pad_id: int, steps: int, device: str) -> Timing:
    """What a user writes by hand: padded batches in order, model(**batch).loss, AdamW."""
    model = fresh_lora_model(model_dir, device)
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=HP["lr"])
    return measured(lambda: bare_loop(model, optimizer, tokenized, pad_id, steps, device), device)


def cpu_bf16(device: str) -> bool:
    return device == "cpu" and cpu_has_native_bf16()


def autocast(device: str, dtype: torch.dtype) -> Any:
    """The recipe's autocast: the compute dtype on CUDA, bf16 on a CPU with native bf16, else none."""
    if device == "cuda":
        return torch.autocast("cuda", dtype=dtype)
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=cpu_bf16(device))


def bare_loop(model: Any, optimizer: Any, tokenized: list[Any], pad_id: int, steps: int, device: str) -> int:
    mbs = int(HP["micro_batch_size"])
    tokens = 0
    dtype = pick_dtype(device)
    for step in range(steps):
        chunk = tokenized[(step * mbs) % len(tokenized) :][:mbs]
        batch = {k: v.to(device) for k, v in collate_padded(chunk, pad_id).items()}
        with autocast(device, dtype):
            loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        tokens += int(batch["attention_mask"].sum())
    return tokens


def run_hf_trainer(model_dir: Path, tokenized: list[Any], pad_id: int, steps: int, device: str) -> Timing:
    """transformers' Trainer with default arguments (only output, steps, batch size and no reporting set)."""
    from transformers import Trainer, TrainingArguments

    model = fresh_lora_model(model_dir, device)
    # Trainer's dataloader collates one batch more than it trains on (checked: 4 collations for
    # max_steps=3), so only the first `steps` batches count.
    batch_tokens: list[int] = []

    def collate(features: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        from trainer.data import TokenizedExample

        batch = collate_padded([TokenizedExample(f["input_ids"], f["labels"]) for f in features], pad_id)
        batch_tokens.append(int(batch["attention_mask"].sum()))
        return batch

    dataset = [{"input_ids": t.input_ids, "labels": t.labels} for t in tokenized]
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(
            output_dir=tmp,
            max_steps=steps,
            per_device_train_batch_size=int(HP["micro_batch_size"]),
            report_to=[],
            use_cpu=device == "cpu",
            bf16=(device == "cuda" and pick_dtype(device) == torch.bfloat16) or cpu_bf16(device),
            fp16=device == "cuda" and pick_dtype(device) == torch.float16,
        )
        trainer = Trainer(model=model, args=args, train_dataset=dataset, data_collator=collate)
        with contextlib.redirect_stdout(sys.stderr):  # Trainer prints its metrics dict to stdout

            def body() -> int:
                trainer.train()
                return sum(batch_tokens[:steps])

            timing = measured(body, device)
    return timing


def ratios(medians: dict[str, float]) -> dict[str, float]:
    return {
        "recipe_vs_bare": medians["recipe"] / medians["bare_torch_peft"],
        "recipe_no_packing_vs_bare": medians["recipe_no_packing"] / medians["bare_torch_peft"],
        "recipe_vs_hf_trainer": medians["recipe"] / medians["hf_trainer"],
        "bare_vs_hf_trainer": medians["bare_torch_peft"] / medians["hf_trainer"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--model", type=Path, default=None, help="base model dir (default: the bundled one)")
    parser.add_argument("--data", type=Path, default=REPO / "assets" / "datasets" / "gsm8k_subset.jsonl")
    parser.add_argument("--examples", type=int, default=160)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto (the best present)")
    args = parser.parse_args()
    device = pick_device(args.device)
    model_dir = args.model or bundled_base_model_dir()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "train.jsonl"
        rows = args.data.read_text(encoding="utf-8").splitlines()[: args.examples]
        data.write_text("\n".join(rows) + "\n", encoding="utf-8")
        tokenizer = load_tokenizer(model_dir)
        tokenized = [
            tokenize_for_sft(tokenizer, ex, int(HP["max_length"])) for ex in load_examples(data, "instruct")
        ]
        pad_id = int(tokenizer.pad_token_id)
        methods: dict[str, Callable[[], Timing]] = {
            "recipe": lambda: run_recipe(model_dir, data, args.steps, packing=True, device=device),
            "recipe_no_packing": lambda: run_recipe(
                model_dir, data, args.steps, packing=False, device=device
            ),
            "bare_torch_peft": lambda: run_bare(model_dir, tokenized, pad_id, args.steps, device),
            "hf_trainer": lambda: run_hf_trainer(model_dir, tokenized, pad_id, args.steps, device),
        }
        for run in methods.values():  # warm-up round: one-off allocation and kernel selection costs
            run()
        samples: dict[str, list[Timing]] = {name: [] for name in methods}
        for _ in range(args.repeats):
            for name, run in methods.items():
                samples[name].append(run())
    wall = {n: statistics.median(t.tokens / t.wall_s for t in v) for n, v in samples.items()}
    cpu = {n: statistics.median(t.tokens / t.cpu_s for t in v) for n, v in samples.items()}
    report = {
        "benchmark": "train_throughput",
        "unit": "non-padding tokens per second of wall time, and per CPU-second of this process",
        "model": str(model_dir),
        "device": torch.cuda.get_device_name(0) if device == "cuda" else device,
        "dtype": str(pick_dtype(device)),
        "cpu_bf16_autocast": cpu_bf16(device),
        "threads": torch.get_num_threads(),
        "steps_per_repeat": args.steps,
        "repeats": args.repeats,
        "micro_batch_size": HP["micro_batch_size"],
        "max_length": HP["max_length"],
        "median_tokens_per_wall_s": wall,
        "median_tokens_per_cpu_s": cpu,
        "samples_tokens_per_wall_s": {n: [t.tokens / t.wall_s for t in v] for n, v in samples.items()},
        "ratios_wall": ratios(wall),
        "ratios_cpu": ratios(cpu),
        "load_average_1min": os.getloadavg()[0],
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
