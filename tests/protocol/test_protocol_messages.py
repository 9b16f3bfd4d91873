"""Message construction checks every field and cross-field rule; hashes a contract can recompute."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from eth_utils.crypto import keccak
from protocol_samples import h

from protocol import messages as m
from protocol.base import Message, lookup, register, registry
from protocol.errors import FieldError, OversizeError, ProtocolError, UnknownMessageType
from protocol.schema import type_string

ADDRESS = "0x1a642f0E3c3aF545E7AcBD38b07251B3990914F1"


def _replace(msg: Message, **changes: Any) -> Message:
    return dataclasses.replace(msg, **changes)  # type: ignore[type-var]


def test_address_is_normalised_to_checksum(sample_messages: dict[str, Message]) -> None:
    msg = _replace(sample_messages["Commitment"], miner=ADDRESS.lower())
    assert isinstance(msg, m.Commitment) and msg.miner == ADDRESS
    assert _replace(msg, miner="0x" + ADDRESS[2:].upper()).signer_address == ADDRESS


@pytest.mark.parametrize(
    ("type_name", "changes", "error", "match"),
    [
        ("Commitment", {"miner": ADDRESS[:-1] + "f"}, FieldError, "wrong EIP-55 checksum"),
        ("Commitment", {"miner": "0x1234"}, FieldError, "20-byte hex address"),
        ("Commitment", {"miner": None}, FieldError, "20-byte hex address"),
        ("Commitment", {"task_id": b"\x00" * 31}, FieldError, "exactly 32 bytes"),
        ("Commitment", {"task_id": "00" * 32}, FieldError, "exactly 32 bytes"),
        ("Commitment", {"issued_at": -1}, FieldError, "out of range"),
        ("Commitment", {"issued_at": 2**64}, FieldError, "out of range"),
        ("Commitment", {"issued_at": True}, FieldError, "expected an integer"),
        ("Commitment", {"issued_at": 1.5}, FieldError, "expected an integer"),
        ("Assignment", {"accepted": 1}, FieldError, "expected a bool"),
        ("Assignment", {"accepted": False, "reason": ""}, FieldError, "refusal must give a reason"),
        ("Assignment", {"commit_by": 10**15}, FieldError, "commit_by must not be after reveal_by"),
        ("Assignment", {"reason": "x" * 513}, OversizeError, "at most 512"),
        ("Assignment", {"reason": "line\nbreak"}, FieldError, "control characters"),
        ("Heartbeat", {"status": "sleeping"}, FieldError, "is not one of"),
        ("Heartbeat", {"load_bps": 10_001}, FieldError, "exceeds 10000"),
        ("Identity", {"roles": 8}, FieldError, "unknown role bits"),
        ("Identity", {"protocol_version": 0}, FieldError, "at least 1"),
        ("Identity", {"peer_id": "not a peer id"}, FieldError, "does not match"),
        ("Identity", {"addrs": ("/ip4/1.2.3.4/tcp/1",) * 9}, OversizeError, "at most 8"),
        ("Identity", {"addrs": "/ip4/1.2.3.4/tcp/1"}, FieldError, "expected a list"),
        ("TaskAnnouncement", {"kind": "Instruct"}, FieldError, "does not match"),
        ("TaskAnnouncement", {"commit_by": 0}, FieldError, "join_by <= commit_by <= reveal_by"),
        ("TaskAnnouncement", {"test_weight_bps": 6_000}, FieldError, "must equal 10000"),
        ("TaskAnnouncement", {"pool_size": 0}, FieldError, "at least 1"),
        ("TaskAnnouncement", {"eval_metrics": ()}, FieldError, "at least one metric"),
        ("TaskAnnouncement", {"max_artifact_bytes": 0}, FieldError, "must be positive"),
        ("TaskAnnouncement", {"params_json": "[1]"}, FieldError, "JSON object"),
        ("TaskAnnouncement", {"params_json": "{"}, FieldError, "JSON object"),
        ("TaskStatus", {"status": "delayed", "next_deadline": 0}, FieldError, "next_deadline"),
        ("Receipt", {"rank": 5}, FieldError, "exceeds pool_size"),
        ("Receipt", {"amount": 2**256}, FieldError, "out of range"),
        ("ReceiptProof", {"proof": (b"\x00" * 32,) * 65}, OversizeError, "at most 64"),
        ("ReceiptProof", {"proof": (b"\x00" * 31,)}, FieldError, "exactly 32 bytes"),
    ],
)
def test_invalid_messages_cannot_be_built(
    sample_messages: dict[str, Message], type_name: str, changes: dict[str, Any], error: type, match: str
) -> None:
    with pytest.raises(error, match=match):
        _replace(sample_messages[type_name], **changes)


def test_arrays_become_tuples_and_messages_are_hashable(sample_messages: dict[str, Message]) -> None:
    msg = _replace(sample_messages["ReceiptProof"], proof=[h("a"), h("b")])
    assert isinstance(msg, m.ReceiptProof) and msg.proof == (h("a"), h("b"))
    assert len({msg, _replace(msg)}) == 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        msg.epoch = 4  # type: ignore[misc]


def test_commitment_hash_is_keccak_of_abi_encoding() -> None:
    task, artifact, salt = h("t"), h("a"), h("s")
    # abi.encode(bytes32, address, bytes32, bytes32): four 32-byte words, the address left-padded.
    manual = keccak(task + b"\x00" * 12 + bytes.fromhex(ADDRESS[2:]) + artifact + salt)
    assert m.commitment_hash(task, ADDRESS, artifact, salt) == manual
    assert m.commitment_hash(task, ADDRESS.lower(), artifact, salt) == manual
    assert m.commitment_hash(task, ADDRESS, artifact, h("other salt")) != manual


def test_reveal_opens_its_commitment(sample_messages: dict[str, Message]) -> None:
    reveal, commitment = sample_messages["Reveal"], sample_messages["Commitment"]
    assert isinstance(reveal, m.Reveal) and isinstance(commitment, m.Commitment)
    assert reveal.commitment() == commitment.commitment
    assert _replace(reveal, salt=h("guess")).commitment() != commitment.commitment  # type: ignore[attr-defined]


@pytest.mark.parametrize("bad", [{"task_id": b"x"}, {"salt": "00" * 32}, {"miner": "0x12"}])
def test_commitment_hash_rejects_bad_input(bad: dict[str, Any]) -> None:
    args: dict[str, Any] = {
        "task_id": h("t"),
        "miner": ADDRESS,
        "artifact_hash": h("a"),
        "salt": h("s"),
        **bad,
    }
    with pytest.raises(ProtocolError):
        m.commitment_hash(**args)


def test_every_type_has_issued_at_a_signer_field_and_a_distinct_type_hash() -> None:
    type_strings = {type_string(cls.TYPE, cls.FIELDS) for cls in registry().values()}
    assert len(type_strings) == len(registry())
    for cls in registry().values():
        assert "issued_at" in {f.name for f in cls.FIELDS}
        assert all(f.help for f in cls.FIELDS), f"{cls.TYPE}: every field needs a help text for PROTOCOL.md"


def test_receipt_type_string_is_stable() -> None:
    # Contracts and other clients hard-code this string (its keccak is the Receipt type hash).
    assert type_string("Receipt", m.Receipt.FIELDS) == (
        "Receipt(bytes32 task_id,address miner,address payout,address validator,uint16 rank,"
        "uint16 pool_size,uint64 test_loss_e9,uint64 synthetic_loss_e9,uint64 score_e9,uint256 amount,"
        "uint64 epoch,uint64 nonce,uint64 issued_at)"
    )


def test_registry_refuses_duplicates_and_lookup_fails_clearly() -> None:
    with pytest.raises(TypeError, match="already registered"):
        register(m.Receipt)
    assert lookup("Receipt", 1) is m.Receipt
    with pytest.raises(UnknownMessageType, match="upgrade MAGNET"):
        lookup("Receipt", 99)
    with pytest.raises(UnknownMessageType):
        lookup(["Receipt"], 1)


def test_register_requires_issued_at_and_an_address_signer_field() -> None:
    from dataclasses import dataclass

    from protocol.schema import wire

    @dataclass(frozen=True)
    class NoTime(Message):
        TYPE = "NoTime"
        VERSION = 1
        SIGNER_FIELD = "who"
        who: str = wire("address", "x")

    with pytest.raises(TypeError, match="issued_at"):
        register(NoTime)

    @dataclass(frozen=True)
    class BadSigner(Message):
        TYPE = "BadSigner"
        VERSION = 1
        SIGNER_FIELD = "issued_at"
        issued_at: int = wire("uint64", "x")

    with pytest.raises(TypeError, match="SIGNER_FIELD"):
        register(BadSigner)
    assert ("NoTime", 1) not in registry() and ("BadSigner", 1) not in registry()


def test_an_unregistered_message_class_cannot_be_instantiated() -> None:
    from dataclasses import dataclass

    from protocol.schema import wire

    @dataclass(frozen=True)
    class Draft(Message):
        TYPE = "Draft"
        VERSION = 1
        SIGNER_FIELD = "who"
        who: str = wire("address", "x")
        issued_at: int = wire("uint64", "x")

    with pytest.raises(TypeError, match="not registered"):
        Draft(who=ADDRESS, issued_at=1)
