"""A few DiLoCo rounds end to end, in one process: `python -m devnet.diloco`.

Three honest miners, one sending random noise and one leaving during round 2 train a tiny Llama
on two domains (GSM8K, HH) with the real inner loop, compression, Gauntlet scoring, outer Nesterov
merge and OpenSkill ratings (validator/diloco/rounds.py, simulated clock). Prints the validation loss
of each round, each miner's verdict and the final ratings; exits 0 when the loss fell and the noise
miner was excluded every round, 1 otherwise. No network yet: the rounds do not travel over libp2p
(docs/DILOCO.md, "Not done yet").
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

from trainer.diloco.config import CompressionConfig, InnerConfig
from trainer.diloco.miner import DilocoMiner
from trainer.diloco.params import Params
from trainer.diloco.spec import RoundSpec
from trainer.diloco.world import SHARED_DATASETS, build_world
from validator.diloco.rounds import KIND, DilocoValidator, Participant, RoundConfig, run_rounds


class NoiseMiner(DilocoMiner):
    """Sends random noise of a plausible size instead of training."""

    def pseudo_gradient(self, spec: RoundSpec, global_params: Params) -> Params:
        gen = torch.Generator().manual_seed(spec.round)
        return {n: 0.01 * torch.randn(t.shape, generator=gen) for n, t in global_params.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--inner-steps", type=int, default=20)
    ap.add_argument("--texts", type=int, default=60, help="texts per domain")
    ap.add_argument("--datasets", type=Path, default=SHARED_DATASETS)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        world = build_world(Path(tmp), args.datasets, texts=args.texts, shards_per_domain=3)
    cfg = RoundConfig(inner=InnerConfig(inner_steps=args.inner_steps), compression=CompressionConfig())
    validator = DilocoValidator(world.model, dict(world.params), world.shards, world.val, cfg, b"devnet")
    names = {
        f"0x{i + 1:040x}": name
        for i, name in enumerate(["honest-1", "honest-2", "honest-3", "noise", "leaver"])
    }
    addrs = list(names)
    participants = [Participant(DilocoMiner(a, world.model, world.shards)) for a in addrs[:3]]
    participants.append(Participant(NoiseMiner(addrs[3], world.model, world.shards)))
    participants.append(Participant(DilocoMiner(addrs[4], world.model, world.shards), leaves_at=2))
    results = run_rounds(validator, participants, args.rounds)
    for r in results:
        print(f"round {r.round}: validation loss {r.val_loss_before:.4f} -> {r.val_loss_after:.4f}")
        for miner, v in sorted(r.verdicts.items(), key=lambda kv: names[kv[0]]):
            print(f"  {names[miner]:9} {'accepted' if v.accepted else 'excluded: ' + v.reason}")
    print("ratings (OpenSkill ordinal, best first):")
    for miner, rating in validator.ratings.leaderboard(KIND):
        print(f"  {names.get(miner, miner):9} {rating.ordinal:8.3f}")
    noise = addrs[3]
    fell = results[-1].val_loss_after < results[0].val_loss_before
    noise_out = all(not r.verdicts[noise].accepted for r in results if noise in r.verdicts)
    if not (fell and noise_out):
        print(f"FAILED: loss fell: {fell}; noise excluded every round: {noise_out}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
