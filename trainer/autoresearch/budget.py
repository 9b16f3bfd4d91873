"""The clock of one autoresearch run: how long the search may go on, and how long the final run needs.

The final run is estimated from throughput measured in the trials themselves (seconds per training
example, and the fixed cost of starting a run: loading the model, tokenising, saving), so that the
search stops early enough for the final artifact whatever the machine or its load.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class Throughput:
    """Running estimates from finished runs (exponential average, so a loaded CPU shows up quickly)."""

    s_per_example: float | None = None
    overhead_s: float | None = None
    smoothing: float = 0.5

    def observe(self, examples: int, train_s: float, wall_s: float) -> None:
        """One run: `examples` trained in `train_s` of loop time within `wall_s` of wall time."""
        if examples <= 0 or train_s <= 0:
            return
        per_example = train_s / examples
        overhead = max(0.0, wall_s - train_s)
        self.s_per_example = self._mix(self.s_per_example, per_example)
        self.overhead_s = self._mix(self.overhead_s, overhead)

    def _mix(self, old: float | None, new: float) -> float:
        return new if old is None else (1 - self.smoothing) * old + self.smoothing * new

    def seconds_for(self, examples: int) -> float | None:
        if self.s_per_example is None or self.overhead_s is None:
            return None
        return self.overhead_s + examples * self.s_per_example

    def examples_for_training(self, seconds: float) -> int:
        """Training examples that `seconds` of pure training time covers (no start-up cost)."""
        if self.s_per_example is None:
            return 0
        return max(0, int(seconds / self.s_per_example))

    def examples_in(self, seconds: float) -> int:
        """Training examples that fit in `seconds` of wall time (0 before any measurement)."""
        if self.s_per_example is None or self.overhead_s is None:
            return 0
        return max(0, int((seconds - self.overhead_s) / self.s_per_example))


@dataclass
class Budget:
    """Deadlines derived from the task's budget.

    `final_fraction` of the budget is always kept for the final run (training on all the data is what
    gets scored); `margin_s` is kept after it for saving the trace and exporting the artifact.
    """

    total_s: float
    final_fraction: float = 0.5
    margin_fraction: float = 0.05
    min_margin_s: float = 1.0
    started: float = field(default_factory=time.monotonic)

    @property
    def margin_s(self) -> float:
        return max(self.min_margin_s, self.margin_fraction * self.total_s)

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def remaining(self) -> float:
        """Seconds left for work, the export margin already taken off."""
        return self.total_s - self.margin_s - self.elapsed()

    def search_left(self, final_estimate_s: float | None = None) -> float:
        """Seconds the search may still use: what is left after reserving the final run."""
        reserve = self.final_fraction * self.total_s
        if final_estimate_s is not None:
            reserve = max(reserve, final_estimate_s)
        return self.remaining() - reserve
