"""Every message type signs, encodes, decodes and verifies; the registry covers every sample."""

from __future__ import annotations

import pytest
from protocol_samples import KeySigner

from protocol.base import Message, registry
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
