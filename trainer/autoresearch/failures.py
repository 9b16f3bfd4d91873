"""Recognising the failures that error-driven iteration recovers from: out-of-memory and divergence."""

from __future__ import annotations

import gc
import math

# Messages of the allocators' real out-of-memory errors: CUDA and MPS raise torch.OutOfMemoryError
# (a RuntimeError) but the CPU allocator raises a plain RuntimeError naming itself. oneDNN (the CPU's
# bf16 autocast path) allocates its own scratch memory when it builds a kernel, and reports a failed
# allocation under the worker's address-space cap only as "could not create a primitive".
_OOM_MESSAGES = (
    "out of memory",
    "can't allocate memory",
    "defaultcpuallocator",
    "cannot allocate memory",
    "could not create a primitive",
)


class Diverged(Exception):
    """Training loss became NaN/inf or exploded compared with its start."""


class TrialPruned(Exception):
    """The pruner stopped the trial at a rung (raised from the reporter to leave the training loop)."""


def is_oom(exc: BaseException) -> bool:
    """True for a genuine out-of-memory error from torch (any device) or Python's MemoryError."""
    if isinstance(exc, MemoryError):
        return True
    try:
        import torch

        if isinstance(exc, torch.OutOfMemoryError):
            return True
    except ImportError:  # pragma: no cover - torch is a hard dependency of trainer
        pass
    return isinstance(exc, RuntimeError) and any(m in str(exc).lower() for m in _OOM_MESSAGES)


def release_memory() -> None:
    """Give cached allocator memory back after an OOM so the retry starts from a clean slate."""
    gc.collect()
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class DivergenceGuard:
    """Watches training losses; `check` raises `Diverged` on NaN/inf or a loss `factor` x its start.

    The reference is the lowest of the first few losses: the very first batch can be unusually hard,
    and a spike above several times the starting loss means the learning rate is too high.
    """

    def __init__(self, factor: float = 3.0, reference_steps: int = 3) -> None:
        self.factor = factor
        self.reference_steps = reference_steps
        self._start: list[float] = []

    def check(self, loss: float) -> None:
        if not math.isfinite(loss):
            raise Diverged(f"training loss became {loss}")
        if len(self._start) < self.reference_steps:
            self._start.append(loss)
            return
        reference = min(self._start)
        if reference > 0 and loss > self.factor * reference:
            raise Diverged(
                f"training loss {loss:.3g} exploded past {self.factor:g}x its start {reference:.3g}"
            )
