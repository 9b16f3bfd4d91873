"""Receipts and proofs on the miner's side: only what the task's validator signed, for this miner,
under this network's domain, with a proof leading to the root on chain, is kept and claimed."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, cast

import pytest

from miner.db import MinerDB
from miner.rewards import RewardRejected, accept_proof, accept_receipt
from node.store import Store
from protocol.encoding import encode
from protocol.messages import Receipt
from protocol.retired import ReceiptProofV1
from protocol.signing import Domain, sign
from wallet.epochs import EpochFile
from wallet.registry import Registry
from wallet.rewards import ClaimOutcome, claim_proofs
from wallet.signer import LocalSigner

DOMAIN = Domain(chain_id=1337, verifying_contract="0x" + "11" * 20, salt=b"\x01" * 32)
OTHER_NETWORK = Domain(chain_id=1337, verifying_contract="0x" + "11" * 20, salt=b"\x02" * 32)
VALIDATOR = LocalSigner.create()
MINER = LocalSigner.create()
TASK = os.urandom(32)


@pytest.fixture
def db(tmp_path: Path) -> MinerDB:
    store = Store(tmp_path / "store.sqlite")
    miner_db = MinerDB(store)
    miner_db.add_task(
        "0x" + TASK.hex(), VALIDATOR.address, "peer", "instruct", b"ann", True, "fits", 1.0, 2.0, 3.0
    )
    miner_db.update("0x" + TASK.hex(), phase="revealed")
    return miner_db


def receipt(**changes: Any) -> Receipt:
    base = Receipt(
        task_id=TASK,
        miner=MINER.address,
        payout=MINER.address,
        validator=VALIDATOR.address,
        rank=1,
        pool_size=3,
        test_loss_e9=2 * 10**9,
        synthetic_loss_e9=3 * 10**9,
        score_e9=3 * 10**9,
        amount=5 * 10**18,
        epoch=7,
        nonce=1,
        issued_at=1_700_000_000_000,
    )
    return replace(base, **changes)


def test_a_good_receipt_is_kept_and_ends_the_task(db: MinerDB) -> None:
    got = accept_receipt(db, encode(sign(receipt(), DOMAIN, VALIDATOR)), DOMAIN, MINER.address)
    assert got.new and got.receipt.amount == 5 * 10**18
    assert db.task("0x" + TASK.hex()).phase == "done"  # type: ignore[union-attr]
    assert [r["amount"] for r in db.receipts()] == [5 * 10**18]
    again = accept_receipt(db, encode(sign(receipt(), DOMAIN, VALIDATOR)), DOMAIN, MINER.address)
    assert not again.new and len(db.receipts()) == 1


def test_receipts_that_do_not_verify_are_refused(db: MinerDB) -> None:
    stranger = LocalSigner.create()
    cases = [
        (
            encode(sign(receipt(validator=stranger.address), DOMAIN, stranger)),
            "did not take with that validator",
        ),
        (encode(sign(receipt(), OTHER_NETWORK, VALIDATOR)), "does not verify"),  # another network's domain
        (encode(sign(receipt(miner=stranger.address), DOMAIN, VALIDATOR)), "another miner"),
        (encode(sign(receipt(task_id=os.urandom(32)), DOMAIN, VALIDATOR)), "did not take"),
    ]
    for payload, words in cases:
        with pytest.raises(RewardRejected, match=words):
            accept_receipt(db, payload, DOMAIN, MINER.address)
    assert db.receipts() == []


@dataclass
class FakePost:
    root: bytes


class FakeRegistry:
    """The two reads and the claim a miner makes of the registry."""

    def __init__(self, root: bytes | None) -> None:
        self.root = root
        self.claims: list[tuple[Any, ...]] = []

    def post(self, epoch: int, validator: str) -> FakePost | None:
        return FakePost(self.root) if self.root else None

    def is_claimed(self, epoch: int, validator: str, index: int) -> bool:
        return any(c[2] == index for c in self.claims)

    def claim(self, *args: Any) -> Any:
        self.claims.append(args)
        return type("Tx", (), {"tx_hash": "0xabc", "paid": [args[3]]})()

    def claim_many(self, epoch: int, validator: str, leaves: list[tuple[Any, ...]]) -> Any:
        self.claims.extend((epoch, validator, *leaf) for leaf in leaves)
        return type("Tx", (), {"tx_hash": "0xdef", "paid": [leaf[1] for leaf in leaves]})()

    def claimed_in(self, result: Any) -> list[dict[str, Any]]:
        return [{"receiptHash": paid} for paid in result.paid]


def claim(registry: FakeRegistry, proofs: list[Any]) -> list[ClaimOutcome]:
    """The product's claim path (wallet.rewards.claim_proofs) against the fake chain."""
    return claim_proofs(cast(Registry, registry), proofs)


def epoch_with(receipts: list[Receipt]) -> EpochFile:
    return EpochFile.build(7, VALIDATOR.address, DOMAIN, [sign(r, DOMAIN, VALIDATOR) for r in receipts])


def test_a_proof_is_checked_against_the_receipt_and_the_root_on_chain_then_claimed_once(db: MinerDB) -> None:
    mine = receipt()
    accept_receipt(db, encode(sign(mine, DOMAIN, VALIDATOR)), DOMAIN, MINER.address)
    epoch = epoch_with([mine, receipt(miner=LocalSigner.create().address, rank=2, amount=10**18)])
    proof = epoch.proof_for(mine, 1_700_000_000_000)
    checked, new = accept_proof(db, encode(sign(proof, DOMAIN, VALIDATOR)), DOMAIN)
    assert new and checked.amount == mine.amount
    (no_root,) = claim(FakeRegistry(None), [checked])
    assert no_root.status == "refused" and "posted no root" in no_root.message
    (wrong_root,) = claim(FakeRegistry(b"\x05" * 32), [checked])
    assert wrong_root.status == "refused" and "differs from the root posted" in wrong_root.message
    registry = FakeRegistry(epoch.root)
    (claimed,) = claim(registry, [checked])
    assert claimed.status == "claimed" and claimed.result is not None and claimed.result.tx_hash == "0xabc"
    (again,) = claim(registry, [checked])
    assert again.status == "skipped"  # already claimed: nothing sent twice
    # claim(epoch, validator, index, receipt_hash, payout, amount, proof)
    assert len(registry.claims) == 1 and registry.claims[0][4] == MINER.address
    assert registry.claims[0][2] == proof.index == epoch.index_of(mine)


def test_a_v1_proof_is_refused_with_ask_for_a_new_proof(db: MinerDB) -> None:
    mine = receipt()
    accept_receipt(db, encode(sign(mine, DOMAIN, VALIDATOR)), DOMAIN, MINER.address)
    epoch = epoch_with([mine])
    proof = epoch.proof_for(mine, 1)
    fields = ("epoch", "validator", "receipt_hash", "payout", "amount", "proof", "root", "issued_at")
    old = ReceiptProofV1(**{f: getattr(proof, f) for f in fields})
    with pytest.raises(RewardRejected, match="ask the validator for a new proof"):
        accept_proof(db, encode(sign(old, DOMAIN, VALIDATOR)), DOMAIN)
    assert db.proofs() == []
    registry = FakeRegistry(epoch.root)
    (outcome,) = claim(registry, [old])  # one stored before the upgrade
    assert outcome.status == "refused" and "ask the validator for a new proof" in outcome.message
    assert registry.claims == []


def test_a_proof_for_another_receipt_or_signer_is_refused(db: MinerDB) -> None:
    mine = receipt()
    accept_receipt(db, encode(sign(mine, DOMAIN, VALIDATOR)), DOMAIN, MINER.address)
    other = receipt(miner=LocalSigner.create().address, amount=10**18)
    epoch = epoch_with([mine, other])
    with pytest.raises(RewardRejected, match="does not hold"):
        accept_proof(db, encode(sign(epoch.proof_for(other, 1), DOMAIN, VALIDATOR)), DOMAIN)
    stranger = LocalSigner.create()
    forged = replace(epoch.proof_for(mine, 1), validator=stranger.address)
    with pytest.raises(RewardRejected, match="does not match"):
        accept_proof(db, encode(sign(forged, DOMAIN, stranger)), DOMAIN)
    assert db.proofs() == []


def test_the_task_table_survives_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite"
    first = MinerDB(Store(path))
    first.add_task(
        "0x" + TASK.hex(), VALIDATOR.address, "peer", "instruct", b"ann", True, "fits", 1.0, 2.0, 3.0
    )
    first.update(
        "0x" + TASK.hex(),
        phase="training",
        plan={"hparams": {"lr": 0.001}, "max_steps": 9},
        salt=b"\x07" * 32,
    )
    first.store.close()
    again = MinerDB(Store(path)).task("0x" + TASK.hex())
    assert again is not None and again.phase == "training" and again.salt == b"\x07" * 32
    assert again.plan == {"hparams": {"lr": 0.001}, "max_steps": 9}
