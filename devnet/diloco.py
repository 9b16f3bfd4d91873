"""DiLoCo rounds over real libp2p hosts on 127.0.0.1: `magnet devnet --kind diloco`.

One validator and six miners, each with its own p2p host (its own key, blob store and gossip), in
one process and one trio run: three honest miners, one sending random noise, one naming a shard that
is not its own in its notice, and one that stops after round 1. Each round the validator gossips a
signed DilocoRound and serves the global model as a public blob; each miner fetches and checks it,
trains H inner AdamW steps on its shard of a tiny Llama's GSM8K / HH data (a worker thread of this
process), pushes its compressed pseudo-gradient privately to the validator and gossips a signed
DilocoContribution; the validator checks the notice, takes the blob through the codec's checks,
judges with the Gauntlet, merges with the outer Nesterov step and rates with OpenSkill
(validator/diloco/network.py, miner/diloco_net.py).

Prints the validation loss of each round, each miner's verdict with its reason and the final ratings;
exits 0 when the loss fell over the rounds and the noise and shard-lying miners were excluded every
round, 1 otherwise.
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
import trio
from libp2p.peer.peerinfo import PeerInfo

from miner.db import MinerDB
from miner.diloco_net import NetworkMiner, claim_held
from node.store import Store
from p2p.config import P2PConfig
from p2p.service import LocalPeer, P2PService
from p2p.validation import Accept, AllowListAuthorizer
from protocol.messages import ROLE_MINER, ROLE_VALIDATOR, Receipt
from protocol.signing import Domain, SignedMessage
from trainer.diloco.config import CompressionConfig, InnerConfig
from trainer.diloco.miner import DilocoMiner
from trainer.diloco.params import Params
from trainer.diloco.spec import RoundSpec
from trainer.diloco.world import SHARED_DATASETS, World, build_world
from validator.db import ValidatorDB
from validator.diloco.network import NetworkValidator
from validator.diloco.receipts import RoundRewards
from validator.diloco.rounds import KIND, DilocoValidator, RoundConfig, RoundResult
from validator.epoch_close import EpochCloser
from validator.service import P2PNet, registry_access
from wallet.devnet import DevnetChain, start_embedded_chain
from wallet.receipts import verify_receipt
from wallet.registry import RegistryParams
from wallet.signer import LocalSigner

SALT = b"devnet-diloco".ljust(32, b".")
ROUND_EMISSION = 10**18  # base units split among the accepted of each round
NAMES = ["honest-1", "honest-2", "honest-3", "noise", "liar", "quitter"]


class NoiseMiner(DilocoMiner):
    """Sends random noise of a plausible size instead of training."""

    def pseudo_gradient(self, spec: RoundSpec, global_params: Params) -> Params:
        gen = torch.Generator().manual_seed(spec.round)
        return {n: 0.01 * torch.randn(t.shape, generator=gen) for n, t in global_params.items()}


class QuittingMiner(NetworkMiner):
    """Takes part in round 0 only, then ignores the rounds (the validator marks it missing)."""

    def _on_round(self, accepted: Accept, origin: str) -> None:
        if not self.done and not self.errors:
            super()._on_round(accepted, origin)


class ShardLiar(NetworkMiner):
    """Trains honestly but names another shard in its notice: refused at the notice, blob unread."""

    def claimed_shard(self, spec: RoundSpec) -> int:
        return (spec.assignment[self.worker.address] + 1) % spec.n_shards


def _config() -> P2PConfig:
    return P2PConfig(listen_addrs=["/ip4/127.0.0.1/tcp/0"], enable_mdns=False)


async def _wait(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"devnet: timed out after {timeout} s waiting for {what}")
        await trio.sleep(0.05)


Outcome = tuple[list[RoundResult], DilocoValidator, dict[str, str]]


async def run_network(world: World, root: Path, rounds: int, inner_steps: int, scheme: str,
                      round_ms: int) -> Outcome:  # fmt: skip
    cfg = RoundConfig(round_ms=round_ms, inner=InnerConfig(inner_steps=inner_steps),
                      compression=CompressionConfig(scheme=scheme))  # fmt: skip
    core = DilocoValidator(world.model, dict(world.params), world.shards, world.val, cfg, b"devnet-secret")
    v_signer = LocalSigner.create()
    # One epoch holds every round; its emission is what the rounds hand out, so the claimed balances
    # equal the receipts' amounts (the registry scales a lone poster's leaves to the whole emission).
    params = RegistryParams(epoch_length=3600, emission_per_epoch=rounds * ROUND_EMISSION)
    chain = start_embedded_chain([v_signer], params=params, serve=False)
    domain = Domain(chain.chain_id, chain.deployment.registry, SALT)  # the devnet chain's own domain
    v_registry = chain.registry(v_signer)
    v_db = ValidatorDB(Store(root / "validator.sqlite"))
    rewards = RoundRewards(emission=ROUND_EMISSION, epoch_of=lambda _ms: v_registry.current_epoch())
    net_v = NetworkValidator(core, v_signer, rewards=rewards, db=v_db)
    auth = AllowListAuthorizer([v_signer.address])
    v_p2p = P2PService(_config(), root / "validator", domain, LocalPeer(v_signer, ROLE_VALIDATOR),
                       authorizer=auth, push_policy=net_v.allow_push)  # fmt: skip
    miners: list[NetworkMiner] = []
    services: list[P2PService] = []
    names: dict[str, str] = {}
    for i, name in enumerate(NAMES):
        signer = LocalSigner.create()
        names[signer.address] = name
        cls = NoiseMiner if name == "noise" else DilocoMiner
        worker = cls(signer.address, copy.deepcopy(world.model), world.shards)
        net_cls = {"quitter": QuittingMiner, "liar": ShardLiar}.get(name, NetworkMiner)
        miners.append(net_cls(worker, signer, v_signer.address, dict(world.params), cfg.inner,
                              db=MinerDB(Store(root / f"miner{i}.sqlite"))))  # fmt: skip
        chain.fund(signer.address)  # gas for its own claim
        services.append(P2PService(_config(), root / f"miner{i}", domain, LocalPeer(signer, ROLE_MINER),
                                   authorizer=auth))  # fmt: skip
    results: list[RoundResult] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(v_p2p.run)
        net_v.attach(v_p2p)
        for miner, service in zip(miners, services, strict=True):
            await nursery.start(service.run)
            miner.attach(service, nursery)
            await service.host.connect(PeerInfo(v_p2p.peer_id, v_p2p.host.get_addrs()))
        await _wait(lambda: all(v_p2p.peerbook.address_of(s.peer_id.to_string()) for s in services)
                    and all(s.peerbook.address_of(v_p2p.peer_id.to_string()) for s in services),
                    30, "the hosts to learn each other's identities")  # fmt: skip
        await trio.sleep(1.5)  # gossip meshes form (1 s heartbeat)
        for r in range(rounds):
            expected = len(miners) if r == 0 else len(miners) - 1  # the quitter is missing from round 1 on
            started = time.monotonic()
            result = await net_v.run_round(expected=expected)
            results.append(result)
            _print_round(result, names, time.monotonic() - started)
        await _close_epoch_and_claim(chain, v_db, v_p2p, net_v, miners, names, root / "epochs")
        for service in [v_p2p, *services]:
            service.stop()
    for m in miners:
        for err in m.errors:
            print(f"  ({names[m.signer.address]}: {err})")
    _print_receipts([s for m in miners for s in m.receipts], names, domain)
    return results, core, names


async def _close_epoch_and_claim(chain: DevnetChain, v_db: ValidatorDB, v_p2p: P2PService,
                                 net_v: NetworkValidator, miners: list[NetworkMiner],
                                 names: dict[str, str], epochs_dir: Path) -> None:  # fmt: skip
    """The validator's ordinary epoch close (epoch file, root on chain, proofs in val_proof), the
    proofs delivered to the miners' receipt books, then each miner's own claim (claim_proofs)."""
    epochs = v_db.epochs_with_receipts()
    if not epochs:
        return
    chain.advance_to_epoch(epochs[-1] + 1)
    signer = net_v.signer
    closer = EpochCloser(v_db, v_p2p.domain, signer, P2PNet(v_p2p),
                         registry_access(chain.registry(signer), signer.address),  # type: ignore[arg-type]
                         epochs_dir)  # fmt: skip
    await closer.run_once()
    for epoch in epochs:
        row = v_db.epoch(epoch)
        state = f"{row['state']} (root {bytes(row['root']).hex()[:12]})" if row else "not closed"
        print(f"epoch {epoch}: {len(v_db.receipts(epoch=epoch))} round receipts, {state}")
    await net_v.deliver_pending()
    await _wait(lambda: all(len(m.db.proofs()) == len(m.db.receipts()) for m in miners if m.db),
                30, "the proofs to reach the miners")  # fmt: skip
    chain.advance_to_epoch(epochs[-1] + 2)  # claims open once the posting window has closed
    print("claimed per miner (proofs, MAG on chain):")
    for m in miners:
        assert m.db is not None
        registry = chain.registry(m.signer)  # type: ignore[arg-type]
        outcomes = await trio.to_thread.run_sync(claim_held, m.db, registry)
        paid = sum(o.proof.amount for o in outcomes if o.status == "claimed")
        balance = registry.token_balance(m.signer.address)
        name = names[m.signer.address]
        print(f"  {name:9} {len(outcomes)} {balance / 10**18:.4f} (leaf amounts {paid / 10**18:.4f})")


def _print_receipts(receipts: list[SignedMessage], names: dict[str, str], domain: Domain) -> None:
    """Per miner: the validator-signed round receipts it holds (delivered to it) and their total."""
    held: dict[str, list[int]] = {n: [] for n in names.values()}
    for signed in receipts:
        verify_receipt(signed, domain)
        receipt = signed.message
        assert isinstance(receipt, Receipt)
        held[names[receipt.miner]].append(receipt.amount)
    print("receipts per miner (count, total MAG):")
    for name, amounts in held.items():
        print(f"  {name:9} {len(amounts)} {sum(amounts) / 10**18:.4f}")


def _print_round(r: RoundResult, names: dict[str, str], seconds: float) -> None:
    print(f"round {r.round}: validation loss {r.val_loss_before:.4f} -> {r.val_loss_after:.4f} "
          f"({seconds:.1f} s)")  # fmt: skip
    for miner, v in sorted(r.verdicts.items(), key=lambda kv: names.get(kv[0], kv[0])):
        what = "accepted" if v.accepted else f"excluded: {v.reason}"
        gains = f" (gain val {v.gains.val:+.3f}, own {v.gains.own:+.3f})" if v.gains is not None else ""
        detail = f" ({v.detail})" if not v.accepted and v.detail and v.gains is None else ""
        print(f"  {names.get(miner, miner):9} {what}{gains}{detail}", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--inner-steps", type=int, default=20)
    ap.add_argument("--scheme", default="int2", choices=["int8", "int4", "int2", "topk", "none"])
    ap.add_argument("--round-seconds", type=float, default=120.0, help="deadline of each round")
    ap.add_argument("--texts", type=int, default=60, help="texts per domain")
    ap.add_argument("--datasets", type=Path, default=SHARED_DATASETS)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        world = build_world(Path(tmp) / "world", args.datasets, texts=args.texts, shards_per_domain=3)
        results, core, names = trio.run(run_network, world, Path(tmp), args.rounds, args.inner_steps,
                                        args.scheme, int(args.round_seconds * 1000))  # fmt: skip
    print("ratings (OpenSkill ordinal, best first):")
    for miner, rating in core.ratings.leaderboard(KIND):
        print(f"  {names.get(miner, miner):9} {rating.ordinal:8.3f}")
    bad = [a for a, n in names.items() if n in ("noise", "liar")]
    fell = results[-1].val_loss_after < results[0].val_loss_before
    bad_out = all(m in r.verdicts and not r.verdicts[m].accepted for r in results for m in bad)
    if not (fell and bad_out):
        print(f"FAILED: loss fell: {fell}; noise and liar excluded every round: {bad_out}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
