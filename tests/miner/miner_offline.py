"""A miner service with no network, for driving its task steps in unit tests: the blob store is a dict
of local files, gossip is a list, the task announcement a real signed one."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from miner.config import MinerConfig
from miner.db import MinerDB, TaskRow
from miner.service import MinerService
from node.store import Store
from p2p.config import P2PConfig
from protocol.encoding import encode
from protocol.messages import TaskAnnouncement
from protocol.signing import Domain, sign
from wallet.signer import LocalSigner

DOMAIN = Domain(chain_id=1337, verifying_contract="0x" + "11" * 20, salt=b"\x01" * 32)
TASK_ID = "0x" + "01" * 32
BASE, DATA = "aa" * 32, "bb" * 32


def offline_service(work: Path, cfg: MinerConfig, blobs: dict[str, Path]) -> tuple[MinerService, list[Any]]:
    """(service, events emitted, published gossip appended to them); ``blobs``: hash -> local file."""
    events: list[Any] = []

    async def fetch(*_args: Any) -> None:
        return None

    async def publish(message: Any) -> None:
        events.append(message)

    p2p = SimpleNamespace(
        config=P2PConfig(),
        blobs=SimpleNamespace(fetch=fetch),
        gossip=SimpleNamespace(publish=publish),
        store=SimpleNamespace(
            pin=lambda _h: None, path=lambda h: blobs[h], put_file=lambda *_a, **_k: "cc" * 32
        ),
        host=SimpleNamespace(get_network=lambda: SimpleNamespace(get_connections=lambda: [])),
    )
    work.mkdir(parents=True, exist_ok=True)
    svc = MinerService(cfg, p2p, DOMAIN, LocalSigner.create(), work)
    svc.core = SimpleNamespace(emit=events.append)  # type: ignore[assignment]
    svc.db = MinerDB(Store(work / "store.sqlite"))
    return svc, events


def add_task(
    svc: MinerService, phase: str, commit_by: float, base_size: int = 1, task_id: str = TASK_ID
) -> TaskRow:
    """A task of a real signed announcement in ``phase``, committing by ``commit_by`` (unix s)."""
    validator = LocalSigner.create()
    ann = TaskAnnouncement(
        task_id=bytes.fromhex(task_id[2:]),
        validator=validator.address,
        kind="instruct",
        model_ref="tiny",
        base_model_sha256=bytes.fromhex(BASE),
        base_model_size=base_size,
        train_data_sha256=bytes.fromhex(DATA),
        train_data_size=1,
        min_ram_mb=0,
        min_gpu_mb=0,
        est_tokens=1000,
        est_gflop=1,
        join_by=1,
        commit_by=int(commit_by * 1000),
        reveal_by=int(commit_by * 1000) + 60_000,
        eval_metrics=("loss",),
        test_weight_bps=10_000,
        synthetic_weight_bps=0,
        max_artifact_bytes=50_000_000,
        reward_weight_e9=1_000_000_000,
        test_split_hash=b"\x02" * 32,
        pool_size=3,
        params_json="{}",
        issued_at=1,
    )
    assert svc.db is not None
    signed = encode(sign(ann, DOMAIN, validator))
    svc.db.add_task(
        task_id, validator.address, "peer", "instruct", signed, True, "fits", 1.0, commit_by, commit_by + 60
    )
    svc.db.update(task_id, phase=phase)
    task = svc.db.task(task_id)
    assert task is not None
    return task
