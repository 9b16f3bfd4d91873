from __future__ import annotations

import pytest
from eth_abi.abi import encode
from eth_utils.crypto import keccak
from hypothesis import given, settings
from hypothesis import strategies as st

from wallet.merkle import MerkleTree, leaf_hash, verify_proof

hashes = st.binary(min_size=32, max_size=32)
addresses = st.binary(min_size=20, max_size=20).map(lambda b: "0x" + b.hex())


@given(
    st.integers(min_value=0, max_value=2**64 - 1),
    hashes,
    addresses,
    st.integers(min_value=0, max_value=2**256 - 1),
)
def test_leaf_matches_solidity_abi_encode_double_hash(
    index: int, receipt_hash: bytes, payout: str, amount: int
) -> None:
    encoded = encode(["uint256", "bytes32", "address", "uint256"], [index, receipt_hash, payout, amount])
    assert leaf_hash(index, receipt_hash, payout, amount) == keccak(keccak(encoded))


def test_the_index_is_part_of_the_leaf() -> None:
    args = (b"\x07" * 32, "0x" + "11" * 20, 5)
    assert leaf_hash(0, *args) != leaf_hash(1, *args)


@settings(max_examples=40)
@given(st.sets(hashes, min_size=1, max_size=40))
def test_every_leaf_proves_and_a_foreign_leaf_does_not(leaves: set[bytes]) -> None:
    tree = MerkleTree(leaves)
    for leaf in leaves:
        assert verify_proof(tree.proof(leaf), tree.root, leaf)
    stranger = keccak(b"not a leaf")
    assert not verify_proof(tree.proof(next(iter(leaves))), tree.root, stranger)
    assert MerkleTree(sorted(leaves, reverse=True)).root == tree.root  # order-independent


def test_tree_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="at least one"):
        MerkleTree([])
    with pytest.raises(ValueError, match="distinct"):
        MerkleTree([b"\x01" * 32, b"\x01" * 32])
    with pytest.raises(ValueError, match="32 bytes"):
        leaf_hash(0, b"short", "0x" + "00" * 20, 1)
    with pytest.raises(ValueError, match="20-byte"):
        leaf_hash(0, b"\x00" * 32, "0x1234", 1)
    for index in (-1, 2**64, True, 1.0):
        with pytest.raises(ValueError, match="leaf index"):
            leaf_hash(index, b"\x00" * 32, "0x" + "00" * 20, 1)  # type: ignore[arg-type]
    with pytest.raises(KeyError):
        MerkleTree([b"\x01" * 32]).proof(b"\x02" * 32)
