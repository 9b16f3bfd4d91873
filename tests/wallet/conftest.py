"""Fixtures of the wallet tests: cheap scrypt parameters."""

from __future__ import annotations

import pytest

CHEAP_N = 1 << 10


@pytest.fixture
def cheap_n() -> int:
    """scrypt N for tests (production uses 2^18, ~1 s per operation)."""
    return CHEAP_N
