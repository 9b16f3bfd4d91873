"""Valid sample messages of every registered type, and a tiny in-test EIP-712 signer."""

from __future__ import annotations

import hashlib
from typing import Any

from eth_account import Account
from eth_account.messages import encode_typed_data

from protocol import messages as m
from protocol.base import Message
from protocol.signing import Domain

PEER_ID = "12D3KooWDpJ7As7BWAwRMfu1VU2WJqNq6XvHgjHQeF8mZ4qWdJyK"
T0 = 1_790_000_000_000  # a fixed unix-ms time so vectors are reproducible


def h(label: str) -> bytes:
    """A deterministic 32-byte hash for sample fields."""
    return hashlib.sha256(label.encode()).digest()


class KeySigner:
    """SignerLike over a raw eth_account key (tests only)."""

    def __init__(self, key: bytes | None = None) -> None:
        self._account = Account.from_key(key) if key is not None else Account.create()

    @property
    def address(self) -> str:
        return str(self._account.address)

    def sign_typed_data(self, full_message: dict[str, Any]) -> bytes:
        signable = encode_typed_data(full_message=full_message)
        return bytes(self._account.sign_message(signable).signature)


def domain(chain_id: int = 131277322940537, salt_label: str = "devnet") -> Domain:
    return Domain(chain_id, "0x" + "5a" * 20, h(salt_label))


def samples(signer: str, other: str) -> dict[str, Message]:
    """One valid message of each type, signed-by field = ``signer``; ``other`` is the counterpart."""
    task = h("task-1")
    return {
        "Identity": m.Identity(
            peer_id=PEER_ID,
            address=signer,
            payout_address=other,
            roles=m.ROLE_MINER,
            addrs=("/ip4/127.0.0.1/tcp/4001",),
            cpu_cores=2,
            ram_mb=24_000,
            gpu_name="",
            gpu_mb=0,
            est_gflops=40,
            software_version="magnet/0.1.0",
            protocol_version=1,
            issued_at=T0,
        ),
        "Heartbeat": m.Heartbeat(
            address=signer,
            seq=7,
            status="training",
            load_bps=8_500,
            active_tasks=1,
            uptime_s=3_600,
            issued_at=T0,
        ),
        "TaskAnnouncement": m.TaskAnnouncement(
            task_id=task,
            validator=signer,
            kind="instruct",
            model_ref="tiny-llama-0.9m",
            base_model_sha256=h("base"),
            base_model_size=3_600_000,
            train_data_sha256=h("data"),
            train_data_size=250_000,
            min_ram_mb=2_000,
            min_gpu_mb=0,
            est_tokens=120_000,
            est_gflop=650,
            join_by=T0 + 10_000,
            commit_by=T0 + 60_000,
            reveal_by=T0 + 90_000,
            eval_metrics=("loss",),
            test_weight_bps=7_000,
            synthetic_weight_bps=3_000,
            max_artifact_bytes=50_000_000,
            reward_weight_e9=1_500_000_000,
            test_split_hash=h("test-split"),
            pool_size=4,
            params_json='{"epochs":1}',
            issued_at=T0,
        ),
        "JoinRequest": m.JoinRequest(
            task_id=task,
            miner=signer,
            peer_id=PEER_ID,
            cpu_cores=8,
            ram_mb=16_000,
            gpu_name="RTX 3060",
            gpu_mb=12_288,
            est_gflops=9_000,
            issued_at=T0,
        ),
        "Assignment": m.Assignment(
            task_id=task,
            validator=signer,
            miner=other,
            accepted=False,
            reason="pool is full",
            pool_size=4,
            commit_by=T0 + 60_000,
            reveal_by=T0 + 90_000,
            issued_at=T0,
        ),
        "Commitment": m.Commitment(
            task_id=task,
            miner=signer,
            commitment=m.commitment_hash(task, signer, h("artifact"), h("salt")),
            issued_at=T0,
        ),
        "Reveal": m.Reveal(
            task_id=task,
            miner=signer,
            artifact_hash=h("artifact"),
            artifact_size=1_234_567,
            salt=h("salt"),
            issued_at=T0,
        ),
        "TaskStatus": m.TaskStatus(
            task_id=task,
            validator=signer,
            status="delayed",
            reason="too few miners joined",
            next_deadline=T0 + 30_000,
            issued_at=T0,
        ),
        "Receipt": m.Receipt(
            task_id=task,
            miner=other,
            payout=other,
            validator=signer,
            rank=2,
            pool_size=4,
            test_loss_e9=2_345_678_901,
            synthetic_loss_e9=2_500_000_000,
            score_e9=750_000_000,
            amount=12 * 10**18 + 1,
            epoch=3,
            nonce=42,
            issued_at=T0,
        ),
        "EpochRecord": m.EpochRecord(
            epoch=3,
            validator=signer,
            merkle_root=h("root"),
            epoch_file_sha256=h("epoch-file"),
            total_amount=10**24,
            receipt_count=1_000,
            issued_at=T0,
        ),
        "ReceiptProof": m.ReceiptProof(
            epoch=3,
            validator=signer,
            receipt_hash=h("leaf"),
            payout=other,
            amount=12 * 10**18,
            proof=(h("p1"), h("p2"), h("p3")),
            root=h("root"),
            issued_at=T0,
        ),
    }
