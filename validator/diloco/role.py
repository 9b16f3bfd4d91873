"""DiLoCo rounds run by the validator service (``[diloco] enabled = true``).

``ValidatorRounds`` builds the run's world (base model, shards, held-out batch; only the built-in
two-domain tiny Llama, ``tiny-world``, so far), a ``DilocoValidator`` and a ``NetworkValidator`` on
the service's own p2p host, store and signer, then runs ``rounds`` rounds: each closed round's
receipts go to ``val_receipt`` (the service's epoch loop posts their root and makes their proofs)
and the run's undelivered receipts and proofs are sent between rounds. The round state lives in
``<validator data>/diloco`` so a restarted validator continues the run.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

from protocol.signing import SignerLike
from trainer.config import DilocoConfig
from trainer.diloco.config import CompressionConfig, InnerConfig, check_base_model
from trainer.diloco.data import datasets_folder
from validator.db import ValidatorDB
from validator.diloco.network import NetworkValidator
from validator.diloco.receipts import RoundRewards
from validator.diloco.rounds import DilocoValidator, RoundConfig, RoundResult

log = logging.getLogger("magnet.diloco")
WEI = 10**18


class ValidatorRounds:
    """The validator side of a DiLoCo run inside ``ValidatorService``."""

    def __init__(self, cfg: DilocoConfig, db: ValidatorDB, signer: SignerLike, folder: Path,
                 epoch_of: Callable[[], int]) -> None:  # fmt: skip
        CompressionConfig(scheme=cfg.compression)  # a bad scheme or base model fails here, before any work
        check_base_model(cfg.base_model)
        datasets_folder(cfg.datasets)  # the shards' files are there
        self.cfg, self.db, self.signer, self.folder, self.epoch_of = cfg, db, signer, folder, epoch_of
        self.net: NetworkValidator | None = None
        self.results: list[RoundResult] = []
        self.ready = trio.Event()
        self.epoch = 0  # the chain's epoch, read (in a thread) before each round; receipts carry it

    async def allow_push(self, peer: str, blob_hash: str, size: int) -> bool:
        return self.net is not None and await self.net.allow_push(peer, blob_hash, size)

    def _build(self) -> NetworkValidator:
        cfg = self.cfg
        from trainer.diloco.world import run_world  # torch and transformers: only when rounds are on

        world = run_world(cfg, self.folder / "world")
        inner = InnerConfig(inner_steps=cfg.inner_steps)
        rounds = RoundConfig(round_ms=round(cfg.round_s * 1000), inner=inner,
                             compression=CompressionConfig(scheme=cfg.compression))  # fmt: skip
        state = self.folder / "state"
        state.mkdir(parents=True, exist_ok=True)
        core = DilocoValidator(world.model, dict(world.params), world.shards, world.val, rounds,
                               _secret(self.folder / "secret"))  # fmt: skip
        rewards = RoundRewards(emission=round(cfg.emission_per_round * WEI), epoch_of=lambda _ms: self.epoch)
        return NetworkValidator(core, self.signer, state_dir=state, rewards=rewards, db=self.db)

    async def run(self, p2p: Any) -> None:
        """Build the run (in a worker thread), then run its rounds on ``p2p``."""
        net = await trio.to_thread.run_sync(self._build)
        net.attach(p2p)
        self.net = net
        self.ready.set()
        log.info("diloco run %s: %s rounds of H=%d", net.task_id.hex()[:12], self.cfg.rounds or "endless",
                 self.cfg.inner_steps)  # fmt: skip
        await trio.sleep(2.0)  # miners subscribed to the topic see the first round (gossip mesh)
        while not self.cfg.rounds or net.core.round < self.cfg.rounds:
            self.epoch = await trio.to_thread.run_sync(self.epoch_of)
            result = await net.run_round(expected=self.cfg.expected or None)
            self.results.append(result)
            accepted = sum(1 for v in result.verdicts.values() if v.accepted)
            log.info("diloco round %d closed: loss %.4f -> %.4f, %d accepted", net.core.round - 1,
                     result.val_loss_before, result.val_loss_after, accepted)  # fmt: skip
            await net.deliver_pending()
        while True:  # the run is over: proofs of its receipts still go out as epochs close
            await trio.sleep(2.0)
            await net.deliver_pending()


def _secret(path: Path) -> bytes:
    """The validator's private seed of the run (its random shard draws), kept across restarts."""
    if not path.exists():
        path.write_bytes(os.urandom(32))
        path.chmod(0o600)
    return path.read_bytes()
