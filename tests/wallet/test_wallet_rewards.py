from __future__ import annotations

import dataclasses

import pytest
from wallet_fixtures import ETHER, ChainEnv, make_domain, make_receipt

from wallet.epochs import EpochFile, EpochFileError
from wallet.receipts import sign_receipt
from wallet.rewards import claim_with_proof, post_epoch
from wallet.signer import LocalSigner


def test_post_then_claim_with_checked_proofs(chain_env: ChainEnv) -> None:
    domain = make_domain(registry=chain_env.deployment.registry)
    miners = [LocalSigner.create().address for _ in range(3)]
    receipts = [
        sign_receipt(make_receipt(chain_env.v1.address, m, 100 * ETHER, nonce=i), domain, chain_env.v1)
        for i, m in enumerate(miners)
    ]
    built = EpochFile.build(0, chain_env.v1.address, domain, receipts)
    validator = chain_env.registry(chain_env.v1)
    validator.register(ETHER)
    chain_env.advance_to_epoch(1)
    with pytest.raises(EpochFileError, match="cannot be posted by"):
        post_epoch(chain_env.registry(chain_env.v2), built)
    relayer = chain_env.registry(chain_env.relayer)
    first = built.proofs(issued_at=1)[0]
    with pytest.raises(EpochFileError, match="posted no root"):
        claim_with_proof(relayer, first)
    post_epoch(validator, built)
    chain_env.advance_to_epoch(2)
    with pytest.raises(EpochFileError, match="does not lead"):
        claim_with_proof(relayer, dataclasses.replace(first, amount=first.amount * 2))
    with pytest.raises(EpochFileError, match="differs from the root"):
        claim_with_proof(relayer, dataclasses.replace(first, root=b"\x05" * 32))
    for proof in built.proofs(issued_at=1):
        assert claim_with_proof(relayer, proof) is not None
    assert claim_with_proof(relayer, first) is None  # already claimed: nothing is sent
    # The lone poster's share is the whole emission, split pro rata to the leaf amounts.
    assert [relayer.token_balance(m) for m in miners] == [1000 * ETHER // 3] * 3
