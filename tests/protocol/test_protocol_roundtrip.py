"""Every message type signs, encodes, decodes and verifies; the registry covers every sample."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from protocol_samples import KeySigner, make_consistent, value_strategy

from protocol.base import Message, latest, lookup, registry
from protocol.encoding import decode, encode, message_id
from protocol.signing import Domain, recover_signer, sign


def _sample_key(type_name: str, version: int) -> str:
    """Samples are keyed by type for the newest version, "<type>V<version>" for retired ones."""
    return type_name if version == latest(type_name).VERSION else f"{type_name}V{version}"


SAMPLE_KEYS = sorted(_sample_key(t, v) for (t, v) in registry())


def test_every_registered_type_version_has_a_sample(sample_messages: dict[str, Message]) -> None:
    assert set(SAMPLE_KEYS) == set(sample_messages)
    assert {(msg.TYPE, msg.VERSION) for msg in sample_messages.values()} == set(registry())


@pytest.mark.parametrize("type_name", SAMPLE_KEYS)
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
def _random_message(draw: st.DrawFn, type_name: str, version: int) -> Message:
    cls = lookup(type_name, version)
    values = {spec.name: draw(value_strategy(spec)) for spec in cls.FIELDS}
    return cls(**make_consistent(type_name, values))


@pytest.mark.parametrize(("type_name", "version"), sorted(registry()))
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_round_trip_of_random_valid_messages(
    type_name: str, version: int, data: st.DataObject, net: Domain
) -> None:
    msg = data.draw(_random_message(type_name, version))
    sender = KeySigner()
    msg = dataclasses.replace(msg, **{msg.SIGNER_FIELD: sender.address})  # type: ignore[type-var]
    encoded = encode(sign(msg, net, sender))
    back = decode(encoded)
    assert back.message == msg
    assert encode(back) == encoded
    assert recover_signer(back, net) == sender.address
