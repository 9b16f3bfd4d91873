"""Shared trainer fixtures: a tiny Llama directory and small data files in every supported format.

The tiny model is built once per test session (a few hundred ms) and must be treated as read-only;
tests that train write their artifacts to their own tmp_path.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trainer.models import tiny_llama

SFT_ROWS = [
    {"question": f"What is {a} plus {b}?", "answer": f"{a} + {b} = {a + b}. #### {a + b}"}
    for a, b in [
        (2, 3),
        (4, 5),
        (7, 1),
        (6, 6),
        (8, 2),
        (9, 4),
        (3, 3),
        (5, 7),
        (1, 1),
        (2, 8),
        (4, 4),
        (6, 3),
    ]
]
ALPACA_ROWS = [
    {"instruction": "Reverse the word.", "input": w, "output": w[::-1]}
    for w in ["apple", "house", "river", "stone", "cloud", "light", "table", "green"]
]
DPO_ROWS = [
    {"prompt": f"Say the number {n}.", "chosen": f"The number is {n}.", "rejected": "I will not."}
    for n in range(10)
]
HH_ROWS = [
    {
        "chosen": f"\n\nHuman: Tell me about {t}.\n\nAssistant: {t.capitalize()} is interesting.",
        "rejected": f"\n\nHuman: Tell me about {t}.\n\nAssistant: No.",
    }
    for t in ["rivers", "clouds", "stones", "trees"]
]


def write_jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-init Llama (vocab 512, hidden 64, 2 layers, ~0.16M params) with its tokenizer; read-only."""
    return tiny_llama(tmp_path_factory.mktemp("tiny-llama") / "model", vocab=512, hidden=64, layers=2)


@pytest.fixture(scope="session")
def trainer_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """sft.jsonl (question/answer), alpaca.json, dpo.jsonl (prompt/chosen/rejected), hh.jsonl (HH style)."""
    d = tmp_path_factory.mktemp("trainer-data")
    write_jsonl(d / "sft.jsonl", SFT_ROWS)
    (d / "alpaca.json").write_text(json.dumps(ALPACA_ROWS), encoding="utf-8")
    write_jsonl(d / "dpo.jsonl", DPO_ROWS)
    write_jsonl(d / "hh.jsonl", HH_ROWS)
    return d


@pytest.fixture
def sft_file(trainer_data_dir: Path) -> Path:
    return trainer_data_dir / "sft.jsonl"


@pytest.fixture
def dpo_file(trainer_data_dir: Path) -> Path:
    return trainer_data_dir / "dpo.jsonl"
