"""What the recipes' learning-rate schedules share (no torch here: autoresearch plans with it too)."""

from __future__ import annotations

# The plan of a run whose pace nobody has measured (autoresearch's race slots, and its final run when
# no step was timed): the wall-clock budget ends it, and LoopState.fit_to_budget sizes it after 2
# steps. A schedule must not take its warm-up from it: 5 % of 10**6 steps ran the first steps at
# ~lr/50,000, and one such step left a devnet bitnet artifact at the base model's loss.
UNMEASURED_PLAN = 10**6


def unmeasured(total_steps: int) -> bool:
    """True for a plan that stands in for "until the budget ends": no warm-up is taken from it."""
    return total_steps >= UNMEASURED_PLAN


def linear_warmup_steps(total_steps: int, ratio: float) -> int:
    """Warm-up length (>= 1) of the loops that ramp ``lr x (step + 1) / warmup``: ``ratio`` of the
    plan, or 1 (no ramp: the first step at full lr) for an unmeasured plan."""
    return 1 if unmeasured(total_steps) else max(1, int(total_steps * ratio))
