"""A tiny two-domain DiLoCo world for tests and the benchmark: a tiny Llama with a tokenizer trained
on GSM8K and HH text, shards of each domain, and a validator batch held out from both."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from trainer.diloco.data import ShardSet, domain_texts, join_shard_sets, split_shards, token_windows
from trainer.diloco.params import Params, model_params
from trainer.models import tiny_llama

SEQ_LEN = 64
SHARED_DATASETS = Path(__file__).resolve().parents[3] / "shared" / "datasets"


def datasets_dir() -> Path:
    """../shared/datasets beside the clone; the test is skipped where it is absent (as tests/conftest)."""
    import pytest

    if not SHARED_DATASETS.is_dir():
        pytest.skip(f"{SHARED_DATASETS} is absent: the shared datasets sit beside the clone in CI")
    return SHARED_DATASETS


@dataclass(frozen=True)
class World:
    model: torch.nn.Module
    params: Params
    shards: ShardSet
    val: torch.Tensor  # int64 [n, SEQ_LEN], both domains
    val_by_domain: dict[str, torch.Tensor]


def build_world(tmp: Path, datasets: Path, texts: int = 60, shards_per_domain: int = 5) -> World:
    """``texts`` texts per domain for shards, 24 more per domain held out for the validator."""
    held = 24
    raw = {d: domain_texts(d, texts + held, datasets) for d in ("gsm8k", "hh")}
    model_dir = tiny_llama(tmp / "tiny", corpus=[t for ts in raw.values() for t in ts], seed=0)
    tok = AutoTokenizer.from_pretrained(str(model_dir))
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(str(model_dir)).eval()
    sets, val = [], {}
    for domain, ts in raw.items():
        sets.append(split_shards(token_windows(tok, ts[:texts], SEQ_LEN), shards_per_domain, domain))
        val[domain] = token_windows(tok, ts[texts:], SEQ_LEN)[:12]
    return World(model, model_params(model), join_shard_sets(*sets), torch.cat(list(val.values())), val)
