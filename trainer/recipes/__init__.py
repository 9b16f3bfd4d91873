"""The recipe registry: one recipe per task kind.

Importing this package is cheap (no torch): the recipe modules are imported on the first
`get_recipe` / `recipe_kinds` call (see `base.load_recipe_modules`), and each registers itself with
`@register_recipe`. A module that is missing is skipped; one that exists but fails to import is an
error, so a broken recipe never disappears silently.
"""

from __future__ import annotations

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
    load_recipe_modules,
    recipe_kinds,
    register_recipe,
)

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
    "load_recipe_modules",
    "recipe_kinds",
    "register_recipe",
]
