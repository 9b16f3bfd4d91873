"""Merkle trees that OpenZeppelin's ``MerkleProof`` verifies (sorted-pair keccak256).

A leaf is ``keccak256(bytes.concat(keccak256(abi.encode(index, receiptHash, payout, amount))))``,
``index`` the leaf's number in its epoch (0..n-1: the registry keeps claimed leaves as bits of a
bitmap by index). The double hash (OpenZeppelin's recommendation) keeps a 64-byte inner node from
ever passing as a leaf. Leaves are sorted before building, so the root does not depend on the
order they came in; a lone node at the end of a level moves up unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from eth_utils.crypto import keccak


def leaf_hash(index: int, receipt_hash: bytes, payout: str, amount: int) -> bytes:
    """The leaf the registry's ``claim`` recomputes from its arguments."""
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < 2**64:
        raise ValueError(f"leaf index must be an integer in [0, 2**64), got {index!r}")
    if len(receipt_hash) != 32:
        raise ValueError(f"receipt hash must be 32 bytes, got {len(receipt_hash)}")
    if not 0 <= amount < 2**256:
        raise ValueError("amount must fit in uint256")
    # abi.encode(uint256, bytes32, address, uint256): four 32-byte words, the address left-padded.
    # Written out by hand because eth_abi's generic encoder is ~20x slower (10,000 leaves per epoch).
    encoded = (
        index.to_bytes(32, "big")
        + receipt_hash
        + bytes(12)
        + _address_bytes(payout)
        + amount.to_bytes(32, "big")
    )
    return bytes(keccak(keccak(encoded)))


def _address_bytes(address: str) -> bytes:
    raw = address.removeprefix("0x")
    if len(raw) != 40:
        raise ValueError(f"payout must be a 20-byte hex address, got {address!r}")
    return bytes.fromhex(raw)


def hash_pair(a: bytes, b: bytes) -> bytes:
    return bytes(keccak(a + b if a < b else b + a))


class MerkleTree:
    """A sorted-pair Merkle tree over distinct 32-byte leaves."""

    def __init__(self, leaves: Iterable[bytes]) -> None:
        ordered = sorted(leaves)
        if not ordered:
            raise ValueError("a Merkle tree needs at least one leaf")
        if any(len(leaf) != 32 for leaf in ordered):
            raise ValueError("every leaf must be 32 bytes")
        if len(set(ordered)) != len(ordered):
            raise ValueError("leaves must be distinct (a receipt appears twice)")
        self._index = {leaf: i for i, leaf in enumerate(ordered)}
        self._levels: list[list[bytes]] = [ordered]
        while len(self._levels[-1]) > 1:
            level = self._levels[-1]
            parents = [hash_pair(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
            if len(level) % 2:
                parents.append(level[-1])
            self._levels.append(parents)

    @property
    def root(self) -> bytes:
        return self._levels[-1][0]

    def __len__(self) -> int:
        return len(self._levels[0])

    def __contains__(self, leaf: object) -> bool:
        return leaf in self._index

    def proof(self, leaf: bytes) -> list[bytes]:
        """Sibling hashes from ``leaf`` up to the root."""
        if leaf not in self._index:
            raise KeyError("leaf is not in this tree")
        index, proof = self._index[leaf], []
        for level in self._levels[:-1]:
            sibling = index ^ 1
            if sibling < len(level):
                proof.append(level[sibling])
            index //= 2
        return proof


def verify_proof(proof: Sequence[bytes], root: bytes, leaf: bytes) -> bool:
    """``MerkleProof.verify`` in Python."""
    node = leaf
    for sibling in proof:
        if len(sibling) != 32:
            return False
        node = hash_pair(node, sibling)
    return node == root
