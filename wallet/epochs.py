"""Epoch files and proofs: what a validator publishes per epoch, and what a miner checks.

The validator gathers the epoch's signed receipts into an ``EpochFile`` (canonical JSON: every
receipt with its signature, sorted by receipt hash), builds the Merkle tree over leaves
(index, receipt hash, payout, amount), ``index`` being the receipt's position in the file (from
0), posts the root and the file's sha256 on chain, and sends each miner a signed ``ReceiptProof``.
The miner checks the proof against the root read from the chain before it claims. Anyone can
re-verify a published file: every receipt's signature, the root and the total are recomputed from
the receipts alone.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from eth_utils.crypto import keccak

from protocol import strict_json
from protocol.encoding import canonical_json, decode, encode
from protocol.errors import FieldError, ProtocolError
from protocol.messages import EpochRecord, Receipt, ReceiptProof, receipt_hash
from protocol.retired import RETIRED_PROOF_HINT, ReceiptProofV1
from protocol.signing import Domain, SignedMessage
from wallet.merkle import MerkleTree, leaf_hash, verify_proof
from wallet.receipts import verify_receipt

FORMAT = "magnet-epoch"
# 2: leaves carry their index (the receipt's position in "receipts"); version 1 roots hashed no index.
# 3: as 2, plus "rounds": which receipts are DiLoCo round receipts (RoundGroup). A file without
# rounds is still written and read as version 2, byte for byte as before.
VERSION = 2
VERSION_WITH_ROUNDS = 3
MAX_ROUNDS = 10_000
MAX_EPOCH_FILE_BYTES = 256 * 1024 * 1024  # ~100k receipts
MAX_RECEIPTS = 200_000


class EpochFileError(ProtocolError):
    """An epoch file is malformed or does not match its receipts, root or the chain."""


def diloco_round_task_id(run_id: bytes, round_number: int) -> bytes:
    """The task id of the receipts of round ``round_number`` of DiLoCo run ``run_id``:
    ``keccak(b"magnet-diloco" || run id || round as 8 bytes big-endian)``. Ordinary tasks have random
    ids, so a task's receipts cannot be passed off as a round's."""
    if not 0 <= round_number < 1 << 64:
        raise ValueError(f"round must fit in 64 bits, got {round_number}")
    return bytes(keccak(b"magnet-diloco" + bytes(run_id) + round_number.to_bytes(8, "big")))


@dataclass(frozen=True, order=True)
class RoundGroup:
    """The receipts of one DiLoCo round in an epoch file: their task id is
    ``diloco_round_task_id(run_id, round)``. The audit checks them by the round rule (the emission
    split by their scores) instead of the task rule."""

    run_id: bytes
    round: int

    @property
    def task_id(self) -> bytes:
        return diloco_round_task_id(self.run_id, self.round)

    def to_json(self) -> dict[str, Any]:
        return {"run": "0x" + self.run_id.hex(), "round": self.round}

    @classmethod
    def from_json(cls, raw: Any) -> RoundGroup:
        if not isinstance(raw, dict) or set(raw) != {"run", "round"}:
            raise EpochFileError("each 'rounds' entry must be {\"run\": \"0x..\", \"round\": N}")
        run, number = raw["run"], raw["round"]
        if not isinstance(run, str) or not run.startswith("0x") or len(run) != 66:
            raise EpochFileError(f"round entry: run must be 0x and 32 bytes of hex, got {run!r:.80}")
        if not isinstance(number, int) or isinstance(number, bool) or not 0 <= number < 1 << 64:
            raise EpochFileError(f"round entry: round must be an integer in [0, 2^64), got {number!r:.40}")
        try:
            return cls(bytes.fromhex(run[2:]), number)
        except ValueError:
            raise EpochFileError(f"round entry: run is not hex: {run!r:.80}") from None


@dataclass(frozen=True)
class EpochFile:
    """One validator's receipts for one epoch."""

    epoch: int
    validator: str
    domain: Domain
    receipts: tuple[SignedMessage, ...]
    rounds: tuple[RoundGroup, ...] = ()

    @classmethod
    def build(
        cls,
        epoch: int,
        validator: str,
        domain: Domain,
        receipts: Iterable[SignedMessage],
        rounds: Iterable[RoundGroup] = (),
    ) -> EpochFile:
        """Check every receipt (signature, epoch, validator, no duplicates) and order them; each
        round group listed must name receipts of the file, once."""
        ordered = sorted(receipts, key=lambda s: receipt_hash(_receipt(s)))
        if not ordered:
            raise EpochFileError(f"epoch {epoch}: no receipts to publish")
        if len(ordered) > MAX_RECEIPTS:
            raise EpochFileError(f"epoch {epoch}: {len(ordered)} receipts exceed the cap of {MAX_RECEIPTS}")
        seen: set[bytes] = set()
        for signed in ordered:
            receipt = _receipt(signed)
            if receipt.epoch != epoch or receipt.validator != validator:
                raise EpochFileError(
                    f"receipt for epoch {receipt.epoch} by {receipt.validator} does not belong in "
                    f"epoch {epoch} of {validator}"
                )
            verify_receipt(signed, domain)
            digest = receipt_hash(receipt)
            if digest in seen:
                raise EpochFileError("the same receipt appears twice in the epoch file")
            seen.add(digest)
        groups = tuple(sorted(rounds))
        if len(groups) > MAX_ROUNDS:
            raise EpochFileError(f"epoch {epoch}: {len(groups)} round groups exceed the cap of {MAX_ROUNDS}")
        if len(set(groups)) != len(groups):
            raise EpochFileError(f"epoch {epoch}: a DiLoCo round is listed twice")
        task_ids = {_receipt(s).task_id for s in ordered}
        for group in groups:
            if group.task_id not in task_ids:
                raise EpochFileError(
                    f"epoch {epoch}: round {group.round} of DiLoCo run 0x{group.run_id.hex()[:12]} is "
                    "listed but no receipt of the file belongs to it"
                )
        return cls(epoch, validator, domain, tuple(ordered), groups)

    @property
    def round_task_ids(self) -> dict[bytes, RoundGroup]:
        """Task id -> round group, for the DiLoCo round receipts of this file."""
        return {group.task_id: group for group in self.rounds}

    @cached_property
    def leaves(self) -> list[bytes]:
        """Leaf ``i`` is receipt ``i``'s (receipts sorted by receipt hash): its index is its position."""
        return [
            leaf_hash(i, receipt_hash(r), r.payout, r.amount)
            for i, r in enumerate(_receipt(s) for s in self.receipts)
        ]

    @cached_property
    def _index_of(self) -> dict[bytes, int]:
        return {receipt_hash(_receipt(s)): i for i, s in enumerate(self.receipts)}

    def index_of(self, receipt: Receipt) -> int:
        """The leaf index of ``receipt`` (its position in the file); EpochFileError if absent."""
        index = self._index_of.get(receipt_hash(receipt))
        if index is None:
            raise EpochFileError("this receipt is not in the epoch file")
        return index

    @cached_property
    def tree(self) -> MerkleTree:
        return MerkleTree(self.leaves)

    @property
    def root(self) -> bytes:
        return self.tree.root

    @property
    def total(self) -> int:
        return sum(_receipt(s).amount for s in self.receipts)

    def to_bytes(self) -> bytes:
        """The canonical file: sorted keys, no whitespace; one encoding per epoch file."""
        doc: dict[str, Any] = {
            "format": FORMAT,
            "version": VERSION_WITH_ROUNDS if self.rounds else VERSION,
            "epoch": self.epoch,
            "validator": self.validator,
            "domain": self.domain.to_json(),
            "root": "0x" + self.root.hex(),
            "total": str(self.total),
            "receipts": [json.loads(encode(s)) for s in self.receipts],
        }
        if self.rounds:
            doc["rounds"] = [group.to_json() for group in self.rounds]
        return canonical_json(doc)

    @cached_property
    def file_hash(self) -> bytes:
        """sha256 of the canonical file: posted on chain beside the root."""
        return hashlib.sha256(self.to_bytes()).digest()

    def record(self, issued_at: int) -> EpochRecord:
        """The unsigned ``EpochRecord`` announcing this epoch."""
        return EpochRecord(
            epoch=self.epoch,
            validator=self.validator,
            merkle_root=self.root,
            epoch_file_sha256=self.file_hash,
            total_amount=self.total,
            receipt_count=len(self.receipts),
            issued_at=issued_at,
        )

    def proof_for(self, receipt: Receipt, issued_at: int) -> ReceiptProof:
        """The unsigned ``ReceiptProof`` of one receipt (the validator signs it before sending)."""
        digest, index = receipt_hash(receipt), self.index_of(receipt)
        leaf = leaf_hash(index, digest, receipt.payout, receipt.amount)
        if leaf not in self.tree:  # same hash, other payout or amount: cannot happen for a hashed receipt
            raise EpochFileError("this receipt is not in the epoch file")
        return ReceiptProof(
            epoch=self.epoch,
            validator=self.validator,
            index=index,
            receipt_hash=digest,
            payout=receipt.payout,
            amount=receipt.amount,
            proof=tuple(self.tree.proof(leaf)),
            root=self.root,
            issued_at=issued_at,
        )

    def proofs(self, issued_at: int) -> list[ReceiptProof]:
        return [self.proof_for(_receipt(s), issued_at) for s in self.receipts]


def load_epoch_file(data: bytes, domain: Domain) -> EpochFile:
    """Parse and fully re-verify a published epoch file (untrusted input)."""
    if len(data) > MAX_EPOCH_FILE_BYTES:
        raise EpochFileError(f"epoch file of {len(data)} bytes exceeds the cap of {MAX_EPOCH_FILE_BYTES}")
    try:
        doc = strict_json.loads(data, "epoch file", floats=True)
    except ValueError as exc:
        raise EpochFileError(f"epoch file is not JSON: {exc}") from None
    versions = (VERSION, VERSION_WITH_ROUNDS)
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("version") not in versions:
        raise EpochFileError(f"not a {FORMAT} version {VERSION} or {VERSION_WITH_ROUNDS} file")
    if doc.get("domain") != domain.to_json():
        raise EpochFileError("epoch file belongs to another network (chain, registry or salt differ)")
    raw = doc.get("receipts")
    if not isinstance(raw, list) or len(raw) > MAX_RECEIPTS:
        raise EpochFileError(f"epoch file 'receipts' must be a list of at most {MAX_RECEIPTS} receipts")
    raw_rounds = doc.get("rounds", [])
    if not isinstance(raw_rounds, list) or len(raw_rounds) > MAX_ROUNDS:
        raise EpochFileError(f"epoch file 'rounds' must be a list of at most {MAX_ROUNDS} entries")
    rounds = [RoundGroup.from_json(r) for r in raw_rounds]
    try:
        receipts = [decode(canonical_json(r)) for r in raw]
        built = EpochFile.build(
            int(doc.get("epoch", -1)), str(doc.get("validator")), domain, receipts, rounds
        )
    except (ProtocolError, TypeError, ValueError) as exc:
        raise EpochFileError(f"epoch file has an invalid receipt: {exc}") from None
    if built.to_bytes() != data:
        raise EpochFileError("epoch file is not canonical or its root/total do not match its receipts")
    return built


class RetiredProofError(EpochFileError):
    """A ReceiptProof v1 (no leaf index): the registry cannot take it; a new proof is needed."""


def require_current_proof(proof: object) -> ReceiptProof:
    """``proof`` as a claimable ReceiptProof (v2); ``RetiredProofError`` for a v1 proof."""
    if isinstance(proof, ReceiptProof):
        return proof
    if isinstance(proof, ReceiptProofV1):
        raise RetiredProofError(f"epoch {proof.epoch}, validator {proof.validator}: {RETIRED_PROOF_HINT}")
    raise EpochFileError(f"expected a ReceiptProof, got {type(proof).__name__}")


def check_proof(proof: ReceiptProof | ReceiptProofV1, onchain_root: bytes | None) -> None:
    """Raise ``EpochFileError`` unless ``proof`` leads to the root posted on chain."""
    proof = require_current_proof(proof)
    if onchain_root is None:
        raise EpochFileError(f"validator {proof.validator} posted no root for epoch {proof.epoch} on chain")
    if proof.root != onchain_root:
        raise EpochFileError("the proof's root differs from the root posted on chain: do not claim with it")
    leaf = leaf_hash(proof.index, proof.receipt_hash, proof.payout, proof.amount)
    if not verify_proof(proof.proof, onchain_root, leaf):
        raise EpochFileError("the Merkle proof does not lead to the posted root (bad or tampered proof)")


def check_proof_matches_receipt(proof: ReceiptProof | ReceiptProofV1, receipt: Receipt) -> None:
    """The proof is about this receipt: same hash, payout, amount, epoch and validator."""
    proof = require_current_proof(proof)
    expected = (receipt_hash(receipt), receipt.payout, receipt.amount, receipt.epoch, receipt.validator)
    actual = (proof.receipt_hash, proof.payout, proof.amount, proof.epoch, proof.validator)
    if expected != actual:
        raise EpochFileError(
            "the proof does not match the receipt (hash, payout, amount, epoch or validator)"
        )


def _receipt(signed: SignedMessage) -> Receipt:
    if not isinstance(signed.message, Receipt):
        raise FieldError(f"epoch files hold Receipts, not {type(signed.message).__name__}")
    return signed.message


def summary(epoch_file: EpochFile) -> dict[str, Any]:
    """A short JSON-able description for logs and the CLI."""
    return {
        "epoch": epoch_file.epoch,
        "validator": epoch_file.validator,
        "receipts": len(epoch_file.receipts),
        "total": str(epoch_file.total),
        "root": "0x" + epoch_file.root.hex(),
        "fileSha256": "0x" + epoch_file.file_hash.hex(),
    }
