from __future__ import annotations

import dataclasses
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from wallet_fixtures import make_domain, make_receipt

from protocol.encoding import encode
from protocol.errors import ProtocolError, SignatureError
from protocol.signing import SignedMessage, sign
from wallet.epochs import EpochFile
from wallet.receiptbook import ReceiptBook, all_entries, miner_store_entries
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


def _miner_store(path: Path, receipts: list[bytes], proofs: list[bytes]) -> None:
    """The two tables of miner/db.py that hold signed receipts and proofs (their columns as there)."""
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute(
            "CREATE TABLE miner_receipt (task_id TEXT PRIMARY KEY, validator TEXT, epoch INTEGER, "
            "rank INTEGER, pool_size INTEGER, amount TEXT, receipt_hash TEXT, signed BLOB, received_at REAL)"
        )
        conn.execute(
            "CREATE TABLE miner_proof (receipt_hash TEXT PRIMARY KEY, epoch INTEGER, validator TEXT, "
            "amount TEXT, signed BLOB, claimed INTEGER, claim_tx TEXT, received_at REAL)"
        )
        for i, blob in enumerate(receipts):
            conn.execute("INSERT INTO miner_receipt VALUES (?, '', 0, 1, 3, '1', '', ?, 0)", (str(i), blob))
        for i, blob in enumerate(proofs):
            conn.execute("INSERT INTO miner_proof VALUES (?, 0, '', '1', ?, 0, '', 0)", (str(i), blob))


def test_receipts_the_miner_keeps_in_the_store_are_read_and_rechecked(tmp_path: Path) -> None:
    signed = [
        sign_receipt(make_receipt(VALIDATOR.address, MINER, 10 + i, nonce=i), DOMAIN, VALIDATOR)
        for i in range(3)
    ]
    built = EpochFile.build(0, VALIDATOR.address, DOMAIN, signed)
    proof = sign(built.proof_for(signed[0].message, issued_at=1), DOMAIN, VALIDATOR)  # type: ignore[arg-type]
    forged = SignedMessage(dataclasses.replace(signed[2].message, amount=10**24), signed[2].signature)
    store = tmp_path / "store.sqlite"
    _miner_store(store, [encode(signed[0]), encode(signed[1]), encode(forged), b"garbage"], [encode(proof)])
    entries = miner_store_entries(store, DOMAIN)
    assert sorted(e.body.nonce for e in entries) == [0, 1]  # the forged and the garbage rows are left out
    assert [e.body.nonce for e in entries if e.proof is not None] == [0]
    book = ReceiptBook(tmp_path / "receipts", DOMAIN)
    book.add_receipt(signed[1])
    merged = all_entries(book, store)
    assert len(merged) == 2 and sum(e.proof is not None for e in merged) == 1
    assert miner_store_entries(tmp_path / "absent.sqlite", DOMAIN) == []
