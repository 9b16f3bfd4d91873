"""The miner's receipt book: every receipt it was sent and, once the epoch is posted, its proof.

One JSON file per receipt under ``<data dir>/receipts/<epoch>/<receipt hash>.json`` holding the
canonical signed receipt and (later) the signed ``ReceiptProof``. Both are verified before they are
written (validator signature under the network's domain, proof matches the receipt), so the book
only ever holds checked data; ``magnet wallet receipts`` and ``claim`` read it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from protocol.encoding import canonical_json, decode, encode
from protocol.errors import ProtocolError
from protocol.messages import Receipt, ReceiptProof, receipt_hash
from protocol.signing import Domain, SignedMessage, recover_signer
from wallet.epochs import check_proof_matches_receipt
from wallet.keystore import read_json, write_json
from wallet.receipts import verify_receipt


@dataclass(frozen=True)
class BookEntry:
    receipt: SignedMessage
    proof: SignedMessage | None

    @property
    def body(self) -> Receipt:
        assert isinstance(self.receipt.message, Receipt)
        return self.receipt.message

    @property
    def proof_body(self) -> ReceiptProof | None:
        if self.proof is None:
            return None
        assert isinstance(self.proof.message, ReceiptProof)
        return self.proof.message


class ReceiptBook:
    """Receipts of one node on one network, in ``root``."""

    def __init__(self, root: Path, domain: Domain) -> None:
        self.root = Path(root)
        self.domain = domain

    def add_receipt(self, signed: SignedMessage) -> Path:
        """Verify and store a receipt (idempotent)."""
        verify_receipt(signed, self.domain)
        receipt = signed.message
        assert isinstance(receipt, Receipt)
        path = self._path(receipt)
        if not path.exists():
            write_json(path, {"receipt": json.loads(encode(signed)), "proof": None})
        return path

    def add_proof(self, signed_proof: SignedMessage) -> Path:
        """Attach a validator's signed proof to the receipt it proves."""
        proof = signed_proof.message
        if not isinstance(proof, ReceiptProof):
            raise ProtocolError(f"expected a ReceiptProof, got {type(proof).__name__}")
        recover_signer(signed_proof, self.domain)
        path = self.root / str(proof.epoch) / f"{proof.receipt_hash.hex()}.json"
        if not path.exists():
            raise ProtocolError("a proof arrived for a receipt this node never received")
        entry = self._load(path)
        check_proof_matches_receipt(proof, entry.body)
        write_json(
            path, {"receipt": json.loads(encode(entry.receipt)), "proof": json.loads(encode(signed_proof))}
        )
        return path

    def entries(self) -> Iterator[BookEntry]:
        """Every stored receipt, oldest epoch first."""
        if not self.root.exists():
            return
        epochs = sorted((p for p in self.root.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
        for folder in epochs:
            for path in sorted(folder.glob("*.json")):
                yield self._load(path)

    def _path(self, receipt: Receipt) -> Path:
        return self.root / str(receipt.epoch) / f"{receipt_hash(receipt).hex()}.json"

    def _load(self, path: Path) -> BookEntry:
        doc = read_json(path, "receipt")
        try:
            receipt = decode(canonical_json(doc["receipt"]))
            proof_doc = doc.get("proof")
            proof = None if proof_doc is None else decode(canonical_json(proof_doc))
        except (KeyError, TypeError, ProtocolError) as exc:
            raise ProtocolError(f"{path} is not a stored receipt: {exc}") from None
        return BookEntry(receipt, proof)
