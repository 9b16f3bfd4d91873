"""Compiled contracts (ABI + bytecode JSON committed beside this file; sources in /contracts).

``load_artifact("MagnetRegistry")`` returns ``{"abi": [...], "bytecode": "0x...", ...}``. Rebuild with
``make contracts`` (``python -m wallet.contracts.build``) after editing a ``.sol`` file.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

ARTIFACT_DIR = Path(__file__).resolve().parent
# contract name -> its solc source unit. RejectingValidator is a test fixture (a validator that
# refuses native currency, to reach the registry's TransferFailed path); nothing deploys it outside tests.
SOURCE_UNITS = {
    "MagnetToken": "contracts/MagnetToken.sol",
    "MagnetRegistry": "contracts/MagnetRegistry.sol",
    "RejectingValidator": "contracts/test/RejectingValidator.sol",
}
CONTRACT_NAMES = tuple(SOURCE_UNITS)
# Abstract contracts: ABI only, no bytecode. MagnetToken is the ERC-20 part the registry inherits (the
# registry's address is the token's); its artifact is the ERC-20 ABI to read balances with.
ABSTRACT = frozenset({"MagnetToken"})


@cache
def load_artifact(name: str) -> dict[str, Any]:
    """The committed ABI and bytecode of contract ``name``."""
    if name not in CONTRACT_NAMES:
        raise ValueError(f"unknown contract {name!r}; known: {', '.join(CONTRACT_NAMES)}")
    artifact: dict[str, Any] = json.loads((ARTIFACT_DIR / f"{name}.json").read_text(encoding="utf-8"))
    return artifact
