"""ChainClient behaviour the happy paths do not reach: retries, timeouts, nonces, config."""

from __future__ import annotations

from typing import Any

import pytest
import requests
from wallet_fixtures import ETHER, ChainEnv
from web3 import Web3
from web3.providers.base import BaseProvider
from web3.types import RPCEndpoint, RPCResponse

from node.events import Event, EventBus
from wallet.chain import ChainClient
from wallet.chainerrors import InsufficientFunds, RevertError, TxTimeout
from wallet.config import ChainConfig
from wallet.devchain import EmbeddedChain
from wallet.devnet import params_from_config
from wallet.events import TransactionFailed, TransactionMined
from wallet.registry import Registry


class FlakyProvider(BaseProvider):
    """Drops the first ``failures`` requests with a connection error (unit-test double)."""

    def __init__(self, chain: EmbeddedChain, failures: int) -> None:
        super().__init__()
        self.inner = chain.provider()
        self.failures = failures

    def make_request(self, method: RPCEndpoint, params: Any) -> RPCResponse:
        if self.failures > 0:
            self.failures -= 1
            raise requests.ConnectionError("connection reset by peer")
        return self.inner.make_request(method, params)


def test_transient_errors_are_retried(chain_env: ChainEnv) -> None:
    provider = FlakyProvider(chain_env.chain, failures=2)
    client = ChainClient(Web3(provider), chain_env.v1, retries=3, retry_delay=0.01)
    assert client.chain_id == chain_env.chain.chain_id
    provider.failures = 2
    assert client.balance(chain_env.v1.address) == 1000 * ETHER


def test_unmined_transaction_times_out_with_advice(chain_env: ChainEnv) -> None:
    chain_env.chain.tester.disable_auto_mine_transactions()
    try:
        client = ChainClient.embedded(chain_env.chain, chain_env.v1, receipt_timeout=0.3)
        with pytest.raises(TxTimeout, match=r"not mined within 0\.3 s; it may still be pending"):
            Registry(client, chain_env.deployment.registry).register(ETHER)
    finally:
        chain_env.chain.tester.enable_auto_mine_transactions()


def test_nonces_advance_across_clients_of_one_key(chain_env: ChainEnv) -> None:
    first, second = chain_env.client(chain_env.v1), chain_env.client(chain_env.v1)
    for _ in range(3):
        first.send_value(chain_env.miner.address, 1)
        second.send_value(chain_env.miner.address, 1)
    assert first.w3.eth.get_transaction_count(chain_env.v1.address) == 6


def test_registry_params_from_config() -> None:
    params = params_from_config(
        ChainConfig(epoch_length=10.4, emission_per_epoch=5, min_stake=0.5, unstake_delay=30.0)
    )
    assert (params.epoch_length, params.emission_per_epoch, params.min_stake, params.unstake_delay) == (
        10,
        5 * ETHER,
        ETHER // 2,
        30,
    )


def test_transactions_are_announced_on_the_event_bus(chain_env: ChainEnv) -> None:
    bus = EventBus()
    seen: list[Event] = []
    bus.subscribe(seen.append)
    client = ChainClient(Web3(chain_env.chain.provider()), chain_env.v1, bus=bus)
    registry = Registry(client, chain_env.deployment.registry)
    registry.register(ETHER)
    with pytest.raises(RevertError):
        registry.register(ETHER)
    with pytest.raises(InsufficientFunds):
        client.send_value(chain_env.miner.address, 10**6 * ETHER)  # more than it holds
    mined, *failed = seen
    assert isinstance(mined, TransactionMined) and mined.what == "register" and mined.gas_used > 21000
    assert mined.sender == chain_env.v1.address
    assert [type(e) for e in failed] == [TransactionFailed, TransactionFailed]
    assert "AlreadyRegistered" in failed[0].reason and "fund the account" in failed[1].reason  # type: ignore[attr-defined]


def test_a_stale_nonce_is_re_read_and_the_transaction_resent(chain_env: ChainEnv) -> None:
    client = chain_env.client(chain_env.v1)
    client.send_value(chain_env.miner.address, 1)
    real = client._take_nonce
    stale_used = False

    def first_stale(address: str) -> int:
        nonlocal stale_used
        if not stale_used:
            stale_used = True
            return 0  # what a racing second client of the same key would have read
        return real(address)

    client._take_nonce = first_stale  # type: ignore[method-assign]
    result = client.send_value(chain_env.miner.address, 1)
    assert result.gas_used == 21000 and stale_used
    assert client.w3.eth.get_transaction_count(chain_env.v1.address) == 2
