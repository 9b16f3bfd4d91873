"""The two chain steps of rewards, for the validator and the miner roles.

``post_epoch``: a validator posts its epoch file's root, file hash and total (one transaction,
whatever the number of miners). ``claim_with_proof``: anyone checks a ``ReceiptProof`` against the
root read from chain, then claims; tokens go to the proof's payout address.
"""

from __future__ import annotations

from protocol.messages import ReceiptProof
from protocol.retired import ReceiptProofV1
from wallet.chain import TxResult
from wallet.epochs import EpochFile, EpochFileError, check_proof, require_current_proof
from wallet.registry import Registry


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
