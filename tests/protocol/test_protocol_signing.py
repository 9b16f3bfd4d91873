"""EIP-712 signing: standard typed data, domain separation, tamper detection and signature form."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import eth_account._utils.encode_typed_data.encoding_and_hashing as eth_hashing
import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from protocol_samples import KeySigner, domain, h, value_strategy

from protocol.base import Message
from protocol.errors import ProtocolError, SignatureError
from protocol.messages import Commitment, Receipt, receipt_hash
from protocol.signing import (
    Domain,
    SignedMessage,
    recover_signer,
    sign,
    signable_message,
    signing_digest,
    typed_data,
)

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
TYPES = sorted({"Identity", "Heartbeat", "TaskAnnouncement", "JoinRequest", "Assignment", "Commitment",
                "Reveal", "TaskStatus", "Receipt", "EpochRecord", "ReceiptProof"})  # fmt: skip


@pytest.mark.parametrize("type_name", TYPES)
def test_typed_data_is_standard_v4_json_that_plain_eth_account_verifies(
    type_name: str, sample_messages: dict[str, Message], signer: KeySigner, net: Domain
) -> None:
    msg = sample_messages[type_name]
    signed = sign(msg, net, signer)
    # Through a JSON round trip, as a wallet or another client would receive it.
    exported = json.loads(json.dumps(typed_data(msg, net)))
    assert exported["primaryType"] == msg.TYPE
    assert [f["name"] for f in exported["types"]["EIP712Domain"]] == [
        "name", "version", "chainId", "verifyingContract", "salt",
    ]  # fmt: skip
    assert exported["domain"]["name"] == "MAGNET" and exported["domain"]["version"] == "1"
    recovered = Account.recover_message(encode_typed_data(full_message=exported), signature=signed.signature)
    assert recovered == signer.address


@pytest.mark.parametrize("type_name", TYPES)
def test_struct_hash_and_digest_match_eth_account(
    type_name: str, sample_messages: dict[str, Message], net: Domain
) -> None:
    msg = sample_messages[type_name]
    td = typed_data(msg, net)
    assert msg.struct_hash() == eth_hashing.hash_struct(msg.TYPE, td["types"], td["message"])
    assert net.separator() == eth_hashing.hash_domain(td["domain"])
    signable = encode_typed_data(full_message=td)
    assert signable.body == msg.struct_hash() and signable.header == net.separator()
    assert signable_message(msg, net) == signable
    assert len(signing_digest(msg, net)) == 32


def test_receipt_hash_is_domain_independent_struct_hash(sample_messages: dict[str, Message]) -> None:
    receipt = sample_messages["Receipt"]
    assert isinstance(receipt, Receipt)
    assert receipt_hash(receipt) == receipt.struct_hash()
    changed = dataclasses.replace(receipt, amount=receipt.amount + 1)
    assert receipt_hash(changed) != receipt_hash(receipt)


@pytest.mark.parametrize(
    "other",
    [
        domain(chain_id=1),
        Domain(131277322940537, "0x" + "5b" * 20, h("devnet")),
        domain(salt_label="another-network"),
    ],
    ids=["chain_id", "contract", "salt"],
)
def test_signature_for_one_network_does_not_verify_on_another(
    other: Domain, sample_messages: dict[str, Message], signer: KeySigner, net: Domain
) -> None:
    signed = sign(sample_messages["Receipt"], net, signer)
    assert recover_signer(signed, net) == signer.address
    with pytest.raises(SignatureError, match="another network"):
        recover_signer(signed, other)


def test_sign_refuses_a_signer_other_than_the_named_sender(
    sample_messages: dict[str, Message], other_signer: KeySigner, net: Domain
) -> None:
    with pytest.raises(SignatureError, match="must be signed by the address it names"):
        sign(sample_messages["Commitment"], net, other_signer)


def test_signature_by_someone_else_is_rejected(
    sample_messages: dict[str, Message], signer: KeySigner, other_signer: KeySigner, net: Domain
) -> None:
    msg = sample_messages["Commitment"]
    forged = other_signer.sign_typed_data(typed_data(msg, net))
    with pytest.raises(SignatureError, match=f"not from {signer.address}"):
        recover_signer(SignedMessage(msg, forged), net)


def test_high_s_malleated_signature_is_rejected(
    sample_messages: dict[str, Message], signer: KeySigner, net: Domain
) -> None:
    signed = sign(sample_messages["Commitment"], net, signer)
    sig = signed.signature
    s = int.from_bytes(sig[32:64], "big")
    flipped_v = 55 - sig[64]  # 27 <-> 28
    malleated = sig[:32] + (SECP256K1_N - s).to_bytes(32, "big") + bytes([flipped_v])
    # The malleated form recovers the same key with plain eth_account, so only our EIP-2 rule stops it.
    with pytest.raises(SignatureError, match="lower half"):
        SignedMessage(signed.message, malleated)


@pytest.mark.parametrize(
    ("signature", "match"),
    [
        (b"\x01" * 64, "exactly 65 bytes"),
        (b"\x00" * 65, "out of range"),
        (b"\x01" * 64 + b"\x05", "v must be 27 or 28"),
    ],
)
def test_malformed_signatures(signature: bytes, match: str, sample_messages: dict[str, Message]) -> None:
    with pytest.raises(SignatureError, match=match):
        SignedMessage(sample_messages["Commitment"], signature)


def test_sign_normalises_v_from_0_1(
    sample_messages: dict[str, Message], signer: KeySigner, net: Domain
) -> None:
    class ZeroOneSigner:
        address = signer.address

        def sign_typed_data(self, full_message: dict[str, Any]) -> bytes:
            sig = signer.sign_typed_data(full_message)
            return sig[:64] + bytes([sig[64] - 27])

    signed = sign(sample_messages["Commitment"], net, ZeroOneSigner())
    assert signed.signature[64] in (27, 28)
    assert recover_signer(signed, net) == signer.address


def test_wallet_signer_satisfies_signer_like(sample_messages: dict[str, Message], net: Domain) -> None:
    wallet_signer = pytest.importorskip("wallet.signer")
    local = wallet_signer.LocalSigner(b"\x01" * 32)
    signed = sign(sample_messages["Commitment"], net, local)
    assert recover_signer(signed, net) == local.address


@pytest.mark.parametrize("bad", [0, -1, True, "1"])
def test_domain_rejects_bad_chain_id(bad: Any) -> None:
    with pytest.raises(ProtocolError, match="chain_id"):
        Domain(bad, "0x" + "5a" * 20, h("x"))


def test_domain_rejects_bad_salt_and_contract() -> None:
    with pytest.raises(ProtocolError, match="salt"):
        Domain(1, "0x" + "5a" * 20, b"short")
    with pytest.raises(ProtocolError, match="address"):
        Domain(1, "0x1234", h("x"))


# ---------------------------------------------------------------------------------------------------
# Any change of any signed field fails verification (hypothesis)


@st.composite
def _tampered(draw: st.DrawFn, samples: dict[str, Message]) -> tuple[Message, Message]:
    original = samples[draw(st.sampled_from(TYPES))]
    spec = draw(st.sampled_from(original.FIELDS))
    new_value = draw(value_strategy(spec))
    try:
        changed = dataclasses.replace(original, **{spec.name: new_value})
    except ProtocolError:
        assume(False)  # the new value breaks a cross-field rule: not a message anyone could send
        raise
    assume(changed != original)
    return original, changed


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_change_of_a_signed_field_fails_verification(
    data: st.DataObject, sample_messages: dict[str, Message], signer: KeySigner, net: Domain
) -> None:
    original, changed = data.draw(_tampered(sample_messages))
    signed = sign(original, net, signer)
    tampered = SignedMessage(changed, signed.signature)
    try:
        recovered = recover_signer(tampered, net)
    except SignatureError:
        return
    # Only possible if the sender field itself was changed to another address: then the recovered key
    # still is the original signer, which is not the sender the tampered message names.
    pytest.fail(f"tampered {changed.TYPE} verified as {recovered}")


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(position=st.integers(0, 64 * 8 - 1))
def test_any_flipped_signature_bit_fails_verification(
    position: int, sample_messages: dict[str, Message], signer: KeySigner, net: Domain
) -> None:
    signed = sign(sample_messages["Receipt"], net, signer)
    sig = bytearray(signed.signature)
    sig[position // 8] ^= 1 << (position % 8)
    with pytest.raises(SignatureError):
        recover_signer(SignedMessage(signed.message, bytes(sig)), net)


def test_commitment_field_change_is_detected(signer: KeySigner, net: Domain) -> None:
    msg = Commitment(task_id=h("t"), miner=signer.address, commitment=h("c"), issued_at=1)
    signed = sign(msg, net, signer)
    later = dataclasses.replace(msg, issued_at=2)
    with pytest.raises(SignatureError):
        recover_signer(SignedMessage(later, signed.signature), net)
