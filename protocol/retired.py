"""Released message versions that newer ones replaced: still registered, so they decode and verify.

A (TYPE, VERSION) is released forever (docs/PROTOCOL.md, Versioning). When a type gets a new
version, its old class moves here as ``<Name>V<version>`` with its field list unchanged; code that
meets one says what to do instead (e.g. ask the validator for a new proof).
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.base import Message, register
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
