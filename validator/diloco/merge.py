"""The outer step: average the accepted pseudo-gradients and apply Nesterov SGD to the global model.

PyTorch's SGD(nesterov=True) rule, written out on a name -> tensor dict so its momentum buffer can
be saved with the model: buf = momentum * buf + g;  theta -= lr * (g + momentum * buf).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from trainer.diloco.params import Params


def average(deltas: Sequence[Params], weights: Sequence[float] | None = None) -> Params:
    """Weighted mean of pseudo-gradients (uniform when ``weights`` is None)."""
    if not deltas:
        raise ValueError("average: no pseudo-gradients to merge")
    w = [1.0] * len(deltas) if weights is None else [max(0.0, x) for x in weights]
    total = sum(w)
    if total <= 0:
        w, total = [1.0] * len(deltas), float(len(deltas))
    return {n: sum((wi / total) * d[n] for wi, d in zip(w, deltas, strict=True)) for n in deltas[0]}  # type: ignore[misc]


class OuterNesterov:
    """Outer optimizer state (the momentum buffer), kept across rounds."""

    def __init__(self, lr: float = 0.7, momentum: float = 0.5) -> None:
        if not lr > 0 or not 0 <= momentum < 1:
            raise ValueError("OuterNesterov: lr must be positive and momentum in [0, 1)")
        self.lr, self.momentum = lr, momentum
        self.buf: Params = {}

    def step(self, params: Params, grad: Params) -> Params:
        """The new global parameters; ``params`` is left unchanged."""
        new: Params = {}
        for name, g in grad.items():
            buf = self.buf.get(name)
            buf = g.clone() if buf is None else self.momentum * buf + g
            self.buf[name] = buf
            new[name] = params[name] - self.lr * (g + self.momentum * buf)
        return new

    def save(self, path: Path) -> None:
        from safetensors.torch import save_file

        save_file({n: t.contiguous() for n, t in self.buf.items()}, str(path))

    def load(self, path: Path) -> None:
        from safetensors.torch import load_file

        self.buf = dict(load_file(str(path)))
