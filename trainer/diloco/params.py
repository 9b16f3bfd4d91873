"""A model's trainable tensors as a name -> tensor dict, its hash, and the loss of a parameter set.

The global model travels as safetensors of ``named_parameters()`` (tied weights appear once). The
loss is computed with ``torch.func.functional_call`` so any parameter set (global, a miner's local
one, global minus a pseudo-gradient) is evaluated on one module without copying it.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

Params = dict[str, "torch.Tensor"]


def model_params(model: torch.nn.Module) -> Params:
    """Detached float32 copies of the model's trainable parameters."""
    return {n: p.detach().clone().float() for n, p in model.named_parameters()}


def params_bytes(params: Params) -> bytes:
    """safetensors serialisation (names sorted, contiguous tensors): the wire form of a global model."""
    from safetensors.torch import save

    return save({n: params[n].contiguous() for n in sorted(params)})


def params_hash(params: Params) -> str:
    """sha256 hex of ``params_bytes``: names the model a contribution was made against."""
    return hashlib.sha256(params_bytes(params)).hexdigest()


def params_from_bytes(blob: bytes, like: Params) -> Params:
    """Load a global model; names, shapes and dtypes must match ``like`` and every value be finite."""
    import torch
    from safetensors.torch import load

    loaded = load(blob)
    if set(loaded) != set(like):
        raise ValueError("global model tensors do not match the model's parameters")
    for name, tensor in loaded.items():
        if tensor.shape != like[name].shape or tensor.dtype != like[name].dtype:
            raise ValueError(f"global model tensor {name}: unexpected {tuple(tensor.shape)} {tensor.dtype}")
        if not bool(torch.isfinite(tensor).all()):
            raise ValueError(f"global model tensor {name} has non-finite values")
    return loaded


def batch_loss(model: torch.nn.Module, params: Params, batch: torch.Tensor) -> torch.Tensor:
    """Mean next-token loss of ``params`` on int64 windows [batch, seq_len] (every token scored)."""
    from torch.func import functional_call

    out = functional_call(model, params, args=(), kwargs={"input_ids": batch, "labels": batch})
    loss: torch.Tensor = out.loss
    return loss


def eval_loss(model: torch.nn.Module, params: Params, windows: torch.Tensor, chunk: int = 16) -> float:
    """Mean loss over all windows [n, seq_len], in chunks of ``chunk`` rows, without gradients."""
    import torch

    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, windows.shape[0], chunk):
            rows = windows[start : start + chunk]
            total += float(batch_loss(model, params, rows)) * rows.shape[0]
            count += rows.shape[0]
    return total / count
