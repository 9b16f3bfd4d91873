"""Strict decoding: canonical form only, exact fields, caps; malformed input raises only ProtocolError."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from protocol_samples import KeySigner

from protocol.base import Message
from protocol.encoding import MAX_MESSAGE_BYTES, decode, encode
from protocol.errors import (
    DecodeError,
    FieldError,
    OversizeError,
    ProtocolError,
    SignatureError,
    UnknownMessageType,
)
from protocol.signing import Domain, recover_signer, sign


@pytest.fixture(scope="module")
def encoded_samples(sample_messages: dict[str, Message], signer: KeySigner, net: Domain) -> list[bytes]:
    return [encode(sign(msg, net, signer)) for msg in sample_messages.values()]


@pytest.fixture(scope="module")
def receipt_envelope(sample_messages: dict[str, Message], signer: KeySigner, net: Domain) -> dict[str, Any]:
    envelope: dict[str, Any] = json.loads(encode(sign(sample_messages["Receipt"], net, signer)))
    return envelope


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _with_body(envelope: dict[str, Any], **changes: Any) -> bytes:
    return _canonical({**envelope, "body": {**envelope["body"], **changes}})


def test_whitespace_and_key_order_are_not_canonical(receipt_envelope: dict[str, Any]) -> None:
    assert decode(_canonical(receipt_envelope))
    with pytest.raises(DecodeError, match="canonical"):
        decode(json.dumps(receipt_envelope, sort_keys=True).encode())
    with pytest.raises(DecodeError, match="canonical"):
        reordered = dict(reversed(list(receipt_envelope.items())))
        decode(json.dumps(reordered, separators=(",", ":")).encode())


@pytest.mark.parametrize(
    ("changes", "error", "match"),
    [
        (
            {"miner": "0x1a642f0e3c3af545e7acbd38b07251b3990914f1"},
            DecodeError,
            "canonical",
        ),  # not checksummed
        ({"miner": "0x1a642f0E3c3aF545E7AcBD38b07251B3990914F2"}, FieldError, "checksum"),
        ({"rank": "02"}, FieldError, "canonical decimal"),
        ({"rank": 2}, FieldError, "decimal string"),
        ({"rank": "+2"}, FieldError, "canonical decimal"),
        ({"rank": "-0"}, FieldError, "canonical decimal"),
        ({"rank": "65536"}, FieldError, "out of range"),
        ({"rank": "5"}, FieldError, "exceeds pool_size"),
        ({"amount": "1" + "0" * 78}, FieldError, "canonical decimal"),
        ({"amount": str(2**256)}, FieldError, "out of range"),
        ({"task_id": "0x" + "AB" * 32}, FieldError, "lowercase hex"),
        ({"task_id": "0x" + "ab" * 31}, FieldError, "32 bytes"),
        ({"task_id": "ab" * 32}, FieldError, "0x"),
        ({"task_id": "0x" + "ab" * 5000}, OversizeError, "too long"),
        ({"epoch": None}, FieldError, "decimal string"),
    ],
)
def test_bad_field_values(
    receipt_envelope: dict[str, Any], changes: dict[str, Any], error: type, match: str
) -> None:
    with pytest.raises(error, match=match):
        decode(_with_body(receipt_envelope, **changes))


def test_missing_and_extra_fields(receipt_envelope: dict[str, Any]) -> None:
    body = dict(receipt_envelope["body"])
    del body["nonce"]
    with pytest.raises(FieldError, match=r"missing fields \['nonce'\]"):
        decode(_canonical({**receipt_envelope, "body": body}))
    with pytest.raises(FieldError, match=r"unknown fields \['bonus'\]"):
        decode(_with_body(receipt_envelope, bonus="1"))


@pytest.mark.parametrize(
    ("envelope_changes", "error", "match"),
    [
        ({"type": "Payment"}, UnknownMessageType, "upgrade"),
        ({"v": 2}, UnknownMessageType, "version 2"),
        ({"v": True}, UnknownMessageType, "unknown"),
        ({"v": "1"}, UnknownMessageType, "unknown"),
        ({"sig": "0x1234"}, SignatureError, "sig"),
        ({"sig": "0x" + "zz" * 65}, SignatureError, "hex"),
        ({"extra": 1}, DecodeError, "exactly the keys"),
        ({"body": []}, FieldError, "JSON object"),
    ],
)
def test_bad_envelopes(
    receipt_envelope: dict[str, Any], envelope_changes: dict[str, Any], error: type, match: str
) -> None:
    with pytest.raises(error, match=match):
        decode(_canonical({**receipt_envelope, **envelope_changes}))


@pytest.mark.parametrize(
    ("data", "error", "match"),
    [
        (b"", DecodeError, "not valid JSON"),
        (b"\xff\xfe", DecodeError, "UTF-8"),
        (b"[" * 50_000 + b"]" * 50_000, OversizeError, "exceeds the cap"),
        (b"[" * 30_000 + b"]" * 30_000, DecodeError, "nests deeper than 16"),
        (b'{"a":' * 17 + b"1" + b"}" * 17, DecodeError, "nests deeper than 16"),
        (b'{"a":1,"a":2}', DecodeError, "duplicate keys"),
        (b'{"v":1.0}', DecodeError, "integers"),
        (b'{"v":NaN}', DecodeError, "integers"),
        (b"1" * 5000, DecodeError, "not valid JSON"),  # Python's int-digits limit
        ("text", DecodeError, "must be bytes"),
    ],
)
def test_malformed_bytes(data: Any, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        decode(data)


def test_size_cap_is_configurable(encoded_samples: list[bytes]) -> None:
    data = encoded_samples[0]
    assert decode(data, max_size=len(data))
    with pytest.raises(OversizeError):
        decode(data, max_size=len(data) - 1)


def test_string_caps_and_control_characters(
    sample_messages: dict[str, Message], signer: KeySigner, net: Domain
) -> None:
    envelope = json.loads(encode(sign(sample_messages["Assignment"], net, signer)))
    with pytest.raises(OversizeError, match="at most 512"):
        decode(_with_body(envelope, reason="x" * 513))
    with pytest.raises(FieldError, match="control characters"):
        decode(_with_body(envelope, reason="\x1b[31mred"))
    with pytest.raises(FieldError, match="lone surrogate"):
        decode(_canonical(envelope).replace(b'"pool is full"', b'"\\ud800"'))
    assert decode(_with_body(envelope, reason="pool complet: désolé ✓")).message.reason.endswith("✓")


def test_decoded_message_with_forged_signature_fails_verification(
    receipt_envelope: dict[str, Any], net: Domain
) -> None:
    signed = decode(_with_body(receipt_envelope, amount="999"))
    with pytest.raises(SignatureError):
        recover_signer(signed, net)


def test_max_message_is_64_kib() -> None:
    assert MAX_MESSAGE_BYTES == 65536


# ---------------------------------------------------------------------------------------------------
# Fuzzing: only ProtocolError, ever


def _only_protocol_errors(data: bytes) -> None:
    try:
        signed = decode(data)
    except ProtocolError:
        return
    assert encode(signed) == data  # anything accepted is canonical


def _mutate(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(4)
        pos = rng.randrange(len(buf) + 1)
        if op == 0 and buf:
            buf[min(pos, len(buf) - 1)] = rng.randrange(256)
        elif op == 1:
            buf[pos:pos] = bytes([rng.choice(b'{}[]",:0x19aAzZ-\\ ')])
        elif op == 2:
            del buf[pos : pos + rng.randint(1, 8)]
        else:  # swap a character for a structurally interesting one
            if buf:
                buf[min(pos, len(buf) - 1)] = rng.choice(b'"0123456789abcdef{}[],:')
    return bytes(buf)


def test_ten_thousand_random_and_mutated_inputs_raise_only_protocol_errors(
    encoded_samples: list[bytes],
) -> None:
    rng = random.Random(20261122)
    for _ in range(5_000):
        _only_protocol_errors(rng.randbytes(rng.randint(0, 300)))
    for _ in range(5_000):
        _only_protocol_errors(_mutate(rng, rng.choice(encoded_samples)))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2_000))
def test_hypothesis_random_bytes(data: bytes) -> None:
    _only_protocol_errors(data)


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_hypothesis_structured_envelopes(data: st.DataObject, receipt_envelope: dict[str, Any]) -> None:
    """Valid-looking envelopes with one key or one body field replaced by arbitrary JSON."""
    envelope = json.loads(_canonical(receipt_envelope))
    if data.draw(st.booleans()):
        envelope[data.draw(st.sampled_from(sorted(envelope)))] = data.draw(_json_values)
    else:
        envelope["body"][data.draw(st.sampled_from(sorted(envelope["body"])))] = data.draw(_json_values)
    _only_protocol_errors(_canonical(envelope))
