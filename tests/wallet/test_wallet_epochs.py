from __future__ import annotations

import dataclasses
import json

import pytest
from wallet_fixtures import ETHER, ChainEnv, make_domain, make_receipt

from protocol.messages import receipt_hash
from protocol.retired import ReceiptProofV1
from protocol.signing import SignedMessage, recover_signer, sign
from wallet.epochs import (
    EpochFile,
    EpochFileError,
    RetiredProofError,
    RoundGroup,
    check_proof,
    check_proof_matches_receipt,
    load_epoch_file,
    require_current_proof,
)
from wallet.merkle import leaf_hash
from wallet.receipts import sign_receipt
from wallet.signer import LocalSigner


def epoch_file(env: ChainEnv, miners: list[str], amount: int, epoch: int = 0) -> EpochFile:
    domain = make_domain(registry=env.deployment.registry)
    receipts = [
        sign_receipt(make_receipt(env.v1.address, m, amount, epoch=epoch, nonce=i), domain, env.v1)
        for i, m in enumerate(miners)
    ]
    return EpochFile.build(epoch, env.v1.address, domain, receipts)


def test_validator_posts_miner_verifies_against_chain_and_claims(chain_env: ChainEnv) -> None:
    miners = [LocalSigner.create().address for _ in range(5)]
    built = epoch_file(chain_env, miners, 200 * ETHER)
    reg = chain_env.registry(chain_env.v1)
    reg.register(ETHER)
    chain_env.advance_to_epoch(1)
    reg.post_epoch(0, built.root, built.file_hash, built.total)
    chain_env.advance_to_epoch(2)

    miner_view = chain_env.registry(chain_env.relayer)  # a miner with no gas uses a relayer
    post = miner_view.post(0, chain_env.v1.address)
    assert post is not None and post.epoch_file_hash == built.file_hash
    for signed in built.receipts:
        proof = built.proof_for(signed.message, issued_at=1)  # type: ignore[arg-type]
        signed_proof = sign(proof, built.domain, chain_env.v1)
        assert recover_signer(signed_proof, built.domain) == chain_env.v1.address
        check_proof_matches_receipt(proof, signed.message)  # type: ignore[arg-type]
        check_proof(proof, post.root)
        miner_view.claim(
            0, proof.validator, proof.index, proof.receipt_hash, proof.payout, proof.amount, proof.proof
        )
        assert miner_view.token_balance(proof.payout) == 200 * ETHER


def test_bad_proof_is_caught_before_claiming(chain_env: ChainEnv) -> None:
    built = epoch_file(chain_env, [LocalSigner.create().address for _ in range(4)], 1)
    proof = built.proofs(issued_at=1)[0]
    with pytest.raises(EpochFileError, match="posted no root"):
        check_proof(proof, None)
    with pytest.raises(EpochFileError, match="differs from the root posted"):
        check_proof(proof, b"\x01" * 32)
    inflated = dataclasses.replace(proof, amount=proof.amount + 1)
    with pytest.raises(EpochFileError, match="does not lead"):
        check_proof(inflated, built.root)
    moved = dataclasses.replace(proof, index=(proof.index + 1) % len(built.receipts))
    with pytest.raises(EpochFileError, match="does not lead"):
        check_proof(moved, built.root)  # the index is part of the leaf
    other = built.receipts[1].message
    with pytest.raises(EpochFileError, match="does not match the receipt"):
        check_proof_matches_receipt(proof, other)  # type: ignore[arg-type]


def test_epoch_file_round_trip_and_hash(chain_env: ChainEnv) -> None:
    built = epoch_file(chain_env, [LocalSigner.create().address for _ in range(3)], 7)
    data = built.to_bytes()
    loaded = load_epoch_file(data, built.domain)
    assert (loaded.root, loaded.file_hash, loaded.total) == (built.root, built.file_hash, 21)
    assert json.loads(data)["root"] == "0x" + built.root.hex()


def test_tampered_or_foreign_epoch_file_is_rejected(chain_env: ChainEnv) -> None:
    built = epoch_file(chain_env, [LocalSigner.create().address for _ in range(3)], 7)
    doc = json.loads(built.to_bytes())
    doc["receipts"][0]["body"]["amount"] = "8"
    with pytest.raises(EpochFileError, match="invalid receipt"):
        load_epoch_file(json.dumps(doc).encode(), built.domain)
    with pytest.raises(EpochFileError, match="another network"):
        load_epoch_file(built.to_bytes(), make_domain(chain_id=5, registry=chain_env.deployment.registry))
    with pytest.raises(EpochFileError, match="not JSON"):
        load_epoch_file(b"\xff", built.domain)


def test_build_refuses_foreign_duplicate_or_forged_receipts(chain_env: ChainEnv) -> None:
    built = epoch_file(chain_env, [LocalSigner.create().address], 1)
    signed = built.receipts[0]
    with pytest.raises(EpochFileError, match="twice"):
        EpochFile.build(0, chain_env.v1.address, built.domain, [signed, signed])
    with pytest.raises(EpochFileError, match="does not belong"):
        EpochFile.build(1, chain_env.v1.address, built.domain, [signed])
    forged = SignedMessage(dataclasses.replace(signed.message, amount=10**24), signed.signature)
    with pytest.raises(Exception, match="not signed by its validator"):
        EpochFile.build(0, chain_env.v1.address, built.domain, [forged])
    with pytest.raises(EpochFileError, match="no receipts"):
        EpochFile.build(0, chain_env.v1.address, built.domain, [])
    assert built.proofs(1)[0].receipt_hash == receipt_hash(signed.message)  # type: ignore[arg-type]


def test_leaf_index_is_the_receipts_position_in_the_file(chain_env: ChainEnv) -> None:
    built = epoch_file(chain_env, [LocalSigner.create().address for _ in range(6)], 3)
    proofs = built.proofs(issued_at=1)
    assert [p.index for p in proofs] == list(range(6))
    for i, (proof, signed) in enumerate(zip(proofs, built.receipts, strict=True)):
        assert proof.receipt_hash == receipt_hash(signed.message)  # type: ignore[arg-type]
        assert built.index_of(signed.message) == i  # type: ignore[arg-type]
        assert built.leaves[i] == leaf_hash(i, proof.receipt_hash, proof.payout, proof.amount)
        check_proof(proof, built.root)
    doc = json.loads(built.to_bytes())
    assert doc["version"] == 2
    assert [receipt_hash(built.receipts[i].message) for i in range(6)] == sorted(  # type: ignore[arg-type]
        receipt_hash(s.message)  # type: ignore[arg-type]
        for s in built.receipts
    )
    doc["version"] = 1  # an epoch file of the registry before leaf indexes
    with pytest.raises(EpochFileError, match="version 2"):
        load_epoch_file(json.dumps(doc).encode(), built.domain)


def test_a_v1_proof_is_refused_with_what_to_do(chain_env: ChainEnv) -> None:
    built = epoch_file(chain_env, [LocalSigner.create().address for _ in range(2)], 3)
    proof = built.proofs(issued_at=1)[0]
    fields = {f: getattr(proof, f) for f in ("epoch", "validator", "receipt_hash", "payout", "amount")}
    old = ReceiptProofV1(**fields, proof=proof.proof, root=proof.root, issued_at=1)
    for check in (lambda: check_proof(old, built.root), lambda: require_current_proof(old)):
        with pytest.raises(RetiredProofError, match="ask the validator for a new proof"):
            check()
    with pytest.raises(RetiredProofError, match="ask the validator for a new proof"):
        check_proof_matches_receipt(old, built.receipts[0].message)  # type: ignore[arg-type]


def test_diloco_round_groups_are_listed_checked_and_survive_a_round_trip(chain_env: ChainEnv) -> None:
    """Version 3 lists which receipts belong to a DiLoCo round; a file without rounds stays version 2.
    A listed round must name receipts of the file (its task id is derived from run and round)."""
    domain = make_domain(registry=chain_env.deployment.registry)
    group = RoundGroup(b"\x11" * 32, 4)
    miners = [LocalSigner.create().address for _ in range(2)]
    v1 = chain_env.v1
    round_receipts = [
        sign_receipt(make_receipt(v1.address, m, 5, nonce=i, task_id=group.task_id), domain, v1)
        for i, m in enumerate(miners)
    ]
    task_receipt = sign_receipt(make_receipt(v1.address, miners[0], 9, nonce=7), domain, v1)
    built = EpochFile.build(0, chain_env.v1.address, domain, [*round_receipts, task_receipt], [group])
    data = built.to_bytes()
    doc = json.loads(data)
    assert doc["version"] == 3 and doc["rounds"] == [{"run": "0x" + "11" * 32, "round": 4}]
    loaded = load_epoch_file(data, domain)
    assert loaded.rounds == (group,) and loaded.round_task_ids == {group.task_id: group}
    assert (loaded.root, loaded.total) == (built.root, 19)
    plain = EpochFile.build(0, chain_env.v1.address, domain, [task_receipt])
    assert json.loads(plain.to_bytes())["version"] == 2 and "rounds" not in json.loads(plain.to_bytes())
    with pytest.raises(EpochFileError, match="no receipt of the file belongs to it"):
        EpochFile.build(0, chain_env.v1.address, domain, [task_receipt], [group])  # a task passed off
    with pytest.raises(EpochFileError, match="listed twice"):
        EpochFile.build(0, chain_env.v1.address, domain, round_receipts, [group, group])
    for bad in ({"run": "0x11", "round": 4}, {"run": "0x" + "11" * 32, "round": -1}, {"round": 4}):
        tampered = {**doc, "rounds": [bad]}
        with pytest.raises(EpochFileError, match="round"):
            load_epoch_file(json.dumps(tampered).encode(), domain)
    downgraded = {**doc, "version": 2}  # rounds in a version-2 file: not the canonical encoding
    with pytest.raises(EpochFileError, match="not canonical"):
        load_epoch_file(json.dumps(downgraded, separators=(",", ":"), sort_keys=True).encode(), domain)
