"""`[diloco] enabled`: the real ValidatorService runs rounds and real MinerServices join them, on
libp2p hosts on 127.0.0.1 with the embedded chain; round receipts reach the miners' receipt books,
the validator's epoch loop posts their root, the proofs reach the miners and their rewards loops
claim them."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import trio
from libp2p.peer.peerinfo import PeerInfo

from miner.config import MinerConfig
from miner.db import MinerDB
from miner.diloco_net import MinerRounds
from miner.service import MinerService
from node.store import Store
from p2p.config import P2PConfig
from p2p.service import LocalPeer, P2PService
from p2p.validation import AllowListAuthorizer
from protocol.messages import ROLE_MINER, ROLE_VALIDATOR
from protocol.signing import Domain
from trainer.config import DilocoConfig
from validator.config import ValidatorConfig
from validator.diloco.role import ValidatorRounds
from validator.service import ValidatorService, registry_access
from wallet.devnet import start_embedded_chain
from wallet.registry import RegistryParams
from wallet.signer import LocalSigner

SALT = b"diloco-services".ljust(32, b".")


def _p2p() -> P2PConfig:
    return P2PConfig(listen_addrs=["/ip4/127.0.0.1/tcp/0"], enable_mdns=False, reconnect_interval=0.5)


async def _wait(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await trio.sleep(0.1)


@pytest.mark.slow
def test_services_run_and_join_rounds_to_claimed_rewards(tmp_path: Path) -> None:
    v_signer = LocalSigner.create()
    miners = [LocalSigner.create() for _ in range(2)]
    params = RegistryParams(epoch_length=3600, emission_per_epoch=2 * 10**18)
    chain = start_embedded_chain([v_signer], params=params, fund=[m.address for m in miners], serve=False)
    domain = Domain(chain.chain_id, chain.deployment.registry, SALT)
    diloco = DilocoConfig(enabled=True, rounds=2, inner_steps=4, round_s=90.0, expected=2, texts=30)
    auth = AllowListAuthorizer([v_signer.address])
    v_p2p = P2PService(_p2p(), tmp_path / "v", domain, LocalPeer(v_signer, ROLE_VALIDATOR), authorizer=auth)
    validator = ValidatorService(
        ValidatorConfig(tick_s=0.2, epoch_poll_s=0.5, api_enabled=False), tmp_path / "validator", domain,
        v_signer, v_p2p, registry_access(chain.registry(v_signer), v_signer.address), own_p2p=True,
        diloco=diloco,
    )  # fmt: skip
    services: list[MinerService] = []
    for i, signer in enumerate(miners):
        p2p = P2PService(_p2p(), tmp_path / f"m{i}", domain, LocalPeer(signer, ROLE_MINER), authorizer=auth)
        rounds = MinerRounds(diloco, signer, v_signer.address, tmp_path / f"m{i}" / "diloco")
        services.append(MinerService(
            MinerConfig(speed_gflops=1.0, autostart=False), p2p, domain, signer, tmp_path / f"m{i}" / "work",
            own_p2p=True, registry=lambda s=signer: chain.registry(s), diloco=rounds,
        ))  # fmt: skip

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(validator.run, SimpleNamespace(store=Store(tmp_path / "v.sqlite")))
            for i, svc in enumerate(services):
                core: Any = SimpleNamespace(store=Store(tmp_path / f"m{i}.sqlite"), emit=lambda _e: None)
                await nursery.start(svc.run, core)
                await svc.p2p.host.connect(PeerInfo(v_p2p.peer_id, v_p2p.host.get_addrs()))
            await _wait(lambda: validator.rounds is not None and len(validator.rounds.results) == 2, 240,
                        "two rounds")  # fmt: skip
            results = validator.rounds.results
            assert results[-1].val_loss_after < results[0].val_loss_before
            addresses = sorted(s.address for s in miners)
            for r in results:  # both miners' contributions arrived over the network and helped
                assert sorted(m for m, v in r.verdicts.items() if v.accepted) == addresses
            books = [svc.db for svc in services]
            assert all(isinstance(db, MinerDB) for db in books)
            await _wait(lambda: all(len(db.receipts()) == 2 for db in books if db), 30, "receipts in books")
            chain.advance_to_epoch(1)  # the validator's epoch loop closes epoch 0: root, proofs
            await _wait(lambda: all(len(db.proofs()) == 2 for db in books if db), 60, "proofs in the books")
            chain.advance_to_epoch(2)  # claims open; the miners' rewards loops claim
            await _wait(lambda: all(not db.proofs(claimed=False) for db in books if db), 60, "claims")
            for db, signer in zip(books, miners, strict=True):
                assert db is not None
                held = sum(int(r["amount"]) for r in db.receipts())
                assert abs(chain.registry(signer).token_balance(signer.address) - held) <= 4
            await validator.stop()
            for svc in services:
                await svc.stop()

    trio.run(main)


def test_bad_diloco_settings_fail_at_start_with_what_to_set(tmp_path: Path) -> None:
    signer = LocalSigner.create()
    bad = [
        (DilocoConfig(enabled=True, base_model="llama-7b"), "base_model 'llama-7b' is not supported"),
        (DilocoConfig(enabled=True, compression="zip"), "scheme must be one of"),
        (DilocoConfig(enabled=True, datasets=str(tmp_path)), "set \\[diloco\\] datasets to a folder"),
    ]
    for cfg, words in bad:
        with pytest.raises(ValueError, match=words):
            MinerRounds(cfg, signer, signer.address, tmp_path)
        with pytest.raises(ValueError, match=words):
            ValidatorRounds(cfg, None, signer, tmp_path, lambda: 0)  # type: ignore[arg-type]  # no db needed
    with pytest.raises(ValueError, match="names no validator"):
        MinerRounds(DilocoConfig(enabled=True), signer, "", tmp_path)
