"""The two chain steps of rewards, for the validator and the miner roles.

``post_epoch``: a validator posts its epoch file's root, file hash and total (one transaction,
whatever the number of miners). ``claim_with_proof``: anyone checks a ``ReceiptProof`` against the
root read from chain, then claims; tokens go to the proof's payout address. ``claim_proofs``: the
same for many proofs, one ``claimMany`` transaction per post (epoch, validator) and per
``MAX_BATCH`` leaves.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from protocol.messages import ReceiptProof
from protocol.retired import ReceiptProofV1
from wallet.chain import TxResult
from wallet.epochs import EpochFile, EpochFileError, check_proof, require_current_proof
from wallet.registry import Registry

# Leaves per claimMany transaction: 50 leaves of 14-node proofs are ~2 M gas and ~50 kB of calldata.
MAX_BATCH = 50


def post_epoch(registry: Registry, epoch_file: EpochFile) -> TxResult:
    """Post ``epoch_file``'s root; the registry's signer must be the file's validator."""
    signer = registry.client._require_signer()
    if signer.address != epoch_file.validator:
        raise EpochFileError(
            f"epoch file of {epoch_file.validator} cannot be posted by {signer.address}: "
            "unlock that validator's key"
        )
    return registry.post_epoch(epoch_file.epoch, epoch_file.root, epoch_file.file_hash, epoch_file.total)


def claim_with_proof(registry: Registry, proof: ReceiptProof | ReceiptProofV1) -> TxResult | None:
    """Claim ``proof`` after checking it against the root on chain; None if already claimed.

    A v1 proof (no leaf index) raises ``RetiredProofError``: ask the validator for a new proof.
    """
    proof = require_current_proof(proof)
    if registry.is_claimed(proof.epoch, proof.validator, proof.index):
        return None
    post = registry.post(proof.epoch, proof.validator)
    check_proof(proof, None if post is None else post.root)
    return registry.claim(
        proof.epoch, proof.validator, proof.index, proof.receipt_hash, proof.payout, proof.amount, proof.proof
    )


@dataclass(frozen=True)
class ClaimOutcome:
    """What ``claim_proofs`` did with one proof: ``claimed`` (``result`` is its transaction),
    ``skipped`` (already claimed, or listed twice) or ``refused`` (``message`` says why)."""

    proof: ReceiptProof | ReceiptProofV1
    status: str
    message: str = ""
    result: TxResult | None = None


def claim_proofs(
    registry: Registry, proofs: Iterable[ReceiptProof | ReceiptProofV1], max_batch: int = MAX_BATCH
) -> list[ClaimOutcome]:
    """Check every proof against its root on chain, then claim the good, unclaimed ones: one
    ``claim`` for a post with a single leaf, ``claimMany`` batches of up to ``max_batch`` otherwise.

    A refused proof (v1, no root, root differs) does not stop the others; a revert of a transaction
    (``ChainError``) propagates, and what was mined before it stays claimed.
    """
    if max_batch < 1:
        raise ValueError("max_batch must be at least 1")
    outcomes: list[ClaimOutcome] = []
    roots: dict[tuple[int, str], bytes | None] = {}
    groups: dict[tuple[int, str], dict[int, ReceiptProof]] = {}
    for proof in proofs:
        try:
            current = require_current_proof(proof)
            key = (current.epoch, current.validator)
            if current.index in groups.get(key, {}) or registry.is_claimed(*key, current.index):
                outcomes.append(ClaimOutcome(proof, "skipped"))
                continue
            if key not in roots:
                post = registry.post(*key)
                roots[key] = None if post is None else post.root
            check_proof(current, roots[key])
        except EpochFileError as exc:
            outcomes.append(ClaimOutcome(proof, "refused", str(exc)))
            continue
        groups.setdefault(key, {})[current.index] = current
    for (epoch, validator), by_index in groups.items():
        group = list(by_index.values())
        for start in range(0, len(group), max_batch):
            chunk = group[start : start + max_batch]
            leaves = [(p.index, p.receipt_hash, p.payout, p.amount, p.proof) for p in chunk]
            if len(leaves) == 1:  # claim is ~1k gas cheaper than a batch of one
                result = registry.claim(epoch, validator, *leaves[0])
            else:
                result = registry.claim_many(epoch, validator, leaves)
            paid = {bytes(event["receiptHash"]) for event in registry.claimed_in(result)}
            for p in chunk:  # a leaf claimed by someone else since the check is skipped on chain
                status = "claimed" if p.receipt_hash in paid else "skipped"
                outcomes.append(ClaimOutcome(p, status, result=result))
    return outcomes
