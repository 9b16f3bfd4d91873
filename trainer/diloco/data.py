"""Domain text for DiLoCo shards: token windows cut from GSM8K maths and HH dialogues.

A shard is a tensor of token windows, shape [n_windows, seq_len]. Language modelling on plain text
(every token scored) keeps the inner loop simple and makes the own-shard signal easy to measure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from trainer.data import DataError, TextTokenizer, read_records

if TYPE_CHECKING:
    import torch

DOMAIN_FILES = {"gsm8k": "gsm8k_train.jsonl", "hh": "hh_rlhf_harmless_test.jsonl.gz"}
SHARED_DATASETS = Path(__file__).resolve().parents[3] / "shared" / "datasets"  # beside the clone


def datasets_folder(setting: str) -> Path:
    """The ``[diloco] datasets`` folder ('' = the shared datasets beside the clone), checked to hold
    every domain's file, so a run fails at start with what to set rather than mid-build."""
    folder = Path(setting) if setting else SHARED_DATASETS
    missing = [name for name in DOMAIN_FILES.values() if not (folder / name).is_file()]
    if missing:
        raise ValueError(
            f"[diloco] datasets: {folder} lacks {', '.join(missing)}; set [diloco] datasets to a folder "
            "holding the GSM8K and HH-RLHF files"
        )
    return folder


def domain_texts(domain: str, limit: int, datasets_dir: Path) -> list[str]:
    """The first ``limit`` texts of a domain: GSM8K question + answer, HH chosen dialogue.

    ``datasets_dir`` holds the files of DOMAIN_FILES (the shared datasets folder beside the clone).
    """
    if domain not in DOMAIN_FILES:
        raise DataError(f"unknown DiLoCo domain {domain!r}; use one of {sorted(DOMAIN_FILES)}")
    rows = read_records(datasets_dir / DOMAIN_FILES[domain])[:limit]
    if domain == "gsm8k":
        return [f"Question: {r['question']}\nAnswer: {r['answer']}" for r in rows]
    return [str(r["chosen"]).strip() for r in rows]


def token_windows(tokenizer: TextTokenizer, texts: Sequence[str], seq_len: int) -> torch.Tensor:
    """The texts tokenized, joined by EOS and cut into windows: int64 [n_windows, seq_len]."""
    import torch

    eos = tokenizer.eos_token_id
    if eos is None:
        raise DataError("the tokenizer has no EOS token; DiLoCo windows need one between texts")
    stream: list[int] = []
    for text in texts:
        stream.extend(tokenizer.encode(text, add_special_tokens=False))
        stream.append(int(eos))
    n = len(stream) // seq_len
    if n == 0:
        raise DataError(f"{len(stream)} tokens do not fill one window of {seq_len}")
    return torch.tensor(stream[: n * seq_len], dtype=torch.int64).view(n, seq_len)


@dataclass(frozen=True)
class ShardSet:
    """Equal shards of token windows, each labelled with its domain."""

    shards: tuple[torch.Tensor, ...]  # each int64 [windows_per_shard, seq_len]
    domains: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.shards)


def split_shards(windows: torch.Tensor, n_shards: int, domain: str) -> ShardSet:
    """Cut [n, seq_len] windows into ``n_shards`` contiguous shards of equal size (remainder dropped)."""
    per = windows.shape[0] // n_shards
    if per == 0:
        raise DataError(f"{windows.shape[0]} windows cannot fill {n_shards} shards")
    shards = tuple(windows[i * per : (i + 1) * per] for i in range(n_shards))
    return ShardSet(shards, (domain,) * n_shards)


def join_shard_sets(*sets: ShardSet) -> ShardSet:
    """One shard set from several (e.g. maths shards then dialogue shards)."""
    return ShardSet(tuple(s for ss in sets for s in ss.shards), tuple(d for ss in sets for d in ss.domains))
