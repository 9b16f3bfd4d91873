"""Constants and small helpers the desktop tests share."""

from __future__ import annotations

import os

PASSWORD = "correct horse battery staple"
# The BIP-39 test vector phrase, so the expected address is known.
PHRASE = "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about"
PHRASE_ADDRESS = "0x9858EfFD232B4033E47d90003D41EC34EcaEda94"


def env_with(**extra: str) -> dict[str, str]:
    return {**os.environ, "QT_QPA_PLATFORM": "offscreen", **extra}
