"""Released message versions that newer ones replaced: still registered, so they decode and verify.

A (TYPE, VERSION) is released forever (docs/PROTOCOL.md, Versioning). When a type gets a new
version, its old class moves here as ``<Name>V<version>`` with its field list unchanged; code that
meets one says what to do instead (e.g. ask the validator for a new proof).
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.base import Message, register, rule

# the names DilocoRoundV1 shares with the current messages (defined before messages imports this)
from protocol.messages import BPS, DILOCO_COMPRESSIONS, ZERO32, _issued_at, _task_id
from protocol.schema import wire


@register
@dataclass(frozen=True)
class ReceiptProofV1(Message):
    """Sent by the validator to a miner: proves a receipt's leaf is under the epoch's posted root."""

    TYPE = "ReceiptProof"
    VERSION = 1
    SIGNER_FIELD = "validator"

    epoch: int = wire("uint64", "Reward epoch number.")
    validator: str = wire("address", "EVM address of the validator (signer) that posted the root.")
    receipt_hash: bytes = wire("bytes32", "receipt_hash(receipt): EIP-712 hashStruct of the Receipt.")
    payout: str = wire("address", "Payout address in the leaf.")
    amount: int = wire("uint256", "Amount in the leaf, token base units.")
    proof: tuple[bytes, ...] = wire(
        "bytes32[]", "Merkle proof, sibling hashes from leaf to root.", max_items=64
    )
    root: bytes = wire("bytes32", "The epoch's Merkle root (as posted on chain).")
    issued_at: int = wire("uint64", "Unix time in milliseconds at which the sender created this message.")


RETIRED_PROOF_HINT = (
    "this is a version 1 ReceiptProof (its leaf has no index): the registry no longer accepts v1 "
    "proofs; ask the validator for a new proof (ReceiptProof v2)"
)


@register
@dataclass(frozen=True)
class DilocoRoundV1(Message):
    """A validator opens one round of a diloco task (v1: without inner lr, batch size and block)."""

    TYPE = "DilocoRound"
    VERSION = 1
    SIGNER_FIELD = "validator"

    task_id: bytes = _task_id()
    validator: str = wire("address", "EVM address of the validator (signer).")
    round: int = wire("uint32", "Round number, 0 for the first; one DilocoRound per round.")
    model_sha256: bytes = wire("bytes32", "sha256 of the global model blob (public) miners start from.")
    model_size: int = wire("uint64", "Size of the global model blob, bytes.")
    prev_model_sha256: bytes = wire(
        "bytes32", "sha256 of the previous round's global model; zero in round 0."
    )
    shard_seed: bytes = wire(
        "bytes32",
        "Shard rule seed: shard = uint256(sha256(seed ++ uint32be(round) ++ address)) mod shard_count.",
    )
    shard_count: int = wire("uint32", "Number of data shards the training data is split into.")
    inner_steps: int = wire("uint32", "H: inner optimizer steps each miner runs this round.")
    compression: str = wire(
        "string", "How the pseudo-gradient is compressed (with error feedback).", choices=DILOCO_COMPRESSIONS
    )
    topk_bps: int = wire("uint16", "For 'topk': share of each tensor's entries sent, basis points; else 0.")
    deadline: int = wire("uint64", "Contributions pushed after this time are late and not merged, unix ms.")
    issued_at: int = _issued_at()

    def check(self) -> None:
        rule(self.shard_count >= 1, "DilocoRound: shard_count must be at least 1")
        rule(self.inner_steps >= 1, "DilocoRound: inner_steps must be at least 1")
        rule(
            (self.round == 0) == (self.prev_model_sha256 == ZERO32),
            "DilocoRound: prev_model_sha256 must be zero exactly in round 0",
        )
        rule(
            self.compression == "topk" or self.topk_bps == 0,
            "DilocoRound: topk_bps must be 0 unless compression is 'topk'",
        )
        rule(
            self.compression != "topk" or 0 < self.topk_bps <= BPS,
            "DilocoRound: 'topk' needs 0 < topk_bps <= 10000",
        )
