"""Deterministic shard assignment: who trains on what in a round.

Over the network the rule is `shard_for` (per address, named by DilocoRound.shard_seed; used by both
the validator and the miners). `assign_shards` below is the in-process rule (bench, in-process rounds),
which needs the round's whole set of miners.

Every party computes the same assignment from (round miners, round number, shard seed) alone, so the
validator knows each miner's shard without asking. Miners are ordered by sha256(seed, round, address)
and take the shards of a round-specific permutation in that order: within a round no two miners get
the same shard while miners <= shards. With more miners than shards the permutation wraps, and the
miner's own batch-order seed (`miner_seed`) still keeps their computations apart.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence


def _digest(*parts: object) -> bytes:
    text = "\x1f".join(str(p) for p in parts)
    return hashlib.sha256(text.encode("utf-8")).digest()


def miner_seed(miner: str, round_no: int, seed: int) -> int:
    """A 63-bit seed for the miner's batch order in this round."""
    return int.from_bytes(_digest("batch", seed, round_no, miner.lower())[:8], "big") >> 1


def shard_for(address: str, round_no: int, shard_seed: bytes, shard_count: int) -> int:
    """The network rule (DilocoRound.shard_seed): uint256(sha256(seed || uint32 round || address)) mod count.

    Per address, so the validator and each miner compute a miner's shard from the signed round alone,
    with no per-miner message; two miners may share a shard (their batch orders still differ through
    `miner_seed`). ``address`` is the 20 raw bytes of the EVM address, ``round`` big-endian.
    """
    if shard_count < 1:
        raise ValueError("shard_for: shard_count must be at least 1")
    if len(shard_seed) != 32:
        raise ValueError("shard_for: shard_seed must be 32 bytes")
    raw = bytes.fromhex(address.lower().removeprefix("0x"))
    if len(raw) != 20:
        raise ValueError(f"shard_for: {address!r} is not a 20-byte address")
    digest = hashlib.sha256(shard_seed + round_no.to_bytes(4, "big") + raw).digest()
    return int.from_bytes(digest, "big") % shard_count


def assign_shards(miners: Sequence[str], round_no: int, seed: int, n_shards: int) -> dict[str, int]:
    """{miner address: shard index}; the same on every machine for the same inputs."""
    if n_shards < 1:
        raise ValueError("assign_shards: n_shards must be at least 1")
    unique = sorted({m.lower() for m in miners})
    if len(unique) != len(miners):
        raise ValueError("assign_shards: a miner appears twice (addresses compare case-insensitively)")
    order = sorted(unique, key=lambda m: _digest("order", seed, round_no, m))
    perm = list(range(n_shards))
    random.Random(_digest("perm", seed, round_no)).shuffle(perm)
    by_lower = {m.lower(): m for m in miners}
    return {by_lower[m]: perm[i % n_shards] for i, m in enumerate(order)}
