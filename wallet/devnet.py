"""The devnet chain in one call: an embedded chain, the contracts deployed, validators registered,
and its JSON-RPC served on 127.0.0.1 for other processes.

    with start_embedded_chain([validator_signer]) as devnet:
        profile = NetworkProfile.new_devnet(devnet.chain_id, devnet.rpc_url, devnet.deployment.registry,
                                            devnet.deployment.token, validators=[validator_signer.address])

Epochs follow block time: ``advance_to_epoch`` mines a block at an epoch's start, so a devnet or a
test need not wait out a real epoch (anvil answers the same ``evm_increaseTime`` through
``ChainClient.advance_time``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from types import TracebackType

from wallet.chain import ChainClient
from wallet.config import ChainConfig
from wallet.devchain import EmbeddedChain
from wallet.registry import WEI_PER_TOKEN, Deployment, Registry, RegistryParams, deploy
from wallet.rpcserver import RpcServer
from wallet.signer import LocalSigner

WEI = 10**18
DEFAULT_FUNDING = 100 * WEI


def params_from_config(config: ChainConfig) -> RegistryParams:
    """Registry constructor parameters from the ``[chain]`` config section."""
    return RegistryParams(
        epoch_length=max(1, round(config.epoch_length)),
        emission_per_epoch=config.emission_per_epoch * WEI_PER_TOKEN,
        min_stake=round(config.min_stake * WEI),
        unstake_delay=max(0, round(config.unstake_delay)),
    )


@dataclass
class DevnetChain:
    """A running embedded chain with the registry deployed (and served, unless ``serve=False``)."""

    chain: EmbeddedChain
    deployment: Deployment
    params: RegistryParams
    governance: LocalSigner
    server: RpcServer | None = None
    validators: list[str] = field(default_factory=list)

    @property
    def chain_id(self) -> int:
        return self.chain.chain_id

    @property
    def rpc_url(self) -> str:
        """The served JSON-RPC URL ("" when not served)."""
        return self.server.url if self.server else ""

    def client(self, signer: LocalSigner | None = None, **kwargs: object) -> ChainClient:
        return ChainClient.embedded(self.chain, signer, **kwargs)

    def registry(self, signer: LocalSigner | None = None) -> Registry:
        return Registry(self.client(signer), self.deployment.registry)

    def fund(self, address: str, wei: int = DEFAULT_FUNDING) -> None:
        self.chain.fund(address, wei)

    def advance_to_epoch(self, epoch: int) -> None:
        """Mine a block one second into ``epoch`` (no-op if the chain is already past it)."""
        registry = self.registry()
        target = registry.epoch_start(epoch) + 1
        now = registry.client.block_timestamp()
        if target > now:
            self.chain.increase_time(target - now)

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None

    def __enter__(self) -> DevnetChain:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def start_embedded_chain(
    validators: Iterable[LocalSigner] = (),
    *,
    params: RegistryParams | None = None,
    stake: int = 10 * WEI,
    fund: Iterable[str] = (),
    fund_wei: int = DEFAULT_FUNDING,
    serve: bool = True,
    host: str = "127.0.0.1",
    port: int = 0,
) -> DevnetChain:
    """Start a chain, deploy the registry, fund and register ``validators``, fund ``fund``."""
    params = params or RegistryParams()
    chain = EmbeddedChain()
    governance = LocalSigner.create()
    chain.fund(governance.address, fund_wei)
    deployment = deploy(ChainClient.embedded(chain, governance), params)
    devnet = DevnetChain(chain, deployment, params, governance)
    for signer in validators:
        chain.fund(signer.address, fund_wei + stake)
        devnet.registry(signer).register(stake)
        devnet.validators.append(signer.address)
    for address in fund:
        chain.fund(address, fund_wei)
    if serve:
        devnet.server = RpcServer(chain, host, port).start()
    return devnet
