"""The miner's inner loop: H AdamW steps on its shard from the global model -> pseudo-gradient.

With ``keep_adam_state`` (the default) the miner carries its AdamW moments from round to round, as
the DiLoCo paper does (passed in and out as ``adam_state``), even when its shard changes; a miner
that has just joined starts fresh. Measured: fresh state every round cost 0.27 nats in the benchmark
(docs/DILOCO.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from trainer.diloco.config import InnerConfig
from trainer.diloco.params import Params, batch_loss

if TYPE_CHECKING:
    import torch


def inner_train(
    model: torch.nn.Module,
    global_params: Params,
    shard: torch.Tensor,
    cfg: InnerConfig,
    seed: int,
    adam_state: dict[str, Any] | None = None,
    first_step: int = 0,
) -> Params:
    """H AdamW steps on batches drawn from ``shard`` [n, seq_len]; returns the local parameters.
    ``adam_state`` (a dict, updated in place) carries the optimizer state between rounds;
    ``first_step`` is the global inner step of this round's first step (``cfg.lr_at``)."""
    import torch

    # sorted names: AdamW state is matched to parameters by position, and the global model may
    # arrive in any order (decoded safetensors), so fix the order every round
    local = {n: global_params[n].clone().requires_grad_(True) for n in sorted(global_params)}
    opt = torch.optim.AdamW(
        local.values(), lr=cfg.inner_lr, betas=cfg.adam_betas, weight_decay=cfg.weight_decay
    )
    if adam_state:
        opt.load_state_dict(adam_state["opt"])
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for i in range(cfg.inner_steps):
        for group in opt.param_groups:
            group["lr"] = cfg.lr_at(first_step + i)
        rows = torch.randint(0, shard.shape[0], (cfg.batch_size,), generator=gen)
        loss = batch_loss(model, local, shard[rows])
        opt.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        torch.nn.utils.clip_grad_norm_(list(local.values()), cfg.max_grad_norm)
        opt.step()
    model.train(False)
    if adam_state is not None:
        adam_state["opt"] = opt.state_dict()
    return {n: t.detach() for n, t in local.items()}


def pseudo_gradient(global_params: Params, local_params: Params) -> Params:
    """global minus local, per tensor: the outer step applies it like a gradient."""
    return {n: global_params[n] - local_params[n] for n in global_params}
