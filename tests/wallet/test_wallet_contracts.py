"""The registry and token on the embedded chain: every revert path and the reward arithmetic."""

from __future__ import annotations

import os

import pytest
from wallet_fixtures import ETHER, PARAMS, ChainEnv

from wallet.chainerrors import RevertError
from wallet.merkle import MerkleTree, leaf_hash
from wallet.registry import RegistryParams, deploy

ROOT = b"\x11" * 32
FILE_HASH = b"\x22" * 32


def expect_revert(name: str, action, *args, **kwargs):  # type: ignore[no-untyped-def]
    with pytest.raises(RevertError) as info:
        action(*args, **kwargs)
    assert info.value.name == name, str(info.value)
    return info.value


Leaf = tuple[int, bytes, str, int]  # index, receipt hash, payout, amount


def receipts(n: int, payout: str, amount: int) -> list[Leaf]:
    return [(i, os.urandom(32), payout, amount) for i in range(n)]


def posted_epoch(env: ChainEnv, leaves: list[Leaf], stake: int = ETHER):  # type: ignore[no-untyped-def]
    """v1 registers, posts ``leaves`` for epoch 0, and the chain moves to where claims are open."""
    reg = env.registry(env.v1)
    reg.register(stake)
    tree = MerkleTree(leaf_hash(*leaf) for leaf in leaves)
    env.advance_to_epoch(1)
    reg.post_epoch(0, tree.root, FILE_HASH, sum(leaf[3] for leaf in leaves))
    env.advance_to_epoch(2)
    return reg, tree


# --- deployment --------------------------------------------------------------------------


def test_deployment_wires_token_to_registry(chain_env: ChainEnv) -> None:
    reg = chain_env.registry()
    assert chain_env.deployment.token == chain_env.deployment.registry  # the registry is the token
    assert reg.client.call(reg.token.functions.symbol()) == "MAG"
    assert reg.client.call(reg.contract.functions.owner()) == chain_env.governance.address
    assert reg.epoch_length() == PARAMS.epoch_length
    assert reg.current_epoch() == 0


@pytest.mark.parametrize(("field", "name"), [("epoch_length", "epochLength"), ("min_stake", "minStake")])
def test_bad_constructor_parameter_reverts(chain_env: ChainEnv, field: str, name: str) -> None:
    params = RegistryParams()
    object.__setattr__(params, field, 0)  # bypass the Python-side check to reach the contract's
    err = expect_revert("BadParameter", deploy, chain_env.client(chain_env.governance), params)
    assert err.error_args == {"name": name}


def test_nothing_but_a_claim_mints() -> None:
    """No external mint: tokens come only from claim/claimMany (the registry inherits the ERC-20)."""
    from wallet.contracts import load_artifact

    functions = {e["name"] for e in load_artifact("MagnetRegistry")["abi"] if e["type"] == "function"}
    assert {"claim", "claimMany", "balanceOf", "transfer", "totalSupply"} <= functions
    assert not {f for f in functions if "mint" in f.lower()}


# --- validators ----------------------------------------------------------------------------


def test_register_add_stake_and_events(chain_env: ChainEnv) -> None:
    reg = chain_env.registry(chain_env.v1)
    reg.register(2 * ETHER)
    reg.add_stake(ETHER)
    info = reg.validator(chain_env.v1.address)
    assert (info.stake, info.registered, info.removed) == (3 * ETHER, True, False)
    assert reg.client.balance(chain_env.deployment.registry) == 3 * ETHER


def test_register_reverts(chain_env: ChainEnv) -> None:
    reg = chain_env.registry(chain_env.v1)
    err = expect_revert("StakeTooLow", reg.register, ETHER - 1)
    assert err.error_args == {"stake": ETHER - 1, "minStake": ETHER}
    reg.register(ETHER)
    expect_revert("AlreadyRegistered", reg.register, ETHER)


def test_stake_changes_need_a_registered_validator(chain_env: ChainEnv) -> None:
    reg = chain_env.registry(chain_env.v2)
    expect_revert("NotValidator", reg.add_stake, ETHER)
    expect_revert("NotValidator", reg.request_unstake, ETHER)
    reg.register(ETHER)
    expect_revert("ZeroAmount", reg.add_stake, 0)
    expect_revert("ZeroAmount", reg.request_unstake, 0)
    expect_revert("UnstakeTooLarge", reg.request_unstake, 2 * ETHER)


def test_unstake_then_withdraw_after_the_delay(chain_env: ChainEnv) -> None:
    reg = chain_env.registry(chain_env.v1)
    reg.register(3 * ETHER)
    expect_revert("NothingToWithdraw", reg.withdraw)
    expect_revert("StakeTooLow", reg.request_unstake, 2 * ETHER + 1)  # would leave less than min
    reg.request_unstake(2 * ETHER)
    assert reg.validator(chain_env.v1.address).stake == ETHER
    expect_revert("StillLocked", reg.withdraw)
    chain_env.chain.increase_time(PARAMS.unstake_delay + 1)
    before = reg.client.balance(chain_env.v1.address)
    fee = reg.withdraw()
    gas_cost = fee.gas_used * int(fee.receipt["effectiveGasPrice"])
    assert reg.client.balance(chain_env.v1.address) == before + 2 * ETHER - gas_cost
    reg.request_unstake(ETHER)  # everything: no longer a validator
    assert not reg.validator(chain_env.v1.address).registered
    expect_revert("NotValidator", reg.post_epoch, 0, ROOT, FILE_HASH, 1)


def test_withdraw_to_an_account_that_refuses_funds_reverts(chain_env: ChainEnv) -> None:
    client = chain_env.client(chain_env.v1)
    deployed = client.deploy("RejectingValidator", chain_env.deployment.registry)
    assert deployed.contract_address is not None
    rejecting = client.contract("RejectingValidator", deployed.contract_address)
    client.transact(rejecting.functions.register(), value=ETHER)
    client.transact(rejecting.functions.unstakeAll(ETHER))
    chain_env.chain.increase_time(PARAMS.unstake_delay + 1)
    expect_revert("TransferFailed", client.transact, rejecting.functions.withdraw())


def test_governance_removes_a_validator(chain_env: ChainEnv) -> None:
    v1 = chain_env.registry(chain_env.v1)
    v1.register(2 * ETHER)
    expect_revert("OwnableUnauthorizedAccount", v1.remove_validator, chain_env.v1.address, "self")
    gov = chain_env.registry(chain_env.governance)
    expect_revert("NotValidator", gov.remove_validator, chain_env.v2.address, "never registered")
    gov.remove_validator(chain_env.v1.address, "served bad receipts")
    info = v1.validator(chain_env.v1.address)
    assert (info.stake, info.pending, info.registered, info.removed) == (0, 2 * ETHER, False, True)
    expect_revert("ValidatorIsRemoved", v1.register, ETHER)
    expect_revert("NotValidator", v1.post_epoch, 0, ROOT, FILE_HASH, 1)
    chain_env.chain.increase_time(PARAMS.unstake_delay + 1)
    v1.withdraw()  # the stake is returned, not confiscated


def test_the_validator_set_is_read_in_pages_without_logs(chain_env: ChainEnv) -> None:
    """validatorPage lists every address once, in registration order, with its active stake: 0 once
    removed or fully unstaked; a validator that registers again is not listed twice."""
    v1, v2 = chain_env.registry(chain_env.v1), chain_env.registry(chain_env.v2)
    reader = chain_env.registry()
    assert reader.active_validators() == {}
    v1.register(2 * ETHER)
    v2.register(ETHER)
    both = {chain_env.v1.address: 2 * ETHER, chain_env.v2.address: ETHER}
    assert reader.active_validators() == both
    assert reader.active_validators(page=1) == both  # two pages of one
    page = reader.contract.functions.validatorPage
    assert reader.client.call(page(1, 5)) == [[chain_env.v2.address], [ETHER]]  # the list's end cuts it
    assert reader.client.call(page(7, 5)) == [[], []]  # past the end: empty, no revert
    v2.request_unstake(ETHER)  # everything: out of the set, still listed
    assert reader.active_validators() == {chain_env.v1.address: 2 * ETHER}
    v2.register(3 * ETHER)
    assert reader.client.call(reader.contract.functions.validatorCount()) == 2  # listed once
    assert reader.active_validators(page=1)[chain_env.v2.address] == 3 * ETHER
    chain_env.registry(chain_env.governance).remove_validator(chain_env.v1.address, "test")
    assert reader.active_validators() == {chain_env.v2.address: 3 * ETHER}
    assert reader.min_stake() == PARAMS.min_stake


# --- epoch posts -----------------------------------------------------------------------------


def test_post_only_for_the_epoch_that_just_ended(chain_env: ChainEnv) -> None:
    reg = chain_env.registry(chain_env.v1)
    expect_revert("NotValidator", reg.post_epoch, 0, ROOT, FILE_HASH, 1)
    reg.register(ETHER)
    expect_revert("EpochNotOpen", reg.post_epoch, 0, ROOT, FILE_HASH, 1)  # epoch 0 is still running
    chain_env.advance_to_epoch(3)
    expect_revert("EpochNotOpen", reg.post_epoch, 3, ROOT, FILE_HASH, 1)  # future
    expect_revert("EpochNotOpen", reg.post_epoch, 1, ROOT, FILE_HASH, 1)  # past
    expect_revert("EmptyPost", reg.post_epoch, 2, b"\x00" * 32, FILE_HASH, 1)
    expect_revert("EmptyPost", reg.post_epoch, 2, ROOT, FILE_HASH, 0)
    reg.post_epoch(2, ROOT, FILE_HASH, 5)
    err = expect_revert("AlreadyPosted", reg.post_epoch, 2, ROOT, FILE_HASH, 5)  # a replayed post
    assert "replay" in str(err)
    post = reg.post(2, chain_env.v1.address)
    assert post is not None and (post.root, post.epoch_file_hash, post.total) == (ROOT, FILE_HASH, 5)
    assert reg.posters(2) == [chain_env.v1.address]
    [event] = reg.epoch_posts()
    assert (event["epoch"], event["validator"], event["root"], event["total"]) == (
        2,
        chain_env.v1.address,
        ROOT,
        5,
    )


# --- claims -----------------------------------------------------------------------------------


def test_claim_pays_the_payout_whoever_submits(chain_env: ChainEnv) -> None:
    payout = chain_env.miner.address
    leaves = [*receipts(3, payout, 100 * ETHER), (3, os.urandom(32), chain_env.v2.address, 700 * ETHER)]
    _, tree = posted_epoch(chain_env, leaves)
    relayer = chain_env.registry(chain_env.relayer)
    index, receipt_hash, _, amount = leaves[0]
    v1 = chain_env.v1.address
    assert not relayer.is_claimed(0, v1, index)
    relayer.claim(0, v1, *leaves[0], tree.proof(leaf_hash(*leaves[0])))
    # v1 is the only poster and its leaves sum to the emission: each leaf pays exactly its amount.
    assert relayer.token_balance(payout) == 100 * ETHER
    assert relayer.token_balance(chain_env.relayer.address) == 0
    assert relayer.is_claimed(0, v1, index)
    assert [relayer.is_claimed(0, v1, i) for i in (1, 2, 3, 256)] == [False] * 4
    [claim] = relayer.claims(payout=payout)
    assert (claim["receiptHash"], claim["tokens"], claim["validator"]) == (receipt_hash, amount, v1)


def test_claim_reverts(chain_env: ChainEnv) -> None:
    payout = chain_env.miner.address
    leaves = receipts(4, payout, 250 * ETHER)
    reg = chain_env.registry(chain_env.v1)
    reg.register(ETHER)
    tree = MerkleTree(leaf_hash(*leaf) for leaf in leaves)
    chain_env.advance_to_epoch(1)
    reg.post_epoch(0, tree.root, FILE_HASH, 1000 * ETHER)
    i, rh, _, amount = leaves[0]
    proof = tree.proof(leaf_hash(*leaves[0]))
    v1 = chain_env.v1.address
    expect_revert("ClaimNotOpen", reg.claim, 0, v1, i, rh, payout, amount, proof)  # window still open
    chain_env.advance_to_epoch(2)
    expect_revert("NoPost", reg.claim, 0, chain_env.v2.address, i, rh, payout, amount, proof)
    expect_revert("NoPost", reg.claim, 1, v1, i, rh, payout, amount, proof)
    expect_revert("ZeroPayout", reg.claim, 0, v1, i, rh, "0x" + "00" * 20, amount, proof)
    expect_revert("InvalidProof", reg.claim, 0, v1, i, rh, payout, amount + 1, proof)  # inflated amount
    expect_revert("InvalidProof", reg.claim, 0, v1, i, rh, chain_env.relayer.address, amount, proof)  # stolen
    expect_revert("InvalidProof", reg.claim, 0, v1, i, rh, payout, amount, proof[:-1])  # truncated proof
    expect_revert("InvalidProof", reg.claim, 0, v1, i, rh, payout, amount, [os.urandom(32)] * len(proof))
    reg.claim(0, v1, i, rh, payout, amount, proof)
    err = expect_revert("AlreadyClaimed", reg.claim, 0, v1, i, rh, payout, amount, proof)  # double claim
    assert (err.error_args["epoch"], err.error_args["validator"].lower(), err.error_args["index"]) == (
        0,
        v1.lower(),
        i,
    )
    assert reg.token_balance(payout) == amount


def test_a_leaf_presented_with_another_index_is_refused(chain_env: ChainEnv) -> None:
    """The index is inside the leaf: a claimed leaf cannot be claimed again under a free index."""
    payout = chain_env.miner.address
    leaves = receipts(4, payout, 250 * ETHER)
    reg, tree = posted_epoch(chain_env, leaves)
    v1 = chain_env.v1.address
    _, rh, _, amount = leaves[1]
    proof = tree.proof(leaf_hash(*leaves[1]))
    for wrong in (0, 2, 3, 257, 2**64 - 1):
        expect_revert("InvalidProof", reg.claim, 0, v1, wrong, rh, payout, amount, proof)
    reg.claim(0, v1, *leaves[1], proof)
    expect_revert("InvalidProof", reg.claim, 0, v1, 2, rh, payout, amount, proof)  # no second payment
    assert reg.token_balance(payout) == amount
    assert [reg.is_claimed(0, v1, i) for i in range(4)] == [False, True, False, False]


def test_claims_in_one_bitmap_word_and_across_words(chain_env: ChainEnv) -> None:
    """Two claims in the same 256-bit word both succeed and neither disturbs the other's bit; a
    second word (index >= 256) is independent of the first. The second claim in a word writes a
    warm, non-zero slot: ~17k gas less than the first (figures in bench/wallet.py)."""
    payout = chain_env.miner.address
    leaves = receipts(300, payout, 10**17)
    reg, tree = posted_epoch(chain_env, leaves)
    v1 = chain_env.v1.address
    gas = {}
    for index in (7, 200, 255, 256, 299):
        gas[index] = reg.claim(0, v1, *leaves[index], tree.proof(leaf_hash(*leaves[index]))).gas_used
    claimed = [i for i in range(300) if reg.is_claimed(0, v1, i)]
    assert claimed == [7, 200, 255, 256, 299]
    for index in (7, 200, 256):
        leaf = leaves[index]
        err = expect_revert("AlreadyClaimed", reg.claim, 0, v1, *leaf, tree.proof(leaf_hash(*leaf)))
        assert err.error_args["index"] == index
    assert reg.token_balance(payout) == 5 * (PARAMS.emission_per_epoch // 300)  # 5 equal leaves of 300
    # Same payout each time (its balance slot already exists after the first): the word's first
    # claim pays the new bitmap slot, a later one in the same word does not.
    assert gas[200] < gas[7] - 15_000 and gas[255] < gas[7] - 15_000
    assert gas[299] < gas[256] - 15_000


def test_claims_cannot_exceed_the_posted_total(chain_env: ChainEnv) -> None:
    payout = chain_env.miner.address
    leaves = receipts(2, payout, 600 * ETHER)
    reg = chain_env.registry(chain_env.v1)
    reg.register(ETHER)
    tree = MerkleTree(leaf_hash(*leaf) for leaf in leaves)
    chain_env.advance_to_epoch(1)
    reg.post_epoch(0, tree.root, FILE_HASH, 1000 * ETHER)  # lies: the leaves sum to 1200
    chain_env.advance_to_epoch(2)
    first, second = leaves
    reg.claim(0, chain_env.v1.address, *first, tree.proof(leaf_hash(*first)))
    err = expect_revert(
        "ExceedsTotal", reg.claim, 0, chain_env.v1.address, *second, tree.proof(leaf_hash(*second))
    )
    assert err.error_args == {"claimed": 1200 * ETHER, "total": 1000 * ETHER}


def test_emission_is_split_by_stake_between_posters(chain_env: ChainEnv) -> None:
    payout = chain_env.miner.address
    r1, r2 = chain_env.registry(chain_env.v1), chain_env.registry(chain_env.v2)
    r1.register(ETHER)
    r2.register(3 * ETHER)
    leaf1, leaf2 = (0, os.urandom(32), payout, 10), (0, os.urandom(32), payout, 10)  # unitless weights
    t1, t2 = MerkleTree([leaf_hash(*leaf1)]), MerkleTree([leaf_hash(*leaf2)])
    chain_env.advance_to_epoch(1)
    r1.post_epoch(0, t1.root, FILE_HASH, 10)
    r2.post_epoch(0, t2.root, FILE_HASH, 10)
    chain_env.advance_to_epoch(2)
    r1.add_stake(100 * ETHER)  # stake added after posting does not change the split
    assert r1.validator_share(0, chain_env.v1.address) == 250 * ETHER
    assert r1.validator_share(0, chain_env.v2.address) == 750 * ETHER
    r1.claim(0, chain_env.v1.address, *leaf1, t1.proof(leaf_hash(*leaf1)))
    r1.claim(0, chain_env.v2.address, *leaf2, t2.proof(leaf_hash(*leaf2)))  # index 0 of another validator
    assert r1.token_balance(payout) == PARAMS.emission_per_epoch


def test_one_post_costs_the_same_for_10_and_10000_miners(chain_env: ChainEnv) -> None:
    reg = chain_env.registry(chain_env.v1)
    reg.register(ETHER)
    small = MerkleTree(os.urandom(32) for _ in range(10))
    large = MerkleTree(os.urandom(32) for _ in range(10_000))
    chain_env.advance_to_epoch(1)
    gas_small = reg.post_epoch(0, small.root, FILE_HASH, 10).gas_used
    chain_env.advance_to_epoch(2)
    gas_large = reg.post_epoch(1, large.root, FILE_HASH, 10_000).gas_used
    assert abs(gas_large - gas_small) / gas_small < 0.01


def test_claim_gas_with_10000_miners(chain_env: ChainEnv) -> None:
    """With the longest proof of a 10,000-leaf epoch, every claim costs < 100k gas, the worst case
    included: the first claim in a bitmap word (its new slot) paying a payout's first tokens (its new
    balance slot). Figures in bench/wallet.py."""
    payout = chain_env.miner.address
    leaves = receipts(10_000, payout, 10**17)
    for i in range(20 * 256, 22 * 256, 2):  # even leaves of words 20 and 21 pay fresh addresses
        leaves[i] = (i, leaves[i][1], "0x" + os.urandom(20).hex(), 10**17)
    reg, tree = posted_epoch(chain_env, leaves)
    v1 = chain_env.v1.address

    def depth(leaf: Leaf) -> int:
        return len(tree.proof(leaf_hash(*leaf)))

    word = leaves[20 * 256 : 21 * 256]
    same = sorted(word[1::2], key=lambda leaf: -depth(leaf))[:3]  # odd leaves: `payout`
    fresh = max(word[::2], key=depth)
    assert depth(same[0]) == depth(fresh) == 14
    gas = [reg.claim(0, v1, *leaf, tree.proof(leaf_hash(*leaf))).gas_used for leaf in [*same, fresh]]
    assert gas[0] < 125_000  # the registry's first mint also creates totalSupply and the balance
    assert max(gas[1:3]) < 85_000  # same payout, same word: neither a new balance nor a new word slot
    assert gas[3] < 85_000  # a payout's first tokens, in a word that already has a claimed bit
    worst = max(leaves[21 * 256 : 22 * 256 : 2], key=depth)  # first claim in word 21, fresh payout
    assert depth(worst) == 14
    assert reg.claim(0, v1, *worst, tree.proof(leaf_hash(*worst))).gas_used < 100_000
