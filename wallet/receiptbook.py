"""The miner's receipt book: every receipt it was sent and, once the epoch is posted, its proof.

One JSON file per receipt under ``<data dir>/receipts/<epoch>/<receipt hash>.json`` holding the
canonical signed receipt and (later) the signed ``ReceiptProof``. Both are verified before they are
written (validator signature under the network's domain, proof matches the receipt), so the book
only ever holds checked data; ``magnet wallet receipts`` and ``claim`` read it.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from node.logs import component_logger
from protocol.encoding import canonical_json, decode, encode
from protocol.errors import ProtocolError
from protocol.messages import Receipt, ReceiptProof, receipt_hash
from protocol.retired import RETIRED_PROOF_HINT, ReceiptProofV1
from protocol.signing import Domain, SignedMessage, recover_signer
from wallet.epochs import check_proof_matches_receipt, require_current_proof
from wallet.keystore import read_json, write_json
from wallet.receipts import verify_receipt

log = component_logger("wallet")


@dataclass(frozen=True)
class BookEntry:
    receipt: SignedMessage
    proof: SignedMessage | None

    @property
    def body(self) -> Receipt:
        assert isinstance(self.receipt.message, Receipt)
        return self.receipt.message

    @property
    def proof_body(self) -> ReceiptProof | ReceiptProofV1 | None:
        """The proof; a v1 one (stored before the upgrade) is shown, but claiming it is refused."""
        if self.proof is None:
            return None
        assert isinstance(self.proof.message, (ReceiptProof, ReceiptProofV1))
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
        proof = require_current_proof(signed_proof.message)  # v1: "ask the validator for a new proof"
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


def miner_store_entries(store_path: Path, domain: Domain) -> list[BookEntry]:
    """Receipts and proofs the miner role keeps in the node's SQLite store (read-only).

    The miner stores each signed message's canonical bytes (tables ``miner_receipt`` and
    ``miner_proof``); every one is verified again here, and anything that does not verify is left
    out with a warning rather than shown or claimed.
    """
    if not store_path.exists():
        return []
    try:
        with closing(sqlite3.connect(f"file:{store_path}?mode=ro", uri=True)) as conn:
            tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if not {"miner_receipt", "miner_proof"} <= tables:
                return []
            receipts = [bytes(r[0]) for r in conn.execute("SELECT signed FROM miner_receipt")]
            proofs = [bytes(r[0]) for r in conn.execute("SELECT signed FROM miner_proof")]
    except sqlite3.Error as exc:
        raise ProtocolError(f"cannot read the miner's receipts in {store_path}: {exc}") from None
    by_hash: dict[bytes, BookEntry] = {}
    for blob in receipts:
        signed = _verified(blob, lambda s: verify_receipt(s, domain), Receipt)
        if signed is not None:
            entry = BookEntry(signed, None)
            by_hash[receipt_hash(entry.body)] = entry
    for blob in proofs:
        signed_proof = _verified(blob, lambda s: recover_signer(s, domain), (ReceiptProof, ReceiptProofV1))
        if signed_proof is None:
            continue
        proven = signed_proof.message
        assert isinstance(proven, (ReceiptProof, ReceiptProofV1))
        held = by_hash.get(proven.receipt_hash)
        if held is None:
            log.warning("left out a stored proof for a receipt that is not stored")
            continue
        try:
            if isinstance(proven, ReceiptProofV1):  # kept, so that `claim` says what to do with it
                log.warning("a stored proof for epoch %d: %s", proven.epoch, RETIRED_PROOF_HINT)
            else:
                check_proof_matches_receipt(proven, held.body)
        except ProtocolError as exc:
            log.warning("left out a stored proof: %s", exc)
            continue
        by_hash[proven.receipt_hash] = BookEntry(held.receipt, signed_proof)
    return list(by_hash.values())


def all_entries(book: ReceiptBook, store_path: Path) -> list[BookEntry]:
    """The receipt book and the miner's store together, one entry per receipt (a proven one wins)."""
    merged: dict[bytes, BookEntry] = {}
    for entry in [*book.entries(), *miner_store_entries(store_path, book.domain)]:
        key = receipt_hash(entry.body)
        if key not in merged or (merged[key].proof is None and entry.proof is not None):
            merged[key] = entry
    return sorted(merged.values(), key=lambda e: (e.body.epoch, receipt_hash(e.body)))


def _verified(
    blob: bytes, check: Callable[[SignedMessage], object], kind: type | tuple[type, ...]
) -> SignedMessage | None:
    name = (kind if isinstance(kind, type) else kind[0]).__name__
    try:
        signed = decode(blob)
        if not isinstance(signed.message, kind):
            raise ProtocolError(f"expected a {name}, got {type(signed.message).__name__}")
        check(signed)
    except ProtocolError as exc:
        log.warning("left out a stored %s that does not verify: %s", name, exc)
        return None
    return signed
