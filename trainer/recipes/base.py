"""The shared recipe interface: jobs, results, progress reporting and the recipe registry.

A recipe turns a `TrainJob` into an artifact directory (safetensors only) and scores an artifact
(or the base model alone) on an `EvalJob`. Jobs are plain JSON-serialisable dataclasses because
they cross a process boundary: the node writes one to a file and `python -m trainer.worker` runs it.
The miner and the validator call the same `evaluate`, so both score exactly the same tokens.
"""

from __future__ import annotations

import abc
import dataclasses
import importlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol, TypeVar

DEVICES = ("auto", "cpu", "cuda", "mps")


class TrainerError(Exception):
    """A job cannot run as specified (bad job, bad data, missing model); the message says what to do."""


class ArtifactRejected(TrainerError):
    """An artifact fails a check against the base model (names, shapes, rank cap) and is not loaded."""


class JobSpecError(TrainerError):
    """A job description is malformed (unknown field, wrong type, out-of-range value)."""


def _check_device(device: str) -> None:
    if device not in DEVICES:
        raise JobSpecError(f"device {device!r} is not one of {DEVICES}; pick one of them")


@dataclass
class TrainJob:
    """One training job: what to train on, where to write, and within what budget."""

    kind: str
    base_model_dir: str
    train_file: str
    output_dir: str
    hparams: dict[str, Any] = field(default_factory=dict)
    budget_s: float = 600.0
    seed: int = 0
    max_steps: int | None = None
    device: str = "auto"
    threads: int | None = None
    checkpoint_dir: str | None = None
    checkpoint_interval_s: float = 60.0
    val_fraction: float = 0.0
    # LoRA weights to start from instead of fresh ones (autoresearch hands its race winner's adapter
    # to the final run); same rank and targets as `hparams` ask for, else the job fails saying so.
    init_adapter_dir: str | None = None

    def __post_init__(self) -> None:
        _check_device(self.device)
        if self.budget_s <= 0:
            raise JobSpecError(f"budget_s must be positive seconds, got {self.budget_s}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise JobSpecError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.max_steps is not None and self.max_steps < 1:
            raise JobSpecError(f"max_steps must be >= 1 or null, got {self.max_steps}")

    def to_json(self) -> str:
        return json.dumps({"type": "train", **dataclasses.asdict(self)}, sort_keys=True)


@dataclass
class EvalJob:
    """One evaluation job: score an artifact (or, with artifact_dir None, the base model itself)."""

    kind: str
    base_model_dir: str
    artifact_dir: str | None
    eval_file: str
    seed: int = 0
    device: str = "auto"
    threads: int | None = None
    max_examples: int | None = None
    # grpo only: the task's reward spec ('exact_answer:1.0,format:0.2'), names from trainer.rewards
    rewards: str | None = None
    # grpo only: the completion length the task is judged at (tokens); None: the recipe's default
    max_new_tokens: int | None = None

    def __post_init__(self) -> None:
        _check_device(self.device)
        if self.max_examples is not None and self.max_examples < 1:
            raise JobSpecError(f"max_examples must be >= 1 or null, got {self.max_examples}")
        if self.max_new_tokens is not None:
            if self.kind != "grpo":
                raise JobSpecError(f"max_new_tokens is a grpo field; a {self.kind} eval job takes none")
            if isinstance(self.max_new_tokens, bool) or not isinstance(self.max_new_tokens, int):
                raise JobSpecError(f"max_new_tokens must be an integer, got {self.max_new_tokens!r}")
            if self.max_new_tokens < 1:
                raise JobSpecError(f"max_new_tokens must be >= 1 or null, got {self.max_new_tokens}")
        if self.rewards is not None:
            if self.kind != "grpo":
                raise JobSpecError(f"rewards is a grpo field; a {self.kind} eval job takes none")
            from trainer.rewards import UnknownReward, parse_reward_spec

            try:
                parse_reward_spec(self.rewards)
            except UnknownReward as exc:
                raise JobSpecError(f"bad eval job rewards: {exc}") from None

    def to_json(self) -> str:
        return json.dumps({"type": "eval", **dataclasses.asdict(self)}, sort_keys=True)


Job = TrainJob | EvalJob


def job_from_dict(data: dict[str, Any]) -> Job:
    """Rebuild a job from its JSON form (`to_json`), rejecting unknown or missing fields clearly."""
    if not isinstance(data, dict):
        raise JobSpecError("a job must be a JSON object")
    data = dict(data)
    job_type = data.pop("type", None)
    cls: type[TrainJob] | type[EvalJob]
    if job_type == "train":
        cls = TrainJob
    elif job_type == "eval":
        cls = EvalJob
    else:
        raise JobSpecError(f'job "type" must be "train" or "eval", got {job_type!r}')
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise JobSpecError(f"unknown {job_type} job field(s) {unknown}; allowed: {sorted(names)}")
    try:
        return cls(**data)
    except TypeError as exc:
        raise JobSpecError(f"malformed {job_type} job: {exc}") from exc


@dataclass
class TrainResult:
    """What a training run produced."""

    artifact_dir: str
    metrics: dict[str, float] = field(default_factory=dict)
    steps: int = 0
    tokens: int = 0
    seconds: float = 0.0
    stopped_reason: str = "completed"  # "completed" | "max_steps" | "budget" | "cancelled"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class ParamSpec:
    """One dimension of a recipe's search space (for autoresearch)."""

    type: Literal["float_log", "float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    choices: tuple[Any, ...] | None = None

    def __post_init__(self) -> None:
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("a categorical ParamSpec needs choices")
        elif self.low is None or self.high is None or self.low > self.high:
            raise ValueError(f"a {self.type} ParamSpec needs low <= high")


class Reporter(Protocol):
    """Where a recipe sends progress; the worker turns calls into JSON lines on stdout."""

    def phase(self, name: str) -> None: ...

    def progress(
        self,
        step: int,
        total_steps: int,
        loss: float | None = None,
        tokens_per_s: float | None = None,
        percent: float | None = None,
        eta_s: float | None = None,
        **extra: Any,
    ) -> None: ...

    def metric(self, name: str, value: float) -> None: ...

    def log(self, message: str) -> None: ...


class NullReporter:
    """A reporter that drops everything (library use, benchmarks).

    Reporters may also offer `should_stop() -> bool` (polled between steps by recipes that support
    a graceful stop) and `checkpoint(step, path)`; both are optional and looked up with getattr.
    """

    def should_stop(self) -> bool:
        return False

    def phase(self, name: str) -> None:
        pass

    def progress(
        self,
        step: int,
        total_steps: int,
        loss: float | None = None,
        tokens_per_s: float | None = None,
        percent: float | None = None,
        eta_s: float | None = None,
        **extra: Any,
    ) -> None:
        pass

    def metric(self, name: str, value: float) -> None:
        pass

    def log(self, message: str) -> None:
        pass


class RecordingReporter(NullReporter):
    """A reporter that keeps every call as a dict (tests, in-process autoresearch trials)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def phase(self, name: str) -> None:
        self.events.append({"event": "phase", "name": name})

    def progress(
        self,
        step: int,
        total_steps: int,
        loss: float | None = None,
        tokens_per_s: float | None = None,
        percent: float | None = None,
        eta_s: float | None = None,
        **extra: Any,
    ) -> None:
        self.events.append(
            {
                "event": "progress",
                "step": step,
                "total_steps": total_steps,
                "loss": loss,
                "tokens_per_s": tokens_per_s,
                "percent": percent,
                "eta_s": eta_s,
                **extra,
            }
        )

    def metric(self, name: str, value: float) -> None:
        self.events.append({"event": "metric", "name": name, "value": value})

    def log(self, message: str) -> None:
        self.events.append({"event": "log", "message": message})

    def losses(self) -> list[float]:
        return [e["loss"] for e in self.events if e["event"] == "progress" and e["loss"] is not None]


class Recipe(abc.ABC):
    """One task kind's way to train, evaluate, check and export an artifact."""

    kind: ClassVar[str]

    @classmethod
    @abc.abstractmethod
    def default_hparams(cls) -> dict[str, Any]:
        """The recipe's best static configuration."""

    @classmethod
    @abc.abstractmethod
    def search_space(cls) -> dict[str, ParamSpec]:
        """Hyperparameters autoresearch may vary, by name (a subset of `default_hparams` keys)."""

    @abc.abstractmethod
    def train(self, job: TrainJob, reporter: Reporter) -> TrainResult:
        """Train within `job.budget_s`, write the artifact to `job.output_dir`, return the result."""

    @abc.abstractmethod
    def evaluate(self, job: EvalJob, reporter: Reporter) -> dict[str, float]:
        """Score the artifact (or the base model); lower-is-better primary metric under "loss"."""

    @abc.abstractmethod
    def export(self, artifact_dir: Path, out_path: Path) -> Path:
        """Pack the artifact directory as one `protocol.bundle` file at `out_path`."""

    @abc.abstractmethod
    def check_artifact(self, manifest: Any, base_model_dir: Path) -> None:
        """Check tensor names and shapes against the base model BEFORE loading; raise ArtifactRejected."""

    def merged_hparams(self, overrides: dict[str, Any]) -> dict[str, Any]:
        """Defaults with `overrides` applied; an unknown name is an error (typos must not pass silently)."""
        defaults = self.default_hparams()
        unknown = sorted(set(overrides) - set(defaults))
        if unknown:
            raise JobSpecError(f"unknown {self.kind} hyperparameter(s) {unknown}; known: {sorted(defaults)}")
        return {**defaults, **overrides}


_REGISTRY: dict[str, type[Recipe]] = {}
RECIPE_MODULES = ("instruct", "dpo", "grpo", "image", "bitnet")
_loaded = False


def load_recipe_modules() -> None:
    """Import every recipe module present (each registers itself); heavy imports happen here."""
    global _loaded
    if _loaded:
        return
    here = Path(__file__).resolve().parent
    for name in RECIPE_MODULES:
        if (here / f"{name}.py").is_file() or (here / name / "__init__.py").is_file():
            importlib.import_module(f"trainer.recipes.{name}")
    _loaded = True

R = TypeVar("R", bound=type[Recipe])


def register_recipe(cls: R) -> R:
    """Class decorator: make a recipe available by its `kind`."""
    kind = getattr(cls, "kind", None)
    if not isinstance(kind, str) or not kind:
        raise TypeError(f"{cls.__name__} needs a non-empty class attribute `kind`")
    existing = _REGISTRY.get(kind)
    if existing is not None and existing is not cls:
        raise TypeError(f"recipe kind {kind!r} is already registered by {existing.__name__}")
    _REGISTRY[kind] = cls
    return cls


def get_recipe(kind: str) -> Recipe:
    """A fresh instance of the recipe for `kind`."""
    load_recipe_modules()
    cls = _REGISTRY.get(kind)
    if cls is None:
        raise TrainerError(f"no recipe for task kind {kind!r}; known kinds: {recipe_kinds()}")
    return cls()


def recipe_kinds() -> list[str]:
    load_recipe_modules()
    return sorted(_REGISTRY)


def registered_recipes() -> dict[str, Callable[[], Recipe]]:
    load_recipe_modules()
    return dict(_REGISTRY)
