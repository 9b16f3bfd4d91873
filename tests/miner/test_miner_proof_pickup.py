"""The rewards loop's proof pickup: one request per validator and epoch, on the task's validator peer,
or, for a receipt without a task here (a DiLoCo round's), on the peer bound to the receipt's
validator address; paid receipts only, and none whose proof is already held."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import trio
from miner_offline import add_task, offline_service

from miner.config import MinerConfig
from protocol.routes import PROOF_PICKUP

ROUND_VALIDATOR = "0x" + "7e" * 20


def test_proofs_are_asked_once_per_validator_and_epoch_also_for_round_receipts(tmp_path: Path) -> None:
    svc, _events = offline_service(tmp_path, MinerConfig(), {})
    assert svc.db is not None
    task = add_task(svc, "revealed", commit_by=100.0)
    svc.p2p.peerbook = SimpleNamespace(peer_of=lambda a: "peer-round" if a == ROUND_VALIDATOR else None)
    add = svc.db.add_receipt
    add(task.id, task.validator, 3, 1, 2, 10, "r1", b"x")
    add("0x" + "02" * 32, ROUND_VALIDATOR, 3, 1, 2, 5, "r2", b"x")  # round receipts: no task here
    add("0x" + "03" * 32, ROUND_VALIDATOR, 3, 2, 2, 4, "r3", b"x")  # same validator and epoch
    add("0x" + "04" * 32, ROUND_VALIDATOR, 4, 1, 2, 0, "r4", b"x")  # nothing paid: no proof to ask for
    add("0x" + "05" * 32, "0x" + "99" * 20, 3, 1, 2, 5, "r5", b"x")  # validator peer unknown: skipped
    asked: list[tuple[str, str, bytes]] = []

    async def request(peer: str, route: str, payload: bytes) -> bytes:
        asked.append((peer, route, payload))
        return b"[]"

    svc.request = request  # type: ignore[method-assign]
    trio.run(svc._pickup_proofs)
    me = bytes.fromhex(svc.address[2:])
    epoch3 = me + (3).to_bytes(8, "big")
    assert sorted(asked) == sorted(
        [(task.validator_peer, PROOF_PICKUP, epoch3), ("peer-round", PROOF_PICKUP, epoch3)]
    )


def test_a_failing_validator_does_not_stop_the_others(tmp_path: Path) -> None:
    svc, _events = offline_service(tmp_path, MinerConfig(), {})
    assert svc.db is not None
    svc.p2p.peerbook = SimpleNamespace(peer_of=lambda a: "peer-" + a[2:4])
    svc.db.add_receipt("0x" + "02" * 32, "0x" + "aa" * 20, 1, 1, 1, 5, "r1", b"x")
    svc.db.add_receipt("0x" + "03" * 32, "0x" + "bb" * 20, 1, 1, 1, 5, "r2", b"x")
    asked: list[str] = []

    async def request(peer: str, route: str, payload: bytes) -> Any:
        asked.append(peer)
        if peer == "peer-aa":
            raise ConnectionError("gone")
        return b"[]"

    svc.request = request  # type: ignore[method-assign]
    trio.run(svc._pickup_proofs)
    assert sorted(asked) == ["peer-aa", "peer-bb"]
