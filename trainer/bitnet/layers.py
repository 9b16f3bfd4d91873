"""BitNet b1.58 linear layers for quantisation-aware training.

Weights are ternarised per tensor with the absmean scale (W ~ s * T, T in {-1, 0, 1}, s = mean|W|);
activations are quantised per token to int8 by their absmax. Both use the straight-through
estimator: the forward pass sees quantised values, the backward pass treats quantisation as the
identity so the full-precision latent weights keep learning.

`quant_lambda` blends in quantisation (0 = full precision, 1 = fully ternary) so a pretrained
full-precision model can be moved to ternary gradually instead of collapsing in one step.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

# Linear layers that stay full precision in BitNet b1.58 (the output head).
KEEP_FULL_PRECISION = ("lm_head",)
EPS = 1e-5


def absmean_scale(weight: torch.Tensor) -> torch.Tensor:
    """The per-tensor scale s = mean|W| (a 0-d tensor, clamped away from zero)."""
    return weight.detach().float().abs().mean().clamp(min=EPS)


def ternarize(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(T, s) with T = round(W / s) clipped to {-1, 0, 1} (int8, same shape as W) and s = mean|W|."""
    scale = absmean_scale(weight)
    ternary = (weight.detach().float() / scale).round().clamp(-1, 1).to(torch.int8)
    return ternary, scale


def weight_quant(weight: torch.Tensor) -> torch.Tensor:
    """Fake-quantised weight s * T, in the weight's dtype (no straight-through here)."""
    ternary, scale = ternarize(weight)
    return (ternary.float() * scale).to(weight.dtype)


def activation_quant(x: torch.Tensor) -> torch.Tensor:
    """Per-token (last dim) absmax int8 fake quantisation: values on a grid of absmax / 127."""
    scale = 127.0 / x.detach().float().abs().amax(dim=-1, keepdim=True).clamp(min=EPS)
    return ((x.float() * scale).round().clamp(-128, 127) / scale).to(x.dtype)


def ste_blend(full: torch.Tensor, quantised: torch.Tensor, quant_lambda: float) -> torch.Tensor:
    """full + lambda * (q - full), with the difference detached: the straight-through estimator."""
    if quant_lambda <= 0.0:
        return full
    return full + quant_lambda * (quantised - full).detach()


class BitLinear(nn.Linear):
    """An `nn.Linear` whose forward pass uses ternary weights and int8 activations (b1.58)."""

    quant_lambda: float

    def __init__(self, in_features: int, out_features: int, bias: bool = False, **kwargs: Any) -> None:
        super().__init__(in_features, out_features, bias=bias, **kwargs)
        self.quant_lambda = 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lam = self.quant_lambda
        x_q = ste_blend(x, activation_quant(x), lam)
        w_q = ste_blend(self.weight, weight_quant(self.weight), lam)
        return F.linear(x_q, w_q, self.bias)

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> BitLinear:
        """A BitLinear sharing nothing with `linear` but holding a copy of its latent weights."""
        layer = cls(
            linear.in_features,
            linear.out_features,
            bias=linear.bias is not None,
            device=linear.weight.device,
            dtype=linear.weight.dtype,
        )
        with torch.no_grad():
            layer.weight.copy_(linear.weight)
            if linear.bias is not None:
                layer.bias.copy_(linear.bias)
        return layer

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, quant_lambda={self.quant_lambda}"


def convert_to_bitnet(model: nn.Module, keep: tuple[str, ...] = KEEP_FULL_PRECISION) -> list[str]:
    """Replace every `nn.Linear` except those named in `keep` by a BitLinear, in place.

    Embeddings and norms are not linear layers, so they stay full precision. Returns the names of the
    converted modules.
    """
    names = [
        name
        for name, module in model.named_modules()
        if type(module) is nn.Linear and name.split(".")[-1] not in keep
    ]
    for name in names:
        linear = model.get_submodule(name)
        assert isinstance(linear, nn.Linear)
        model.set_submodule(name, BitLinear.from_linear(linear))
    return names


def bit_linears(model: nn.Module) -> Iterator[tuple[str, BitLinear]]:
    for name, module in model.named_modules():
        if isinstance(module, BitLinear):
            yield name, module


def set_quant_lambda(model: nn.Module, quant_lambda: float) -> None:
    """Set how much quantisation every BitLinear applies (0 = none, 1 = full b1.58)."""
    if not 0.0 <= quant_lambda <= 1.0:
        raise ValueError(f"quant_lambda must be in [0, 1], got {quant_lambda}")
    for _, layer in bit_linears(model):
        layer.quant_lambda = quant_lambda


def lambda_schedule(step: int, ramp_steps: int) -> float:
    """Linear ramp of quantisation from 0 to 1 over `ramp_steps` (0 ramp steps = ternary from the start)."""
    if ramp_steps <= 0:
        return 1.0
    return min(1.0, step / ramp_steps)
