"""DiLoCo against synchronous data-parallel training on the same tiny model and token budget.

    python bench/diloco.py [--miners 4] [--inner-steps 30] [--rounds 6] [--scheme int8]

Prints JSON: final held-out loss of each, their ratio, and the bytes one miner sends (its encoded
contributions) against a per-step all-reduce of full fp32 gradients (params x 4 bytes per step, the
naive send; a ring all-reduce sends 2(K-1)/K of that). Synchronous data parallelism is simulated
in one process: each step averages the gradients of one batch from each of the K shards. DiLoCo
runs through the real round manager (compression, decode checks, Gauntlet, outer Nesterov).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo, before bench/ itself

import torch

from trainer.diloco.config import CompressionConfig, InnerConfig
from trainer.diloco.data import ShardSet
from trainer.diloco.miner import DilocoMiner
from trainer.diloco.params import Params, batch_loss, eval_loss
from trainer.diloco.world import SHARED_DATASETS, World, build_world
from validator.diloco.rounds import DilocoValidator, Participant, RoundConfig, run_rounds


def synchronous(world: World, inner: InnerConfig, steps: int, seed: int) -> Params:
    """AdamW on the average gradient of one batch per shard each step (K-way data parallelism)."""
    params = {n: t.clone().requires_grad_(True) for n, t in world.params.items()}
    opt = torch.optim.AdamW(params.values(), lr=inner.inner_lr, weight_decay=inner.weight_decay)
    gen = torch.Generator().manual_seed(seed)
    world.model.train()
    for _ in range(steps):
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
    ap.add_argument("--inner-steps", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--scheme", choices=["int8", "topk"], default="int8")
    ap.add_argument("--texts", type=int, default=300, help="texts per domain")
    ap.add_argument("--topk-fraction", type=float, default=0.1)
    ap.add_argument("--keep-adam", action="store_true", help="miners keep AdamW state across rounds")
    ap.add_argument("--outer-lr", type=float, default=0.7)
    ap.add_argument("--outer-momentum", type=float, default=0.9)
    ap.add_argument("--datasets", type=Path, default=SHARED_DATASETS)
    args = ap.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        world = build_world(Path(tmp), args.datasets, texts=args.texts, shards_per_domain=args.miners // 2)
    inner = InnerConfig(inner_steps=args.inner_steps, batch_size=args.batch, keep_adam_state=args.keep_adam)
    report: dict[str, object] = {
        "miners": args.miners, "inner_steps": args.inner_steps, "rounds": args.rounds, "scheme": args.scheme,
        "topk_fraction": args.topk_fraction if args.scheme == "topk" else None,
        "keep_adam": args.keep_adam, "outer_lr": args.outer_lr, "outer_momentum": args.outer_momentum,
        "initial_loss": eval_loss(world.model, world.params, world.val),
    }  # fmt: skip
    t0 = time.time()
    sync = synchronous(world, inner, args.rounds * args.inner_steps, seed=1)
    report["sync_loss"] = eval_loss(world.model, sync, world.val)
    report["sync_s"] = round(time.time() - t0, 1)
    t0 = time.time()
    cfg = RoundConfig(
        inner=inner, compression=CompressionConfig(scheme=args.scheme, topk_fraction=args.topk_fraction),
        outer_lr=args.outer_lr, outer_momentum=args.outer_momentum,
    )  # fmt: skip
    v = DilocoValidator(world.model, dict(world.params), world.shards, world.val, cfg, b"bench")
    miners = [CountingMiner(f"0x{i + 1:040x}", world.model, world.shards) for i in range(args.miners)]
    results = run_rounds(v, [Participant(m) for m in miners], args.rounds)
    report["diloco_loss"] = eval_loss(world.model, v.params, world.val)
    report["diloco_s"] = round(time.time() - t0, 1)
    report["diloco_vs_sync_loss_ratio"] = report["diloco_loss"] / report["sync_loss"]  # type: ignore[operator]
    report["accepted_per_round"] = [sum(x.accepted for x in r.verdicts.values()) for r in results]
    n_params = sum(t.numel() for t in world.params.values())
    allreduce = args.rounds * args.inner_steps * n_params * 4
    per_miner = max(m.sent_bytes for m in miners)
    report.update(params=n_params, tokens_each=args.rounds * args.inner_steps * args.miners * args.batch * 64,
                  diloco_bytes_per_miner=per_miner, allreduce_bytes_per_miner=allreduce,
                  bytes_ratio=allreduce / per_miner)  # fmt: skip
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
