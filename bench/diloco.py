"""DiLoCo against synchronous data-parallel training on the same tiny model and token budget.

    python bench/diloco.py [--miners 4] [--inner-steps 10] [--rounds 36] [--scheme int2] [--help]

Prints JSON: final held-out loss of each, their ratio, and the bytes one miner sends (its encoded
contributions) against a per-step all-reduce of full fp32 gradients (params x 4 bytes per step, the
naive send; a ring all-reduce sends 2(K-1)/K of that). Synchronous data parallelism is simulated
in one process: each step averages the gradients of one batch from each of the K shards. DiLoCo
runs through the real round manager (compression, decode checks, Gauntlet, outer Nesterov).

Fair baseline: synchronous training gets the same model, shards, token budget, batch per shard,
schedule, grad clip and held-out evaluation, and is run at each lr of ``--sync-lrs`` and AdamW beta1
of ``--sync-beta1s``; the pair with the best mean loss is the baseline. Both methods run
``--seeds`` times (batch order, shard assignment) and their mean final losses are compared;
"settings" in the JSON reproduces the figure.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo, before bench/ itself

import torch

from trainer.diloco.config import CompressionConfig, InnerConfig
from trainer.diloco.data import ShardSet
from trainer.diloco.miner import DilocoMiner
from trainer.diloco.params import Params, batch_loss, eval_loss
from trainer.diloco.world import SHARED_DATASETS, World, build_world
from validator.diloco.gauntlet import GauntletConfig
from validator.diloco.rounds import DilocoValidator, Participant, RoundConfig, run_rounds


def synchronous(world: World, inner: InnerConfig, steps: int, seed: int) -> Params:
    """AdamW on the average gradient of one batch per shard each step (K-way data parallelism)."""
    params = {n: t.clone().requires_grad_(True) for n, t in world.params.items()}
    opt = torch.optim.AdamW(
        params.values(), lr=inner.inner_lr, betas=inner.adam_betas, weight_decay=inner.weight_decay
    )
    gen = torch.Generator().manual_seed(seed)
    world.model.train()
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = inner.lr_at(step)  # the same schedule as the miners' inner steps
        shards = world.shards.shards
        rows = [torch.randint(0, s.shape[0], (inner.batch_size,), generator=gen) for s in shards]
        losses = [batch_loss(world.model, params, s[r]) for s, r in zip(shards, rows, strict=True)]
        loss = torch.stack(losses).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        torch.nn.utils.clip_grad_norm_(list(params.values()), inner.max_grad_norm)
        opt.step()
    world.model.train(False)
    return {n: t.detach() for n, t in params.items()}


class CountingMiner(DilocoMiner):
    """An honest miner that counts the bytes it sends."""

    def __init__(self, address: str, model: torch.nn.Module, shards: ShardSet) -> None:
        super().__init__(address, model, shards)
        self.sent_bytes = 0

    def encode(self, spec, base_params, delta):  # type: ignore[no-untyped-def]
        blob = super().encode(spec, base_params, delta)
        self.sent_bytes += len(blob)
        return blob


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--miners", type=int, default=4)
    ap.add_argument("--inner-steps", type=int, default=10, help="H, inner steps per round")
    ap.add_argument("--rounds", type=int, default=36)  # 360 inner steps: see docs/DILOCO.md
    ap.add_argument("--batch", type=int, default=4, help="windows per miner per inner step")
    ap.add_argument("--scheme", choices=["int8", "int4", "int2", "topk"], default="int2")
    ap.add_argument("--block", type=int, default=256, help="entries per int8 / int4 / int2 scale")
    ap.add_argument(
        "--eval-scale", type=float, default=GauntletConfig().eval_scale,
        help="Gauntlet: share of a delta applied for scoring",
    )  # fmt: skip
    ap.add_argument("--texts", type=int, default=300, help="texts per domain")
    ap.add_argument("--topk-fraction", type=float, default=0.1)
    ap.add_argument("--fresh-adam", action="store_true", help="miners restart AdamW every round")
    ap.add_argument("--inner-lr", type=float, default=4e-3)
    ap.add_argument("--adam-beta1", type=float, default=0.8, help="the miners' AdamW beta1")
    ap.add_argument("--warmup", type=int, default=0, help="warm-up steps (both methods)")
    ap.add_argument("--cosine", action="store_true", help="cosine decay to 0.1 x lr (both methods)")
    ap.add_argument("--outer-lr", type=float, default=0.7)
    ap.add_argument("--outer-momentum", type=float, default=0.5)
    ap.add_argument(
        "--sync-lrs", default="3e-3,4e-3,6e-3",
        help="AdamW lrs tried for synchronous training; the best mean final loss is the baseline",
    )  # fmt: skip
    ap.add_argument(
        "--sync-beta1s", default="0.7,0.8,0.9", help="AdamW beta1s tried for synchronous training"
    )
    ap.add_argument("--seeds", type=int, default=3, help="runs of each method; the means are compared")
    ap.add_argument("--datasets", type=Path, default=SHARED_DATASETS)
    args = ap.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        world = build_world(Path(tmp), args.datasets, texts=args.texts, shards_per_domain=args.miners // 2)
    steps = args.rounds * args.inner_steps
    schedule = {"warmup_steps": args.warmup, "total_steps": steps if args.cosine else 0}
    inner = InnerConfig(
        inner_steps=args.inner_steps, inner_lr=args.inner_lr, batch_size=args.batch,
        keep_adam_state=not args.fresh_adam, adam_betas=(args.adam_beta1, 0.999), **schedule,
    )  # fmt: skip
    report: dict[str, object] = {
        "settings": {
            "miners": args.miners, "inner_steps": args.inner_steps, "rounds": args.rounds,
            "batch": args.batch, "seq_len": 64, "texts": args.texts, "scheme": args.scheme,
            "block": args.block if args.scheme != "topk" else None,
            "topk_fraction": args.topk_fraction if args.scheme == "topk" else None,
            "keep_adam": not args.fresh_adam, "inner_lr": args.inner_lr,
            "adam_betas": [args.adam_beta1, 0.999], "warmup": args.warmup,
            "cosine": args.cosine, "outer_lr": args.outer_lr, "outer_momentum": args.outer_momentum,
            "gauntlet_eval_scale": args.eval_scale,
            "sync_lrs": args.sync_lrs, "sync_beta1s": args.sync_beta1s, "seeds": args.seeds,
        },
        "initial_loss": eval_loss(world.model, world.params, world.val),
    }  # fmt: skip
    compression = CompressionConfig(scheme=args.scheme, topk_fraction=args.topk_fraction, block=args.block)
    grid = [(float(lr), float(b1)) for lr in args.sync_lrs.split(",") for b1 in args.sync_beta1s.split(",")]
    sync_runs: dict[tuple[float, float], list[float]] = {g: [] for g in grid}
    diloco_runs: list[float] = []
    accepted: list[list[int]] = []
    per_miner = 0
    t_sync = t_diloco = 0.0
    for seed in range(args.seeds):  # seed: sync batch order (1 + seed) and the rounds' shard_seed
        t0 = time.time()
        for lr, b1 in grid:
            sync = synchronous(
                world, replace(inner, inner_lr=lr, adam_betas=(b1, 0.999)), steps, seed=1 + seed
            )
            sync_runs[(lr, b1)].append(eval_loss(world.model, sync, world.val))
        t_sync += time.time() - t0
        t0 = time.time()
        cfg = RoundConfig(
            shard_seed=seed, inner=inner, compression=compression, outer_lr=args.outer_lr,
            outer_momentum=args.outer_momentum, gauntlet=GauntletConfig(eval_scale=args.eval_scale),
        )  # fmt: skip
        v = DilocoValidator(world.model, dict(world.params), world.shards, world.val, cfg, b"bench")
        miners = [CountingMiner(f"0x{i + 1:040x}", world.model, world.shards) for i in range(args.miners)]
        results = run_rounds(v, [Participant(m) for m in miners], args.rounds)
        diloco_runs.append(eval_loss(world.model, v.params, world.val))
        accepted.append([sum(x.accepted for x in r.verdicts.values()) for r in results])
        per_miner = max([per_miner] + [m.sent_bytes for m in miners])
        t_diloco += time.time() - t0
    mean = statistics.fmean
    best = min(grid, key=lambda g: mean(sync_runs[g]))  # the sync setting best on average
    report["sync_loss_by_lr_beta1"] = {f"{lr:g}/{b1:g}": mean(runs) for (lr, b1), runs in sync_runs.items()}
    report["sync_best_lr"], report["sync_best_beta1"] = best
    report["sync_loss_per_seed"] = sync_runs[best]
    report["diloco_loss_per_seed"] = diloco_runs
    report["sync_loss"] = mean(sync_runs[best])
    report["diloco_loss"] = mean(diloco_runs)
    report["diloco_vs_sync_loss_ratio"] = report["diloco_loss"] / report["sync_loss"]  # type: ignore[operator]
    report["ratio_per_seed"] = [d / s for d, s in zip(diloco_runs, sync_runs[best], strict=True)]
    report["accepted_per_round"] = accepted
    report["sync_s"], report["diloco_s"] = round(t_sync, 1), round(t_diloco, 1)
    n_params = sum(t.numel() for t in world.params.values())
    allreduce = steps * n_params * 4  # one fp32 gradient per synchronous step
    per_miner = max(m.sent_bytes for m in miners)
    report.update(params=n_params, tokens_each=steps * args.miners * args.batch * 64,
                  diloco_bytes_per_miner=per_miner, allreduce_bytes_per_miner=allreduce,
                  bytes_ratio=allreduce / per_miner)  # fmt: skip
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
