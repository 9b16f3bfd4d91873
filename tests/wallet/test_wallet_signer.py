from __future__ import annotations

import pickle
from typing import Any

import pytest
from eth_account import Account
from eth_account.messages import _hash_eip191_message, encode_typed_data

from wallet.signer import LocalSigner

KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"


def typed_message(value: int = 1) -> dict[str, Any]:
    return {
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "chainId", "type": "uint256"},
                {"name": "verifyingContract", "type": "address"},
            ],
            "Ping": [{"name": "value", "type": "uint256"}, {"name": "note", "type": "string"}],
        },
        "primaryType": "Ping",
        "domain": {"name": "test", "chainId": 1, "verifyingContract": "0x" + "11" * 20},
        "message": {"value": value, "note": "hello"},
    }


def test_typed_data_signature_recovers_to_the_address() -> None:
    signer = LocalSigner(KEY)
    assert signer.address == "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
    sig = signer.sign_typed_data(typed_message())
    assert isinstance(sig, bytes) and len(sig) == 65 and sig[64] in (27, 28)
    recover = Account.recover_message
    assert recover(encode_typed_data(full_message=typed_message()), signature=sig) == signer.address
    assert recover(encode_typed_data(full_message=typed_message(2)), signature=sig) != signer.address


def test_sign_digest_matches_sign_typed_data() -> None:
    signer = LocalSigner.create()
    digest = _hash_eip191_message(encode_typed_data(full_message=typed_message()))
    assert signer.sign_digest(digest) == signer.sign_typed_data(typed_message())
    with pytest.raises(ValueError, match="32 bytes"):
        signer.sign_digest(b"short")


def test_create_gives_distinct_throwaway_signers() -> None:
    assert LocalSigner.create().address != LocalSigner.create().address


def test_signer_never_shows_or_pickles_its_key() -> None:
    signer = LocalSigner(KEY)
    assert KEY[2:] not in repr(signer) and signer.address in repr(signer)
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(signer)


def test_signed_transaction_is_raw_bytes() -> None:
    signer = LocalSigner(KEY)
    tx = {"to": "0x" + "22" * 20, "value": 1, "gas": 21000, "gasPrice": 10**9, "nonce": 0, "chainId": 1}
    raw = signer.sign_transaction(tx)
    assert Account.recover_transaction(raw) == signer.address
