"""Helpers to run several real p2p services on 127.0.0.1 inside one trio run."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import trio
from libp2p.peer.peerinfo import PeerInfo

from p2p.config import P2PConfig
from p2p.service import LocalPeer, P2PService
from p2p.validation import AllowListAuthorizer
from protocol.messages import ROLE_MINER, Commitment, Identity, TaskStatus
from protocol.signing import Domain, SignedMessage, sign
from wallet.signer import LocalSigner

DOMAIN = Domain(chain_id=31337, verifying_contract="0x" + "11" * 20, salt=bytes(range(32)))


def test_config(**changes: object) -> P2PConfig:
    config = P2PConfig(listen_addrs=["/ip4/127.0.0.1/tcp/0"], reconnect_interval=0.5,
                       identity_fetch_timeout=2.0, publish_rate=50.0, publish_burst=50)
    for key, value in changes.items():
        setattr(config, key, value)
    return config


def make_service(root: Path, name: str, validators: list[str] | None = None, roles: int = ROLE_MINER,
                 signer: LocalSigner | None = None, **config_changes: object) -> P2PService:
    signer = signer or LocalSigner.create()
    return P2PService(test_config(**config_changes), root / name, DOMAIN, LocalPeer(signer, roles),
                      authorizer=AllowListAuthorizer(validators or []))


async def start(nursery: trio.Nursery, service: P2PService) -> P2PService:
    await nursery.start(service.run)
    return service


async def connect(a: P2PService, b: P2PService) -> None:
    await a.host.connect(PeerInfo(b.peer_id, b.host.get_addrs()))


async def wait_for(condition: Callable[[], bool], timeout: float, what: str,
                   explain: Callable[[], object] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            detail = f": {explain()}" if explain is not None else ""
            raise AssertionError(f"timed out after {timeout} s waiting for {what}{detail}")
        await trio.sleep(0.05)



def now_ms() -> int:
    return int(time.time() * 1000)


def commitment(signer: LocalSigner, issued_at: int | None = None, label: int = 1) -> SignedMessage:
    msg = Commitment(task_id=bytes([label]) * 32, miner=signer.address, commitment=b"\x02" * 32,
                     issued_at=now_ms() if issued_at is None else issued_at)
    return sign(msg, DOMAIN, signer)


def identity(signer: LocalSigner, peer_id: str, issued_at: int | None = None) -> SignedMessage:
    msg = Identity(peer_id=peer_id, address=signer.address, payout_address=signer.address, roles=ROLE_MINER,
                   addrs=(), cpu_cores=2, ram_mb=1024, gpu_name="", gpu_mb=0, est_gflops=1,
                   software_version="magnet/test", protocol_version=1,
                   issued_at=now_ms() if issued_at is None else issued_at)
    return sign(msg, DOMAIN, signer)


def task_status(signer: LocalSigner) -> SignedMessage:
    msg = TaskStatus(task_id=b"\x03" * 32, validator=signer.address, status="open", reason="",
                     next_deadline=0, issued_at=now_ms())
    return sign(msg, DOMAIN, signer)
