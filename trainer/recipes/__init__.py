"""The recipe registry: one recipe per task kind.

Importing this package imports every recipe module present, and each registers itself with
`@register_recipe`. A module that is missing (work in progress on a branch) is skipped; one that
exists but fails to import is an error, so a broken recipe never disappears silently.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from trainer.recipes.base import (
    ArtifactRejected,
    EvalJob,
    JobSpecError,
    NullReporter,
    ParamSpec,
    Recipe,
    RecordingReporter,
    Reporter,
    TrainerError,
    TrainJob,
    TrainResult,
    get_recipe,
    recipe_kinds,
    register_recipe,
)

RECIPE_MODULES = ("instruct", "dpo", "grpo", "image", "bitnet")

_HERE = Path(__file__).resolve().parent
for _name in RECIPE_MODULES:
    if (_HERE / f"{_name}.py").is_file() or (_HERE / _name / "__init__.py").is_file():
        importlib.import_module(f"trainer.recipes.{_name}")

__all__ = [
    "ArtifactRejected",
    "EvalJob",
    "JobSpecError",
    "NullReporter",
    "ParamSpec",
    "Recipe",
    "RecordingReporter",
    "Reporter",
    "TrainJob",
    "TrainResult",
    "TrainerError",
    "get_recipe",
    "recipe_kinds",
    "register_recipe",
]
