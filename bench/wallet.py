"""Wallet benchmark: receipt signing and verification rates, epoch post and claim gas, and
transaction latency on the embedded chain. Prints one JSON object.

Claim gas (10,000-leaf epoch, 14-node proofs unless noted): (a) the first claim in a bitmap word
paying a fresh payout, (b) a later claim in the same word paying a fresh payout, (c) a payout that
already holds tokens (in a word with a bit set, and first in its word), and the mean over the 256
claims of one whole word, every payout fresh (its first claim pays the new word slot). claimMany:
gas per claim for batches of 1, 10 and 50 (fresh payouts, a word already opened) and the ratio to
single claims of the same kind.

Baselines measured in the same run: signing and verification through eth-account's
``encode_typed_data`` path (``protocol.signing.sign`` / ``recover_signer``) against the wallet's
hand-encoded digest + libsecp256k1 path; post gas with
10 miners against 10,000; in-process transaction latency against the same chain over HTTP JSON-RPC.
Pinned to one core where the OS allows it.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

# Run as `python bench/wallet.py`, this file's folder comes first on sys.path, and this file (and
# bench/protocol.py) would shadow the `wallet` and `protocol` packages: drop that folder.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from eth_utils.address import to_checksum_address  # noqa: E402

from protocol.messages import Receipt  # noqa: E402
from protocol.signing import Domain, recover_signer, sign  # noqa: E402
from wallet.chain import ChainClient  # noqa: E402
from wallet.devnet import start_embedded_chain  # noqa: E402
from wallet.merkle import MerkleTree, leaf_hash  # noqa: E402
from wallet.receipts import sign_receipt, verify_receipt  # noqa: E402
from wallet.registry import Registry, RegistryParams  # noqa: E402
from wallet.signer import LocalSigner  # noqa: E402

ETHER = 10**18


def receipt(validator: str, nonce: int) -> Receipt:
    return Receipt(
        task_id=os.urandom(32), miner=validator, payout=validator, validator=validator, rank=1, pool_size=8,
        test_loss_e9=2_400_000_000, synthetic_loss_e9=2_600_000_000, score_e9=10**9, amount=5 * ETHER,
        epoch=3, nonce=nonce, issued_at=1_700_000_000_000,
    )  # fmt: skip


def rate(fn, items) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    for item in items:
        fn(item)
    return len(items) / (time.perf_counter() - start)


def bench_receipts(n: int = 1000) -> dict[str, float]:
    signer = LocalSigner.create()
    domain = Domain(131277322940537, "0x" + "ab" * 20, os.urandom(32))
    receipts = [receipt(signer.address, i) for i in range(n)]
    sign_rate = rate(lambda r: sign_receipt(r, domain, signer), receipts)
    sign_baseline = rate(lambda r: sign(r, domain, signer), receipts[: n // 2])
    signed = [sign_receipt(r, domain, signer) for r in receipts]
    verify_rate = rate(lambda s: verify_receipt(s, domain), signed)
    baseline = rate(lambda s: recover_signer(s, domain), signed[: n // 2])
    return {
        "receipt_sign_per_s": round(sign_rate),
        "receipt_sign_baseline_typed_data_per_s": round(sign_baseline),
        "receipt_verify_per_s": round(verify_rate),
        "receipt_verify_baseline_eth_account_per_s": round(baseline),
        "receipt_verify_speedup": round(verify_rate / baseline, 2),
    }


Leaf = tuple[int, bytes, str, int]  # index, receipt hash, payout, amount


def bench_gas() -> dict[str, object]:
    """Post gas (10 vs 10,000 leaves) and claim gas in a 10,000-leaf epoch, always with the longest
    proofs (14 nodes). Claimed leaves are bits of one storage word per 256 indexes: the first claim
    in a word creates that slot (zero -> non-zero), later ones in the word rewrite it."""
    validator, relayer = LocalSigner.create(), LocalSigner.create()
    devnet = start_embedded_chain([validator], serve=False, params=RegistryParams(epoch_length=3600))
    devnet.fund(relayer.address)
    reg = devnet.registry(validator)
    small = MerkleTree(os.urandom(32) for _ in range(10))
    payout = LocalSigner.create().address
    others = [to_checksum_address(os.urandom(20)) for _ in range(10_000)]

    # Leaves 0..199 (bitmap word 0) and 768 (first of word 3) pay one address (a miner claiming
    # again); the rest pay fresh ones.
    def payee(i: int) -> str:
        return payout if i < 200 or i == 768 else others[i]

    leaves: list[Leaf] = [(i, os.urandom(32), payee(i), ETHER) for i in range(10_000)]
    started = time.perf_counter()
    large = MerkleTree(leaf_hash(*leaf) for leaf in leaves)
    tree_seconds = time.perf_counter() - started
    devnet.advance_to_epoch(1)
    gas_10 = reg.post_epoch(0, small.root, b"\x01" * 32, 10).gas_used
    devnet.advance_to_epoch(2)
    gas_10k = reg.post_epoch(1, large.root, b"\x01" * 32, 10_000 * ETHER).gas_used
    devnet.advance_to_epoch(3)
    relay = devnet.registry(relayer)

    def depth(leaf: Leaf) -> int:
        return len(large.proof(leaf_hash(*leaf)))

    def claim(leaf: Leaf) -> int:
        return relay.claim(1, validator.address, *leaf, large.proof(leaf_hash(*leaf))).gas_used

    def deepest(word: int, n: int) -> list[Leaf]:
        return sorted(leaves[word * 256 : word * 256 + 256], key=lambda leaf: -depth(leaf))[:n]

    same = sorted(leaves[:200], key=lambda leaf: -depth(leaf))[:2]
    first_mint = claim(same[0])  # first mint on the registry, first claim in word 0
    holding = claim(same[1])  # payout already holds tokens; word 0 already has a bit
    fresh_first, fresh_later = deepest(1, 2)
    gas_fresh_first = claim(fresh_first)  # word 1's first claim, the payout's first tokens
    gas_fresh_later = claim(fresh_later)  # word 1 again, another payout's first tokens
    holding_first_in_word = claim(leaves[768])  # payout holds tokens, word 3's first claim
    run = [claim(leaf) for leaf in leaves[512:768]]  # all of word 2, in index order, every payout fresh
    depths = [depth(leaf) for leaf in leaves[512:768]]
    batches = bench_batches(relay, validator.address, leaves, large)
    return {
        "post_gas_10_miners": gas_10,
        "post_gas_10000_miners": gas_10k,
        "post_gas_ratio_10000_vs_10": round(gas_10k / gas_10, 4),
        "claim_gas_first_mint_on_registry": first_mint,
        "claim_gas_a_first_in_word_fresh_payout": gas_fresh_first,
        "claim_gas_b_later_in_word_fresh_payout": gas_fresh_later,
        "claim_gas_c_payout_already_holding_tokens": holding,
        "claim_gas_c_payout_holding_tokens_first_in_word": holding_first_in_word,
        "claim_proof_nodes_c_first_in_word": depth(leaves[768]),
        "claim_gas_mean_256_consecutive_fresh_payout": round(statistics.mean(run), 1),
        "claim_gas_256_run_first_min_max": [run[0], min(run), max(run)],
        "claim_gas_256_run_under_100k": sum(g < 100_000 for g in run),
        "claim_proof_nodes_10000_miners": depth(fresh_first),
        "claim_proof_nodes_256_run_min_max": [min(depths), max(depths)],
        "merkle_tree_10000_leaves_s": round(tree_seconds, 3),
        **batches,
    }


def bench_batches(relay: Registry, validator: str, leaves: list[Leaf], tree: MerkleTree) -> dict[str, object]:
    """claimMany per-claim gas for batches of 1, 10 and 50 against single claims of the same kind:
    leaves of bitmap word 4 (1024..1279, its slot opened by a first single claim), fresh payouts."""

    def proved(leaf: Leaf) -> tuple[int, bytes, str, int, list[bytes]]:
        return (*leaf, tree.proof(leaf_hash(*leaf)))

    relay.claim(1, validator, *proved(leaves[1024]))  # opens word 4
    singles = [relay.claim(1, validator, *proved(leaf)).gas_used for leaf in leaves[1025:1045]]
    single = statistics.mean(singles)
    out: dict[str, object] = {"claim_gas_single_same_word_fresh_payout_mean_20": round(single, 1)}
    start = 1045
    for size in (1, 10, 50):
        gas = relay.claim_many(1, validator, [proved(leaf) for leaf in leaves[start : start + size]]).gas_used
        start += size
        out[f"claim_many_{size}_gas_per_claim"] = round(gas / size, 1)
        out[f"claim_many_{size}_vs_single"] = round(gas / size / single, 3)
    return out


def latency(client: ChainClient, registry: str, n: int) -> dict[str, float]:
    reg = Registry(client, registry)
    times = [reg.add_stake(10**9).seconds for _ in range(n)]
    p95 = sorted(times)[int(n * 0.95)]
    return {"median_ms": round(statistics.median(times) * 1000, 1), "p95_ms": round(p95 * 1000, 1)}


def bench_latency(n: int = 40) -> dict[str, object]:
    validator = LocalSigner.create()
    with start_embedded_chain([validator]) as devnet:
        in_process = latency(devnet.client(validator), devnet.deployment.registry, n)
        over_http = latency(ChainClient.connect(devnet.rpc_url, validator), devnet.deployment.registry, n)
    return {
        "tx_latency_in_process": in_process,
        "tx_latency_json_rpc_http": over_http,
        "tx_latency_http_vs_in_process": round(over_http["median_ms"] / in_process["median_ms"], 2),
    }


def main() -> None:
    pinned = False
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
        pinned = True
    result: dict[str, object] = {"bench": "wallet", "pinned_to_one_core": pinned}
    result.update(bench_receipts())
    result.update(bench_gas())
    result.update(bench_latency())
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
