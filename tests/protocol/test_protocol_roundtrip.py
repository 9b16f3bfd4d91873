"""Every message type signs, encodes, decodes and verifies; the registry covers every sample."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from protocol_samples import KeySigner, make_consistent, value_strategy

from protocol.base import Message, lookup, registry
from protocol.encoding import decode, encode, message_id
from protocol.signing import Domain, recover_signer, sign


def test_every_registered_type_has_a_sample(sample_messages: dict[str, Message]) -> None:
    assert {t for (t, _v) in registry()} == set(sample_messages)


@pytest.mark.parametrize("type_name", sorted({t for (t, _v) in registry()}))
def test_round_trip(
    type_name: str, sample_messages: dict[str, Message], signer: KeySigner, net: Domain
) -> None:
    msg = sample_messages[type_name]
    signed = sign(msg, net, signer)
    data = encode(signed)
    back = decode(data)
    assert back == signed
    assert back.message.to_json() == msg.to_json()
    assert encode(back) == data
    assert recover_signer(back, net) == signer.address
    assert message_id(data) == message_id(encode(back))


@st.composite
def _random_message(draw: st.DrawFn, type_name: str) -> Message:
    cls = lookup(type_name, 1)
    values = {spec.name: draw(value_strategy(spec)) for spec in cls.FIELDS}
    return cls(**make_consistent(type_name, values))


@pytest.mark.parametrize("type_name", sorted({t for (t, _v) in registry()}))
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_round_trip_of_random_valid_messages(type_name: str, data: st.DataObject, net: Domain) -> None:
    msg = data.draw(_random_message(type_name))
    sender = KeySigner()
    msg = dataclasses.replace(msg, **{msg.SIGNER_FIELD: sender.address})  # type: ignore[type-var]
    encoded = encode(sign(msg, net, sender))
    back = decode(encoded)
    assert back.message == msg
    assert encode(back) == encoded
    assert recover_signer(back, net) == sender.address
