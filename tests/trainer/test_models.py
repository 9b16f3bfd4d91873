"""Offline models: tiny builders, the bundled pretrained base model and its data, device choice."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from trainer.data import load_examples
from trainer.models import REPO_ROOT, bundled_base_model_dir, pick_device, pick_dtype, tiny_llama
from trainer.recipes import EvalJob, RecordingReporter, TrainJob, get_recipe

ASSETS = REPO_ROOT / "assets"


def test_tiny_llama_loads_offline_with_auto_classes(tiny_llama_dir: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(tiny_llama_dir))
    tok = AutoTokenizer.from_pretrained(str(tiny_llama_dir))
    assert model.config.vocab_size == len(tok) <= 512
    assert tok.decode(tok.encode("Answer: 42 clips", add_special_tokens=False)) == "Answer: 42 clips"
    assert not list(tiny_llama_dir.glob("*.bin"))


def test_tiny_llama_is_deterministic(tmp_path: Path) -> None:
    from safetensors.torch import load_file

    a = load_file(str(tiny_llama(tmp_path / "a", vocab=300, hidden=32, layers=1) / "model.safetensors"))
    b = load_file(str(tiny_llama(tmp_path / "b", vocab=300, hidden=32, layers=1) / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_bundled_base_model_fits_the_size_rules() -> None:
    files = [p for p in bundled_base_model_dir().iterdir() if p.is_file()]
    assert sum(p.stat().st_size for p in files) <= 20_000_000
    assert all(p.stat().st_size <= 20_000_000 for p in files)
    assert {"config.json", "model.safetensors", "tokenizer.json", "README.md"} <= {p.name for p in files}
    assert "PSF" in (bundled_base_model_dir() / "README.md").read_text()


def test_bundled_base_model_is_pretrained() -> None:
    """It predicts Python text far better than chance and than the same architecture untrained."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    model_dir = bundled_base_model_dir()
    model = AutoModelForCausalLM.from_pretrained(str(model_dir)).eval()
    tok = AutoTokenizer.from_pretrained(str(model_dir))
    text = (REPO_ROOT / "trainer" / "packing.py").read_text()  # our own code: not in its training text
    ids = torch.tensor([tok.encode(text, add_special_tokens=False)[:256]])
    torch.manual_seed(0)
    untrained = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(str(model_dir))).eval()
    with torch.no_grad():
        loss = float(model(input_ids=ids, labels=ids).loss)
        chance = float(untrained(input_ids=ids, labels=ids).loss)
    assert loss < math.log(model.config.vocab_size) - 1.0
    assert loss < chance - 1.0


def test_bundled_gsm8k_subset_follows_the_contract() -> None:
    data = ASSETS / "datasets" / "gsm8k_subset.jsonl"
    assert len(load_examples(data, "instruct")) == 600
    assert "MIT License" in (ASSETS / "datasets" / "LICENSE.gsm8k").read_text()
    assert all("####" in json.loads(line)["answer"] for line in data.read_text().splitlines())


@pytest.mark.slow
def test_fine_tuning_the_bundled_model_lowers_held_out_gsm8k_loss(tmp_path: Path) -> None:
    rows = (ASSETS / "datasets" / "gsm8k_subset.jsonl").read_text().splitlines()
    (tmp_path / "train.jsonl").write_text("\n".join(rows[:32]) + "\n")
    (tmp_path / "test.jsonl").write_text("\n".join(rows[-8:]) + "\n")
    base = str(bundled_base_model_dir())
    hp = {"max_length": 128, "lr": 5e-3, "micro_batch_size": 4, "epochs": 5.0, "warmup_ratio": 0.0}
    job = TrainJob(kind="instruct", base_model_dir=base, train_file=str(tmp_path / "train.jsonl"),
                   output_dir=str(tmp_path / "adapter"), hparams=hp, max_steps=6, threads=2)  # fmt: skip
    recipe = get_recipe("instruct")
    result = recipe.train(job, RecordingReporter())

    def test_loss(artifact: str | None) -> float:
        spec = EvalJob(kind="instruct", base_model_dir=base, artifact_dir=artifact,
                       eval_file=str(tmp_path / "test.jsonl"), threads=2)  # fmt: skip
        return recipe.evaluate(spec, RecordingReporter())["loss"]

    before, after = test_loss(None), test_loss(result.artifact_dir)
    print("held-out GSM8K loss before/after", before, after)
    assert after < before - 0.1, (before, after)


def test_device_and_dtype_choice() -> None:
    assert pick_device("cpu") == "cpu" and pick_dtype("cpu") == torch.float32
    assert pick_device("auto") in ("cpu", "cuda", "mps")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="no CUDA GPU"):
            pick_device("cuda")
    else:
        assert pick_dtype("cuda") in (torch.bfloat16, torch.float16)
    with pytest.raises(ValueError, match="unknown device"):
        pick_device("tpu")
