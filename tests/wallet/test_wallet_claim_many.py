"""claimMany: several leaves of one post in one transaction; skips and reverts as documented, the
same tokens as single claims; and the client side (rewards.claim_proofs) that batches proofs."""

from __future__ import annotations

import dataclasses
import os

import pytest
from eth_utils.address import to_checksum_address
from test_wallet_contracts import FILE_HASH, Leaf, expect_revert, posted_epoch, receipts
from wallet_fixtures import ETHER, PARAMS, ChainEnv, make_domain, make_receipt

from wallet.epochs import EpochFile
from wallet.merkle import MerkleTree, leaf_hash
from wallet.receipts import sign_receipt
from wallet.rewards import claim_proofs

ZERO = "0x" + "00" * 20


def batch(tree: MerkleTree, leaves: list[Leaf]) -> list[tuple[int, bytes, str, int, list[bytes]]]:
    return [(*leaf, tree.proof(leaf_hash(*leaf))) for leaf in leaves]


def fresh_leaves(n: int, amount: int) -> list[Leaf]:
    return [(i, os.urandom(32), "0x" + os.urandom(20).hex(), amount) for i in range(n)]


def test_a_batch_pays_each_payout_what_single_claims_pay(chain_env: ChainEnv) -> None:
    """v1 posts alone with a total of 42 units: each 7-unit leaf pays emission * 7 / 42, floored per
    leaf as claim() floors it; a relayer submits and gets nothing."""
    leaves = fresh_leaves(6, 7 * ETHER)  # total 42: shares do not divide evenly
    _, tree = posted_epoch(chain_env, leaves, stake=ETHER)
    relayer = chain_env.registry(chain_env.relayer)
    v1 = chain_env.v1.address
    result = relayer.claim_many(0, v1, batch(tree, leaves[1:5]))
    expected = 7 * ETHER * PARAMS.emission_per_epoch // (42 * ETHER)
    for index, _, payout, _ in leaves[1:5]:
        assert relayer.token_balance(payout) == expected
        assert relayer.is_claimed(0, v1, index)
    events = relayer.claimed_in(result)
    assert [e["receiptHash"] for e in events] == [leaf[1] for leaf in leaves[1:5]]
    assert {e["tokens"] for e in events} == {expected} and {e["validator"] for e in events} == {v1}
    single = relayer.claim(0, v1, *leaves[0], tree.proof(leaf_hash(*leaves[0])))  # same amount alone
    assert relayer.claimed_in(single)[0]["tokens"] == expected
    assert not relayer.is_claimed(0, v1, 5)
    assert relayer.token_balance(chain_env.relayer.address) == 0


def test_claimed_leaves_and_repeats_inside_a_batch_are_skipped(chain_env: ChainEnv) -> None:
    payout = chain_env.miner.address
    leaves = receipts(300, payout, 10**17)
    reg, tree = posted_epoch(chain_env, leaves)
    v1 = chain_env.v1.address
    reg.claim(0, v1, *leaves[3], tree.proof(leaf_hash(*leaves[3])))
    picked = [leaves[3], leaves[4], leaves[4], leaves[260], leaves[3], leaves[260]]  # 2 new, 4 repeats
    result = reg.claim_many(0, v1, batch(tree, picked))
    assert [e["receiptHash"] for e in reg.claimed_in(result)] == [leaves[4][1], leaves[260][1]]
    per_leaf = PARAMS.emission_per_epoch // 300
    assert reg.token_balance(payout) == 3 * per_leaf  # leaf 3 once (single claim), 4 and 260 once each
    assert [i for i in range(300) if reg.is_claimed(0, v1, i)] == [3, 4, 260]
    # The posted total counts each leaf once: the remaining 297 leaves still fit under it.
    assert reg.post(0, v1).claimed == 3 * 10**17  # type: ignore[union-attr]
    # A batch of nothing but claimed leaves is a no-op transaction, not a revert.
    again = reg.claim_many(0, v1, batch(tree, [leaves[4], leaves[3]]))
    assert reg.claimed_in(again) == [] and reg.token_balance(payout) == 3 * per_leaf


def test_a_faulty_leaf_reverts_the_whole_batch(chain_env: ChainEnv) -> None:
    leaves = fresh_leaves(4, 250 * ETHER)
    reg = chain_env.registry(chain_env.v1)
    reg.register(ETHER)
    tree = MerkleTree(leaf_hash(*leaf) for leaf in leaves)
    chain_env.advance_to_epoch(1)
    reg.post_epoch(0, tree.root, FILE_HASH, 1000 * ETHER)
    v1 = chain_env.v1.address
    good = batch(tree, leaves[:3])
    expect_revert("ClaimNotOpen", reg.claim_many, 0, v1, good)
    chain_env.advance_to_epoch(2)
    expect_revert("EmptyBatch", reg.claim_many, 0, v1, [])
    expect_revert("NoPost", reg.claim_many, 0, chain_env.v2.address, good)
    expect_revert("NoPost", reg.claim_many, 1, v1, good)
    i, rh, payout, amount, proof = good[1]
    for bad, name in [
        ((i, rh, payout, amount + 1, proof), "InvalidProof"),  # inflated amount
        ((i, rh, chain_env.relayer.address, amount, proof), "InvalidProof"),  # stolen payout
        ((i + 1, rh, payout, amount, proof), "InvalidProof"),  # another index
        ((i, rh, payout, amount, proof[:-1]), "InvalidProof"),  # truncated proof
        ((i, rh, ZERO, amount, proof), "ZeroPayout"),
    ]:
        expect_revert(name, reg.claim_many, 0, v1, [good[0], bad, good[2]])
    assert not any(reg.is_claimed(0, v1, n) for n in range(4))  # nothing of a reverted batch stays
    assert all(reg.token_balance(leaf[2]) == 0 for leaf in leaves)
    reg.claim_many(0, v1, good)
    assert [reg.is_claimed(0, v1, n) for n in range(4)] == [True, True, True, False]


def test_a_batch_cannot_exceed_the_posted_total(chain_env: ChainEnv) -> None:
    leaves = fresh_leaves(3, 600 * ETHER)
    reg = chain_env.registry(chain_env.v1)
    reg.register(ETHER)
    tree = MerkleTree(leaf_hash(*leaf) for leaf in leaves)
    chain_env.advance_to_epoch(1)
    reg.post_epoch(0, tree.root, FILE_HASH, 1000 * ETHER)  # lies: the leaves sum to 1800
    chain_env.advance_to_epoch(2)
    v1 = chain_env.v1.address
    err = expect_revert("ExceedsTotal", reg.claim_many, 0, v1, batch(tree, leaves))
    assert err.error_args == {"claimed": 1200 * ETHER, "total": 1000 * ETHER}
    assert not reg.is_claimed(0, v1, 0)
    reg.claim_many(0, v1, batch(tree, leaves[:1]))  # one leaf fits
    expect_revert("ExceedsTotal", reg.claim_many, 0, v1, batch(tree, leaves[1:2]))


def test_batch_gas_per_claim_is_below_single_claims(chain_env: ChainEnv) -> None:
    leaves = fresh_leaves(64, 10**17)
    reg, tree = posted_epoch(chain_env, leaves)
    v1 = chain_env.v1.address
    singles = [reg.claim(0, v1, *leaf, tree.proof(leaf_hash(*leaf))).gas_used for leaf in leaves[1:11]]
    many = reg.claim_many(0, v1, batch(tree, leaves[11:21])).gas_used
    assert many / 10 < 0.8 * min(singles)  # the post's reads, the base fee and the totals are shared


def test_claim_proofs_batches_per_post_and_reports_each_proof(chain_env: ChainEnv) -> None:
    """Proofs of two validators' posts: one claimMany per post, a single claim for a post with one
    leaf, a proof against another root refused, a claimed one and a repeated one skipped."""
    v1, v2 = chain_env.v1, chain_env.v2
    domain = make_domain(registry=chain_env.deployment.registry)
    miners = [to_checksum_address(os.urandom(20)) for _ in range(4)]
    files = {}
    for validator, payees in ((v1, miners), (v2, miners[:1])):
        chain_env.registry(validator).register(ETHER)
        signed = [
            sign_receipt(make_receipt(validator.address, m, 10 * ETHER, nonce=n), domain, validator)
            for n, m in enumerate(payees)
        ]
        files[validator.address] = EpochFile.build(0, validator.address, domain, signed)
    chain_env.advance_to_epoch(1)
    for validator in (v1, v2):
        built = files[validator.address]
        chain_env.registry(validator).post_epoch(0, built.root, built.file_hash, built.total)
    chain_env.advance_to_epoch(2)
    relayer = chain_env.registry(chain_env.relayer)
    p1 = files[v1.address].proofs(issued_at=1)
    [p2] = files[v2.address].proofs(issued_at=1)
    relayer.claim(0, v1.address, p1[0].index, p1[0].receipt_hash, p1[0].payout, p1[0].amount, p1[0].proof)
    wrong_root = dataclasses.replace(p1[2], root=os.urandom(32))
    outcomes = claim_proofs(relayer, [p1[0], p1[1], wrong_root, p1[3], p1[1], p2, p1[2]], max_batch=2)
    status = [(o.proof.validator, o.proof.index, o.status) for o in outcomes]
    assert sorted(status) == sorted(
        [
            (v1.address, p1[0].index, "skipped"),  # claimed before
            (v1.address, p1[1].index, "skipped"),  # listed twice: claimed once
            (v1.address, p1[2].index, "refused"),  # a root that is not on chain
            (v1.address, p1[1].index, "claimed"),
            (v1.address, p1[3].index, "claimed"),
            (v1.address, p1[2].index, "claimed"),
            (v2.address, p2.index, "claimed"),
        ]
    )
    refused = next(o for o in outcomes if o.status == "refused")
    assert "differs from the root posted on chain" in refused.message
    claimed = [o for o in outcomes if o.status == "claimed"]
    v1_txs = {o.result.tx_hash for o in claimed if o.proof.validator == v1.address}  # type: ignore[union-attr]
    assert len(v1_txs) == 2  # three leaves, batches of at most two
    # Equal stakes: each post is worth half the emission; v1's 4 leaves 1/8 each, v2's one leaf 1/2.
    expected = dict.fromkeys(miners, PARAMS.emission_per_epoch // 8)
    expected[p2.payout] += PARAMS.emission_per_epoch // 2
    assert {m: relayer.token_balance(m) for m in miners} == expected
    with pytest.raises(ValueError, match="max_batch"):
        claim_proofs(relayer, [], max_batch=0)
