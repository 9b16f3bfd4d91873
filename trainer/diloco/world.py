"""A tiny two-domain DiLoCo world for tests, the benchmark and the devnet: a tiny Llama with a
tokenizer trained on GSM8K and HH text, shards of each domain, a validator batch held out from both.
Imports torch and transformers at module level: never import it on a GUI start path."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from trainer.config import DilocoConfig
from trainer.diloco.config import check_base_model
from trainer.diloco.data import SHARED_DATASETS as SHARED_DATASETS  # re-exported: tests, bench, devnet
from trainer.diloco.data import (
    ShardSet,
    datasets_folder,
    domain_texts,
    join_shard_sets,
    split_shards,
    token_windows,
)
from trainer.diloco.params import Params, model_params
from trainer.models import tiny_llama

SEQ_LEN = 64


@dataclass(frozen=True)
class World:
    model: torch.nn.Module
    params: Params
    shards: ShardSet
    val: torch.Tensor  # int64 [n, SEQ_LEN], both domains
    val_by_domain: dict[str, torch.Tensor]


def build_world(
    tmp: Path, datasets: Path, texts: int = 60, shards_per_domain: int = 5, hidden: int = 64
) -> World:
    """``texts`` texts per domain for shards, 24 more per domain held out for the validator
    (12 windows of each domain); the model is written to ``tmp``."""
    held = 24
    raw = {d: domain_texts(d, texts + held, datasets) for d in ("gsm8k", "hh")}
    model_dir = tiny_llama(tmp / "tiny", hidden=hidden, corpus=[t for ts in raw.values() for t in ts])
    tok = AutoTokenizer.from_pretrained(str(model_dir))
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(str(model_dir))
    model.train(False)  # dropout off; the inner loop switches training on for its own steps
    sets, val = [], {}
    for domain, ts in raw.items():
        sets.append(split_shards(token_windows(tok, ts[:texts], SEQ_LEN), shards_per_domain, domain))
        val[domain] = token_windows(tok, ts[texts:], SEQ_LEN)[:12]
    return World(model, model_params(model), join_shard_sets(*sets), torch.cat(list(val.values())), val)


def run_world(cfg: DilocoConfig, folder: Path) -> World:
    """The world of a run configured by ``[diloco]``: validator and miners build the same one (the
    same texts, tokenizer and shards); the validator's global model replaces the initial weights."""
    check_base_model(cfg.base_model)
    datasets = datasets_folder(cfg.datasets)
    with _BUILD_LOCK:  # transformers' loading patches module-level state: one build at a time
        return build_world(folder, datasets, texts=cfg.texts, shards_per_domain=3)


_BUILD_LOCK = threading.Lock()
