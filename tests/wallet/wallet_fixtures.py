"""Shared helpers of the wallet tests (a unique module name: every tests/<pkg>/conftest.py is "conftest")."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from protocol.messages import Receipt
from protocol.signing import Domain
from wallet.chain import ChainClient
from wallet.devchain import EmbeddedChain
from wallet.registry import Deployment, Registry, RegistryParams
from wallet.signer import LocalSigner

CHEAP_N = 1 << 10
ETHER = 10**18
# Block time follows the wall clock: epochs of an hour never roll over while a module runs, so
# tests move between epochs only by time travel.
PARAMS = RegistryParams(
    epoch_length=3600, emission_per_epoch=1000 * ETHER, min_stake=ETHER, unstake_delay=3600
)


@dataclass
class ChainEnv:
    """An embedded chain with the registry deployed and funded throwaway accounts."""

    chain: EmbeddedChain
    deployment: Deployment
    params: RegistryParams
    governance: LocalSigner = field(default_factory=LocalSigner.create)
    v1: LocalSigner = field(default_factory=LocalSigner.create)
    v2: LocalSigner = field(default_factory=LocalSigner.create)
    miner: LocalSigner = field(default_factory=LocalSigner.create)
    relayer: LocalSigner = field(default_factory=LocalSigner.create)

    def client(self, signer: LocalSigner | None = None) -> ChainClient:
        return ChainClient.embedded(self.chain, signer, receipt_timeout=10.0)

    def registry(self, signer: LocalSigner | None = None) -> Registry:
        return Registry(self.client(signer), self.deployment.registry)

    def advance_to_epoch(self, epoch: int) -> None:
        """Mine a block at the start of ``epoch`` (plus one second)."""
        reg = self.registry()
        now = reg.client.block_timestamp()
        target = reg.epoch_start(epoch) + 1
        if target > now:
            self.chain.increase_time(target - now)


def make_receipt(
    validator: str, miner: str, amount: int, epoch: int = 0, nonce: int = 0, **fields: object
) -> Receipt:
    """A valid Receipt with defaults for the fields a test does not care about."""
    values: dict[str, object] = {
        "task_id": os.urandom(32),
        "miner": miner,
        "payout": miner,
        "validator": validator,
        "rank": 1,
        "pool_size": 3,
        "test_loss_e9": 2_500_000_000,
        "synthetic_loss_e9": 2_700_000_000,
        "score_e9": 1_000_000_000,
        "amount": amount,
        "epoch": epoch,
        "nonce": nonce,
        "issued_at": 1_700_000_000_000,
    }
    values.update(fields)
    return Receipt(**values)  # type: ignore[arg-type]


def make_domain(
    chain_id: int = 131277322940537, registry: str = "0x" + "ab" * 20, salt: bytes = b"\x07" * 32
) -> Domain:
    return Domain(chain_id, registry, salt)
