"""The search space: a recipe's `ParamSpec`s as optuna suggestions, and the knobs that error-driven
iteration turns (learning rate, micro-batch, accumulation, gradient checkpointing).

Recipes name their hyperparameters themselves; the knobs are found by a short list of aliases so
that every recipe (instruct, dpo, grpo, ...) gets the same recovery without declaring anything.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import optuna

from trainer.recipes.base import ParamSpec

LR_NAMES = ("learning_rate", "lr")
MICRO_BATCH_NAMES = ("micro_batch_size", "per_device_batch_size", "batch_size", "per_device_train_batch_size")
ACCUM_NAMES = ("grad_accum", "gradient_accumulation_steps", "grad_accum_steps", "accumulation_steps")
CHECKPOINTING_NAMES = ("gradient_checkpointing", "grad_checkpointing")
EPOCHS_NAMES = ("epochs", "num_epochs", "num_train_epochs")


@dataclass(frozen=True)
class Knobs:
    """The names this recipe uses for the hyperparameters that recovery changes (None: absent)."""

    lr: str | None
    micro_batch: str | None
    accum: str | None
    checkpointing: str | None
    epochs: str | None

    @classmethod
    def of(cls, defaults: dict[str, Any]) -> Knobs:
        def first(names: tuple[str, ...]) -> str | None:
            return next((n for n in names if n in defaults), None)

        return cls(
            first(LR_NAMES),
            first(MICRO_BATCH_NAMES),
            first(ACCUM_NAMES),
            first(CHECKPOINTING_NAMES),
            first(EPOCHS_NAMES),
        )


def suggest(trial: optuna.Trial, space: dict[str, ParamSpec]) -> dict[str, Any]:
    """Draw one configuration from `space` (enqueued trials get their fixed values back)."""
    params: dict[str, Any] = {}
    for name, spec in sorted(space.items()):
        if spec.type == "categorical":
            assert spec.choices is not None
            params[name] = trial.suggest_categorical(name, list(spec.choices))
        elif spec.type == "int":
            params[name] = trial.suggest_int(name, int(_num(spec.low)), int(_num(spec.high)))
        else:
            log = spec.type == "float_log"
            params[name] = trial.suggest_float(name, _num(spec.low), _num(spec.high), log=log)
    return params


def project(params: dict[str, Any], space: dict[str, ParamSpec]) -> dict[str, Any]:
    """`params` restricted to `space` and clipped into its ranges (for enqueuing past configurations).

    A categorical value that is no longer a choice is dropped, so the sampler draws that one afresh.
    """
    projected: dict[str, Any] = {}
    for name, spec in space.items():
        if name not in params:
            continue
        value = params[name]
        if spec.type == "categorical":
            assert spec.choices is not None
            if _in_choices(value, spec.choices):
                projected[name] = _as_choice(value, spec.choices)
        elif isinstance(value, int | float) and math.isfinite(value):
            clipped = min(max(float(value), _num(spec.low)), _num(spec.high))
            projected[name] = round(clipped) if spec.type == "int" else clipped
    return projected


def probes(
    base: dict[str, Any], space: dict[str, ParamSpec], knobs: Knobs, factor: float
) -> list[dict[str, Any]]:
    """One-axis variations of `base`: learning rate up and down by `factor`, then the smallest
    micro-batch (more optimizer updates per example, which short budgets reward)."""
    moves = [race_move(base, space, knobs, f, smallest_batch=False) for f in (factor, 1 / factor)]
    moves.append(race_move(base, space, knobs, 1.0, smallest_batch=True))
    return [project(m, space) for m in moves if m is not None]


def race_move(
    params: dict[str, Any], space: dict[str, ParamSpec], knobs: Knobs, lr_factor: float, smallest_batch: bool
) -> dict[str, Any] | None:
    """`params` (full hyperparameters) with the learning rate times `lr_factor` and, if asked, the
    smallest micro-batch: the two levers a short budget rewards (bigger and more updates in the same
    time). Only searched axes move (a pinned one is not in `space`), within the space's bounds;
    None when nothing would change."""
    change: dict[str, Any] = {}
    lr = params.get(knobs.lr) if knobs.lr else None
    if knobs.lr in space and isinstance(lr, int | float) and lr_factor != 1.0:
        assert knobs.lr is not None
        change[knobs.lr] = lr * lr_factor
    spec = space.get(knobs.micro_batch) if knobs.micro_batch else None
    if smallest_batch and spec is not None and spec.type == "categorical" and spec.choices:
        assert knobs.micro_batch is not None
        change[knobs.micro_batch] = min(spec.choices)
    moved = {**params, **project({**params, **change}, space)}
    return None if project(moved, space) == project(params, space) else moved


def _num(value: float | None) -> float:
    assert value is not None, "a numeric ParamSpec always has low and high"
    return float(value)


def _in_choices(value: Any, choices: tuple[Any, ...]) -> bool:
    return any(_same(value, c) for c in choices)


def _as_choice(value: Any, choices: tuple[Any, ...]) -> Any:
    # JSON turns tuples into lists: hand optuna back the exact choice object it knows.
    return next(c for c in choices if _same(value, c))


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return list(a) == list(b)
    return bool(a == b) and type(a) is type(b)
