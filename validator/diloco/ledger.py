"""DiLoCo round receipts in the validator's ordinary receipt table (``val_receipt``).

Stored there, a round's receipts take the same road as task receipts: ``validator.epoch_close``
builds the epoch file from them, posts its Merkle root and stores one signed ``ReceiptProof`` per
receipt (``val_proof``), which the miner picks up or is sent and claims with
``wallet.rewards.claim_proofs``.

Nonces come from the same stored counter as task receipts (``receipt_nonce`` in ``val_meta``), read
and advanced in the transaction that stores the receipts, so a restarted validator never reissues
one; ``issued_at`` is moved past the latest stored receipt (``settle.receipt_time``) like a task's.
A round whose receipts are already stored (a restart between storing them and saving the round
state reopens the same round) is not signed again: the stored receipts are returned. Each round's
(run id, round) is stored beside its receipts (``val_meta``), and the epoch close lists it in the
epoch file (``wallet.epochs.RoundGroup``), so ``magnet audit`` checks those receipts by the round
rule rather than the task rule.
"""

from __future__ import annotations

from protocol.encoding import decode, encode
from protocol.messages import Receipt
from protocol.signing import Domain, SignedMessage, SignerLike
from validator.db import ValidatorDB
from validator.diloco.receipts import RoundReceipts, RoundRewards, round_receipts
from validator.diloco.rounds import RoundResult
from validator.epoch_close import ROUND_KEY
from validator.settle import receipt_time
from wallet.epochs import diloco_round_task_id

NONCE_KEY = "receipt_nonce"  # shared with validator.settle (db.next_counter("receipt_nonce"))
def stored_round_receipts(db: ValidatorDB, task_id: bytes) -> dict[str, SignedMessage]:
    """The receipts already stored for one round's task id, by miner."""
    return {r["miner"]: decode(bytes(r["signed"])) for r in db.receipts("0x" + task_id.hex())}


def store_round_receipts(
    db: ValidatorDB,
    result: RoundResult,
    run_id: bytes,
    *,
    wire_round: int,
    rewards: RoundRewards,
    domain: Domain,
    signer: SignerLike,
    now_ms: int,
) -> RoundReceipts:
    """Sign one receipt per accepted miner of ``result`` and store them in ``val_receipt`` (one
    transaction: nonces, receipts); returns them with the excluded miners' reasons."""
    task_id = diloco_round_task_id(run_id, wire_round)
    excluded = {m: v.reason for m, v in result.verdicts.items() if not v.accepted}
    with db.store.transaction() as conn:
        held = stored_round_receipts(db, task_id)
        if held:
            return RoundReceipts(held, excluded)
        issued_at = receipt_time(db, now_ms)
        first = int(db.meta(NONCE_KEY, 0)) + 1
        out = round_receipts(
            result, run_id, epoch=rewards.epoch_of(issued_at), emission=rewards.emission, domain=domain,
            signer=signer, payouts=rewards.payouts, first_nonce=first, issued_at=issued_at,
            round_number=wire_round,
        )  # fmt: skip
        if not out.receipts:
            return out
        db.set_meta(NONCE_KEY, first + len(out.receipts) - 1)
        # The epoch close lists the round in the epoch file from this (validator.epoch_close).
        db.set_meta(ROUND_KEY + "0x" + task_id.hex(), {"run": "0x" + run_id.hex(), "round": wire_round})
        for miner, signed in out.receipts.items():
            r = signed.message
            assert isinstance(r, Receipt)
            conn.execute(
                "INSERT INTO val_receipt (task_id, miner, epoch, nonce, issued_at, rank, pool_size, "
                "amount, signed) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                ("0x" + task_id.hex(), miner, r.epoch, r.nonce, r.issued_at, r.rank, r.pool_size,
                 str(r.amount), encode(signed)),
            )  # fmt: skip
    return out
