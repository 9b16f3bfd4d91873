"""Valid sample messages of every registered type, and a tiny in-test EIP-712 signer."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from eth_account import Account
from eth_account.messages import encode_typed_data
from hypothesis import strategies as st

from protocol import messages as m
from protocol import retired
from protocol.base import Message
from protocol.schema import FieldSpec, int_bounds
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
            index=41,
            receipt_hash=h("leaf"),
            payout=other,
            amount=12 * 10**18,
            proof=(h("p1"), h("p2"), h("p3")),
            root=h("root"),
            issued_at=T0,
        ),
        # Retired versions, keyed "<TYPE>V<version>" (still decodable; protocol/retired.py).
        "ReceiptProofV1": retired.ReceiptProofV1(
            epoch=3,
            validator=signer,
            receipt_hash=h("leaf"),
            payout=other,
            amount=12 * 10**18,
            proof=(h("p1"), h("p2"), h("p3")),
            root=h("root"),
            issued_at=T0,
        ),
        "DilocoRound": m.DilocoRound(
            task_id=task,
            validator=signer,
            round=2,
            model_sha256=h("global-2"),
            model_size=1_234_567,
            prev_model_sha256=h("global-1"),
            shard_seed=h("shard-seed"),
            shard_count=64,
            inner_steps=50,
            compression="topk",
            topk_bps=1_000,
            deadline=T0 + 600_000,
            inner_lr_e9=3_000_000,
            batch_size=8,
            block=256,
            issued_at=T0,
        ),
        "DilocoRoundV1": retired.DilocoRoundV1(
            task_id=task,
            validator=signer,
            round=2,
            model_sha256=h("global-2"),
            model_size=1_234_567,
            prev_model_sha256=h("global-1"),
            shard_seed=h("shard-seed"),
            shard_count=64,
            inner_steps=50,
            compression="topk",
            topk_bps=1_000,
            deadline=T0 + 600_000,
            issued_at=T0,
        ),
        "DilocoContribution": m.DilocoContribution(
            task_id=task,
            miner=signer,
            round=2,
            model_sha256=h("global-2"),
            shard=17,
            delta_sha256=h("delta"),
            delta_size=140_000,
            tokens=51_200,
            issued_at=T0,
        ),
    }


def value_strategy(spec: FieldSpec) -> st.SearchStrategy[Any]:
    """Any value valid for the field alone (cross-field rules may still reject it)."""
    element = atomic_strategy(spec, spec.element)
    if spec.is_array:
        return st.lists(element, max_size=min(spec.max_items, 4)).map(tuple)
    return element


def atomic_strategy(spec: FieldSpec, type_: str) -> st.SearchStrategy[Any]:
    if type_ == "address":
        return st.binary(min_size=20, max_size=20).map(lambda b: "0x" + b.hex())
    if type_ == "bool":
        return st.booleans()
    if type_ == "bytes32":
        return st.binary(min_size=32, max_size=32)
    if type_ == "bytes":
        return st.binary(max_size=64)
    if type_ == "string":
        if spec.choices:
            return st.sampled_from(spec.choices)
        if spec.pattern:
            return st.from_regex(spec.pattern, fullmatch=True)
        return st.text(st.characters(min_codepoint=32, exclude_characters="\x7f", exclude_categories=("Cs",)),
                       max_size=min(20, spec.max_len // 4))  # fmt: skip
    low, high = int_bounds(type_)
    return st.integers(low, high)


def make_consistent(type_name: str, values: dict[str, Any]) -> dict[str, Any]:
    """Adjust independently drawn field values so the type's cross-field rules hold."""
    v = dict(values)
    if type_name == "Identity":
        v["roles"] &= m.ALL_ROLES
        v["protocol_version"] = max(1, v["protocol_version"])
    elif type_name == "Heartbeat":
        v["load_bps"] %= m.BPS + 1
    elif type_name == "TaskAnnouncement":
        v["join_by"], v["commit_by"], v["reveal_by"] = sorted((v["join_by"], v["commit_by"], v["reveal_by"]))
        v["test_weight_bps"] %= m.BPS + 1
        v["synthetic_weight_bps"] = m.BPS - v["test_weight_bps"]
        v["pool_size"] = max(1, v["pool_size"])
        v["eval_metrics"] = v["eval_metrics"] or ("loss",)
        v["max_artifact_bytes"] = max(1, v["max_artifact_bytes"])
        v["params_json"] = json.dumps({"note": v["params_json"][:100]}, ensure_ascii=False)
    elif type_name == "Assignment":
        v["commit_by"], v["reveal_by"] = sorted((v["commit_by"], v["reveal_by"]))
        v["reason"] = v["reason"] or ("" if v["accepted"] else "refused")
    elif type_name == "TaskStatus" and v["status"] == "delayed":
        v["next_deadline"] = max(1, v["next_deadline"])
    elif type_name == "Receipt":
        v["rank"] = v["rank"] % (v["pool_size"] + 1)
    elif type_name == "DilocoRound":
        v["shard_count"] = max(1, v["shard_count"])
        v["inner_steps"] = max(1, v["inner_steps"])
        if v["round"] == 0:
            v["prev_model_sha256"] = m.ZERO32
        elif v["prev_model_sha256"] == m.ZERO32:
            v["prev_model_sha256"] = b"\x01" * 32
        v["topk_bps"] = 1 + v["topk_bps"] % m.BPS if v["compression"] == "topk" else 0
        if "block" in v:  # version 2
            v["inner_lr_e9"] = max(1, v["inner_lr_e9"])
            v["batch_size"] = max(1, v["batch_size"])
            v["block"] = 4 * (1 + v["block"] % 1024)
    elif type_name == "DilocoContribution":
        v["delta_size"] = max(1, v["delta_size"])
    return v
