from __future__ import annotations

import dataclasses
import json

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from hypothesis import given, settings
from hypothesis import strategies as st
from wallet_fixtures import make_domain, make_receipt

from protocol.errors import ProtocolError, SignatureError
from protocol.messages import receipt_hash
from protocol.signing import SignedMessage, recover_signer, sign
from wallet.receipts import export_receipt, import_receipt, receipt_struct_hash, sign_receipt, verify_receipt
from wallet.signer import LocalSigner

VALIDATOR = LocalSigner.create()
MINER = LocalSigner.create().address
DOMAIN = make_domain()


def signed_receipt(**fields: object) -> SignedMessage:
    return sign_receipt(make_receipt(VALIDATOR.address, MINER, 5 * 10**18, **fields), DOMAIN, VALIDATOR)


def test_verify_returns_the_validator_and_agrees_with_protocol() -> None:
    signed = signed_receipt()
    assert verify_receipt(signed, DOMAIN) == VALIDATOR.address
    assert recover_signer(signed, DOMAIN) == VALIDATOR.address


@pytest.mark.parametrize(
    "field",
    ["amount", "payout", "rank", "epoch", "nonce", "score_e9", "test_loss_e9", "task_id", "miner"],
)
def test_any_tampered_field_fails(field: str) -> None:
    signed = signed_receipt()
    receipt = signed.message
    value = getattr(receipt, field)
    if isinstance(value, int):
        changed = value + 1 if field != "rank" else 2
    elif isinstance(value, bytes):
        changed = bytes([value[0] ^ 1]) + value[1:]
    else:
        changed = LocalSigner.create().address
    tampered = SignedMessage(dataclasses.replace(receipt, **{field: changed}), signed.signature)
    with pytest.raises(SignatureError, match="not signed by its validator"):
        verify_receipt(tampered, DOMAIN)


@pytest.mark.parametrize(
    "other",
    [
        make_domain(chain_id=1),
        make_domain(registry="0x" + "cd" * 20),
        make_domain(salt=b"\x08" * 32),
    ],
    ids=["chain", "contract", "salt"],
)
def test_receipt_from_another_network_fails(other) -> None:  # type: ignore[no-untyped-def]
    signed = signed_receipt()
    with pytest.raises(SignatureError, match="another network"):
        verify_receipt(signed, other)
    with pytest.raises(SignatureError):
        import_receipt(export_receipt(signed, DOMAIN), other)


def test_receipt_signed_by_someone_else_fails() -> None:
    receipt = make_receipt(VALIDATOR.address, MINER, 1)
    forged = SignedMessage(receipt, LocalSigner.create().sign_typed_data(_typed(receipt)))
    with pytest.raises(SignatureError):
        verify_receipt(forged, DOMAIN)


def _typed(receipt):  # type: ignore[no-untyped-def]
    from protocol.signing import typed_data

    return typed_data(receipt, DOMAIN)


def test_export_is_standard_typed_data_any_library_verifies() -> None:
    signed = signed_receipt()
    doc = json.loads(json.dumps(export_receipt(signed, DOMAIN)))  # survives a JSON round trip
    recovered = Account.recover_message(
        encode_typed_data(full_message=doc["typedData"]), signature=doc["signature"]
    )
    assert recovered == VALIDATOR.address == doc["signer"]
    assert import_receipt(doc, DOMAIN) == signed


def test_tampered_export_is_rejected() -> None:
    doc = export_receipt(signed_receipt(), DOMAIN)
    doc["typedData"]["message"]["amount"] = str(10**30)
    with pytest.raises(ProtocolError):
        import_receipt(doc, DOMAIN)
    with pytest.raises(ProtocolError):
        import_receipt({"format": "other"}, DOMAIN)


@settings(max_examples=200, deadline=None)
@given(
    st.binary(min_size=32, max_size=32),
    st.integers(0, 2**16 - 1),
    st.integers(0, 2**64 - 1),
    st.integers(0, 2**256 - 1),
    st.integers(0, 2**64 - 1),
)
def test_hand_encoded_struct_hash_equals_the_protocols(
    task_id: bytes, pool: int, loss: int, amount: int, nonce: int
) -> None:
    receipt = make_receipt(
        VALIDATOR.address, MINER, amount, task_id=task_id, pool_size=pool, rank=pool // 2,
        test_loss_e9=loss, nonce=nonce, epoch=nonce // 3,
    )  # fmt: skip
    assert receipt_struct_hash(receipt) == receipt_hash(receipt)


def test_fast_signing_gives_the_typed_data_signature() -> None:
    receipt = make_receipt(VALIDATOR.address, MINER, 7)
    fast = sign_receipt(receipt, DOMAIN, VALIDATOR)
    assert fast.signature == sign(receipt, DOMAIN, VALIDATOR).signature  # RFC 6979: deterministic
    with pytest.raises(SignatureError, match="signed by the address it names"):
        sign_receipt(receipt, DOMAIN, LocalSigner.create())
