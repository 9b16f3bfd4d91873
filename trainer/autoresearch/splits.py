"""The validation split the search is judged on, carved deterministically from the task's train data.

Rows are split as they are (original columns, written back as JSON lines), so every recipe reads
the parts exactly as it reads the task file. The task's test data is never seen here: the validator
keeps it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from trainer.data import read_records, split


@dataclass(frozen=True)
class ValidationSplit:
    train_file: Path  # the train data minus the validation rows: what trials train on
    val_file: Path
    n_train: int
    n_val: int
    n_all: int  # rows in the full train file: what the final run trains on


def carve_validation(
    train_file: str | Path,
    work_dir: Path,
    val_fraction: float,
    seed: int,
    max_val: int,
) -> ValidationSplit:
    """Split `train_file` into search-train and validation files inside `work_dir`.

    Validation is capped at `max_val` rows: it is evaluated after every trial, so its size is paid for
    many times, while a few hundred rows already rank configurations reliably.
    """
    rows = read_records(train_file)
    if len(rows) < 2:
        raise ValueError(f"{train_file}: autoresearch needs at least 2 rows to carve a validation split")
    fraction = min(val_fraction, max_val / len(rows))
    search_rows, val_rows = split(rows, fraction, seed)
    work_dir.mkdir(parents=True, exist_ok=True)
    train_part = work_dir / "search_train.jsonl"
    val_part = work_dir / "search_val.jsonl"
    _write_jsonl(train_part, search_rows)
    _write_jsonl(val_part, val_rows)
    return ValidationSplit(train_part, val_part, len(search_rows), len(val_rows), len(rows))


def _write_jsonl(path: Path, rows: list[dict[str, object]]) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
