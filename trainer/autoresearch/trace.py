"""The search trace: every trial, its parameters, fidelity, result, wall time and why it stopped.

Saved as JSON beside the artifact directory (not inside it: the artifact bundle holds model files
only) and loadable for display in the GUI or on the command line.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

TRACE_VERSION = 1

# Why an attempt ended. "completed": ran to its step target; "pruned": the pruner stopped it at a
# rung; "oom": out of memory; "diverged": NaN/inf or exploding loss; "budget": stopped by the clock;
# "failed": any other error (its message is kept).
Outcome = Literal["completed", "pruned", "oom", "diverged", "budget", "failed"]


@dataclass
class Attempt:
    """One run of a trial's configuration (a trial retries after an OOM or a divergence)."""

    params: dict[str, Any]
    outcome: Outcome
    steps: int = 0
    wall_s: float = 0.0
    val_loss: float | None = None
    reason: str = ""
    # (step, validation loss) pairs reported to the pruner.
    curve: list[tuple[int, float]] = field(default_factory=list)


@dataclass
class TrialTrace:
    number: int
    params: dict[str, Any]
    source: str  # "default" | "history" | "sampler"
    max_steps: int
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def outcome(self) -> Outcome:
        return self.attempts[-1].outcome if self.attempts else "budget"

    @property
    def value(self) -> float | None:
        last = self.attempts[-1] if self.attempts else None
        return None if last is None else last.val_loss

    @property
    def wall_s(self) -> float:
        return sum(a.wall_s for a in self.attempts)


@dataclass
class SearchTrace:
    kind: str
    size_bucket: str
    budget_s: float
    seed: int
    trials: list[TrialTrace] = field(default_factory=list)
    best_params: dict[str, Any] = field(default_factory=dict)
    best_value: float | None = None
    final: Attempt | None = None
    search_s: float = 0.0
    total_s: float = 0.0
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["version"] = TRACE_VERSION
        for trial, raw in zip(self.trials, data["trials"], strict=True):
            raw["outcome"] = trial.outcome
            raw["value"] = trial.value
            raw["wall_s"] = trial.wall_s
        finite: dict[str, Any] = _finite(data)
        return finite


def trace_path(artifact_dir: str | Path) -> Path:
    """Where the trace of the search that produced `artifact_dir` is saved (a sibling file)."""
    artifact = Path(artifact_dir)
    return artifact.with_name(artifact.name + ".autoresearch.json")


def save_trace(trace: SearchTrace, artifact_dir: str | Path) -> Path:
    path = trace_path(artifact_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(trace.to_dict(), indent=1, sort_keys=True), encoding="utf-8")
    return path


def load_trace(path: str | Path) -> SearchTrace:
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if data.get("version") != TRACE_VERSION:
        raise ValueError(f"{path}: trace version {data.get('version')!r}, expected {TRACE_VERSION}")
    trials = [_trial_from_dict(t) for t in data["trials"]]
    final = _attempt_from_dict(data["final"]) if data.get("final") else None
    return SearchTrace(
        kind=data["kind"],
        size_bucket=data["size_bucket"],
        budget_s=data["budget_s"],
        seed=data["seed"],
        trials=trials,
        best_params=data.get("best_params", {}),
        best_value=data.get("best_value"),
        final=final,
        search_s=data.get("search_s", 0.0),
        total_s=data.get("total_s", 0.0),
        notes=list(data.get("notes", [])),
    )


def format_trace(trace: SearchTrace) -> str:
    """A plain-text table of the search, one line per attempt, for logs and the CLI."""
    lines = [
        f"autoresearch {trace.kind} ({trace.size_bucket} params), budget {trace.budget_s:.0f}s, "
        f"search {trace.search_s:.1f}s, total {trace.total_s:.1f}s",
        f"{'trial':>5} {'src':<8} {'outcome':<9} {'steps':>6} {'wall_s':>7} {'val_loss':>9}  params",
    ]
    for trial in trace.trials:
        for attempt in trial.attempts:
            loss = "-" if attempt.val_loss is None else f"{attempt.val_loss:.4f}"
            lines.append(
                f"{trial.number:>5} {trial.source:<8} {attempt.outcome:<9} {attempt.steps:>6} "
                f"{attempt.wall_s:>7.1f} {loss:>9}  {_short(attempt.params)}"
                + (f"  ({attempt.reason})" if attempt.reason else "")
            )
    if trace.final is not None:
        final = trace.final
        loss = "-" if final.val_loss is None else f"{final.val_loss:.4f}"
        lines.append(f"final: {final.outcome}, {final.steps} steps, {final.wall_s:.1f}s, loss {loss}")
    lines.extend(f"note: {note}" for note in trace.notes)
    return "\n".join(lines)


def _short(params: dict[str, Any]) -> str:
    parts = []
    for key in sorted(params):
        value = params[key]
        parts.append(f"{key}={value:.3g}" if isinstance(value, float) else f"{key}={value}")
    return " ".join(parts)


def _attempt_from_dict(data: dict[str, Any]) -> Attempt:
    attempt = Attempt(**{k: data[k] for k in (f.name for f in dataclasses.fields(Attempt)) if k in data})
    attempt.curve = [(int(s), float(v)) for s, v in attempt.curve]
    return attempt


def _trial_from_dict(data: dict[str, Any]) -> TrialTrace:
    return TrialTrace(
        number=data["number"],
        params=data["params"],
        source=data["source"],
        max_steps=data["max_steps"],
        attempts=[_attempt_from_dict(a) for a in data["attempts"]],
    )


def _finite(value: Any) -> Any:
    """JSON has no NaN/inf: a diverged loss is written as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value
