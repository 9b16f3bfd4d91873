"""Past trials, kept by (task kind, model size bucket), to warm-start the next search.

The interface is two calls (`load`, `save`) so that the node's SQLite store can back it later; the
JSON file implementation here lives in a data directory the caller passes in.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

HISTORY_FILE = "autoresearch_history.json"
HISTORY_VERSION = 1
# Only the best records per (kind, bucket) are kept: warm start needs a handful, not every trial ever.
KEEP_PER_KEY = 50


@dataclass
class TrialRecord:
    """One finished trial worth remembering: its configuration and how well it did (lower is better)."""

    kind: str
    size_bucket: str
    params: dict[str, Any]
    value: float
    steps: int = 0
    seconds: float = 0.0
    created_at: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrialRecord:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


class HistoryStore(Protocol):
    """Where past trials live (a JSON file here; the node's SQLite store later)."""

    def load(self, kind: str, size_bucket: str) -> list[TrialRecord]: ...

    def save(self, records: list[TrialRecord]) -> None: ...


class NullHistory:
    """No memory: every search starts cold."""

    def load(self, kind: str, size_bucket: str) -> list[TrialRecord]:
        return []

    def save(self, records: list[TrialRecord]) -> None:
        pass


class JsonHistoryStore:
    """Past trials in one JSON file inside `data_dir`, written atomically."""

    def __init__(self, data_dir: str | Path) -> None:
        self.path = Path(data_dir) / HISTORY_FILE

    def load(self, kind: str, size_bucket: str) -> list[TrialRecord]:
        """This key's records, best (lowest value) first."""
        records = [r for r in self._read() if r.kind == kind and r.size_bucket == size_bucket]
        return sorted(records, key=lambda r: r.value)

    def save(self, records: list[TrialRecord]) -> None:
        finite = [r for r in records if math.isfinite(r.value)]
        if finite:
            self._write(_keep_best(self._read() + finite))

    def _read(self) -> list[TrialRecord]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return []
        except (json.JSONDecodeError, UnicodeDecodeError):
            # A damaged history only costs a cold start; never let it stop training.
            return []
        if not isinstance(data, dict) or data.get("version") != HISTORY_VERSION:
            return []
        return [TrialRecord.from_dict(r) for r in data.get("records", []) if isinstance(r, dict)]

    def _write(self, records: list[TrialRecord]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        payload = {"version": HISTORY_VERSION, "records": [r.to_dict() for r in records]}
        fd, tmp = tempfile.mkstemp(prefix=".history-", dir=self.path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(payload, handle, sort_keys=True)
        os.replace(tmp, self.path)


def _keep_best(records: list[TrialRecord]) -> list[TrialRecord]:
    by_key: dict[tuple[str, str], list[TrialRecord]] = {}
    for record in records:
        by_key.setdefault((record.kind, record.size_bucket), []).append(record)
    kept: list[TrialRecord] = []
    for group in by_key.values():
        kept.extend(sorted(group, key=lambda r: r.value)[:KEEP_PER_KEY])
    return kept


def size_bucket(model_dir: str | Path) -> str:
    """A coarse size label ("1M", "10M", ... "10B": the power of ten below the parameter count).

    Hyperparameters transfer between models of similar size, so history is keyed by decade.
    """
    count = count_parameters(model_dir)
    if count <= 0:
        return "unknown"
    decade = 10 ** math.floor(math.log10(count))
    for unit, scale in (("B", 10**9), ("M", 10**6), ("K", 10**3)):
        if decade >= scale:
            return f"{decade // scale}{unit}"
    return str(decade)


def count_parameters(model_dir: str | Path) -> int:
    """Parameters in the model's safetensors files, read from the headers only (no weights loaded)."""
    total = 0
    for path in sorted(Path(model_dir).glob("*.safetensors")):
        total += _safetensors_parameters(path)
    return total


def _safetensors_parameters(path: Path) -> int:
    with path.open("rb") as handle:
        header_len = int.from_bytes(handle.read(8), "little")
        header = json.loads(handle.read(header_len))
    total = 0
    for name, info in header.items():
        if name != "__metadata__":
            total += math.prod(info.get("shape", []))
    return total
