from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from wallet_fixtures import make_domain, make_receipt

from protocol.errors import ProtocolError, SignatureError
from protocol.signing import SignedMessage, sign
from wallet.epochs import EpochFile
from wallet.receiptbook import ReceiptBook
from wallet.receipts import sign_receipt
from wallet.signer import LocalSigner

VALIDATOR, MINER = LocalSigner.create(), LocalSigner.create().address
DOMAIN = make_domain()


def test_receipts_and_proofs_are_checked_before_they_are_kept(tmp_path: Path) -> None:
    book = ReceiptBook(tmp_path / "receipts", DOMAIN)
    signed = [
        sign_receipt(make_receipt(VALIDATOR.address, MINER, 10 + i, nonce=i), DOMAIN, VALIDATOR)
        for i in range(2)
    ]
    built = EpochFile.build(0, VALIDATOR.address, DOMAIN, signed)
    proof = sign(built.proof_for(signed[0].message, issued_at=1), DOMAIN, VALIDATOR)  # type: ignore[arg-type]
    with pytest.raises(ProtocolError, match="never received"):
        book.add_proof(proof)
    book.add_receipt(signed[0])
    book.add_receipt(signed[0])  # idempotent
    forged = SignedMessage(dataclasses.replace(signed[1].message, amount=10**24), signed[1].signature)
    with pytest.raises(SignatureError):
        book.add_receipt(forged)
    other_proof = sign(built.proof_for(signed[1].message, issued_at=1), DOMAIN, VALIDATOR)  # type: ignore[arg-type]
    book.add_receipt(signed[1])
    wrong = dataclasses.replace(other_proof.message, receipt_hash=proof.message.receipt_hash)  # type: ignore[attr-defined]
    with pytest.raises(ProtocolError, match="does not match the receipt"):
        book.add_proof(sign(wrong, DOMAIN, VALIDATOR))
    book.add_proof(proof)
    entries = list(book.entries())
    assert [e.proof is not None for e in entries].count(True) == 1
    assert {e.body.nonce for e in entries} == {0, 1}


def test_a_corrupted_book_file_is_reported(tmp_path: Path) -> None:
    book = ReceiptBook(tmp_path / "receipts", DOMAIN)
    path = book.add_receipt(sign_receipt(make_receipt(VALIDATOR.address, MINER, 1), DOMAIN, VALIDATOR))
    path.write_text('{"receipt": {"type": "Receipt"}, "proof": null}')
    with pytest.raises(ProtocolError, match="not a stored receipt"):
        list(book.entries())
