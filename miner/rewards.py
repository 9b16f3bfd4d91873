"""Receipts, proofs and claims on the miner's side.

A Receipt counts only when it is signed by the task's validator under this network's domain and
names this miner. A ReceiptProof counts only when its validator signed it, it matches a receipt we
hold, and it leads to the Merkle root that validator posted on chain. Then the reward is claimed
(anyone may claim; tokens always go to the payout address in the leaf), unless it was already:
``wallet.rewards.claim_proofs`` does that part, in batches.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from miner.db import MinerDB
from protocol.encoding import decode
from protocol.messages import Receipt, ReceiptProof, receipt_hash
from protocol.retired import RETIRED_PROOF_HINT, ReceiptProofV1
from protocol.signing import Domain, recover_signer
from wallet.epochs import check_proof_matches_receipt
from wallet.receipts import verify_receipt

log = logging.getLogger("magnet.miner")


class RewardRejected(ValueError):
    """A receipt or proof that does not verify; the message says why."""


@dataclass(frozen=True)
class AcceptedReceipt:
    task_id: str
    receipt: Receipt
    new: bool


def accept_receipt(db: MinerDB, payload: bytes, domain: Domain, miner: str) -> AcceptedReceipt:
    """Verify and store a signed Receipt (from the validator or a pickup)."""
    try:
        signed = decode(payload)
        verify_receipt(signed, domain)
    except Exception as exc:
        raise RewardRejected(f"receipt does not verify: {exc}") from None
    receipt = signed.message
    assert isinstance(receipt, Receipt)
    task_id = "0x" + receipt.task_id.hex()
    task = db.task(task_id)
    if receipt.miner != miner:
        raise RewardRejected("the receipt names another miner")
    if task is None or task.validator != receipt.validator:
        raise RewardRejected("the receipt is for a task this miner did not take with that validator")
    new = db.add_receipt(
        task_id,
        receipt.validator,
        receipt.epoch,
        receipt.rank,
        receipt.pool_size,
        receipt.amount,
        receipt_hash(receipt).hex(),
        payload,
    )
    if task.phase not in ("done", "given_up"):
        db.update(task_id, phase="done", reason=f"receipt: rank {receipt.rank} of {receipt.pool_size}")
    return AcceptedReceipt(task_id, receipt, new)


def accept_proof(db: MinerDB, payload: bytes, domain: Domain) -> tuple[ReceiptProof, bool]:
    """Check a signed ReceiptProof against the receipt we hold and store it (the chain check comes later)."""
    try:
        signed = decode(payload)
        signer = recover_signer(signed, domain)
    except Exception as exc:
        raise RewardRejected(f"proof does not verify: {exc}") from None
    proof = signed.message
    if isinstance(proof, ReceiptProofV1):
        raise RewardRejected(f"epoch {proof.epoch}, validator {proof.validator}: {RETIRED_PROOF_HINT}")
    if not isinstance(proof, ReceiptProof) or signer != proof.validator:
        raise RewardRejected("not a ReceiptProof signed by its validator")
    held = db.receipt_by_hash(proof.receipt_hash.hex())
    if held is None:
        raise RewardRejected("the proof is for a receipt this miner does not hold")
    receipt = decode(bytes(held["signed"])).message
    assert isinstance(receipt, Receipt)
    try:
        check_proof_matches_receipt(proof, receipt)
    except Exception as exc:
        raise RewardRejected(str(exc)) from None
    return proof, db.add_proof(proof.receipt_hash.hex(), proof.epoch, proof.validator, proof.amount, payload)

