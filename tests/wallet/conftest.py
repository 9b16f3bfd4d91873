"""Fixtures of the wallet tests: cheap scrypt, and an embedded chain with the contracts deployed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from wallet_fixtures import CHEAP_N, ETHER, PARAMS, ChainEnv

from wallet.chain import ChainClient
from wallet.devchain import EmbeddedChain
from wallet.registry import deploy
from wallet.signer import LocalSigner


@pytest.fixture
def cheap_n() -> int:
    """scrypt N for tests (production uses 2^18, ~1 s per operation)."""
    return CHEAP_N


@pytest.fixture(scope="module")
def chain_env_module() -> ChainEnv:
    chain = EmbeddedChain()
    governance = LocalSigner.create()
    accounts = [LocalSigner.create() for _ in range(4)]
    for signer in (governance, *accounts):
        chain.fund(signer.address, 1000 * ETHER)
    deployment = deploy(ChainClient.embedded(chain, governance), PARAMS)
    v1, v2, miner, relayer = accounts
    return ChainEnv(chain, deployment, PARAMS, governance, v1, v2, miner, relayer)


@pytest.fixture
def chain_env(chain_env_module: ChainEnv) -> Iterator[ChainEnv]:
    """The module's chain, rolled back to its freshly deployed state after each test."""
    snapshot = chain_env_module.chain.tester.take_snapshot()
    yield chain_env_module
    chain_env_module.chain.tester.revert_to_snapshot(snapshot)
