"""Fixtures of the protocol tests: signers, a domain, and one sample message per type."""

from __future__ import annotations

import pytest
from protocol_samples import KeySigner, domain, samples

from protocol.base import Message
from protocol.signing import Domain


@pytest.fixture(scope="session")
def signer() -> KeySigner:
    return KeySigner(b"\x01" * 32)


@pytest.fixture(scope="session")
def other_signer() -> KeySigner:
    return KeySigner(b"\x02" * 32)


@pytest.fixture(scope="session")
def net() -> Domain:
    return domain()


@pytest.fixture(scope="session")
def sample_messages(signer: KeySigner, other_signer: KeySigner) -> dict[str, Message]:
    return samples(signer.address, other_signer.address)
