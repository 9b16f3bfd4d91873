"""The committed ABI and bytecode are what solc-js makes of the sources today."""

from __future__ import annotations

import shutil

import pytest

from wallet.contracts import ABSTRACT, CONTRACT_NAMES, load_artifact
from wallet.contracts.build import NODE_MODULES, compile_contracts, render


def test_committed_artifacts_are_complete() -> None:
    for name in CONTRACT_NAMES:
        artifact = load_artifact(name)
        if name in ABSTRACT:
            assert artifact["bytecode"] == "0x"  # inherited (MagnetToken: the registry is the token)
        else:
            assert artifact["bytecode"].startswith("0x6") and len(artifact["bytecode"]) > 1000
        assert any(entry["type"] == "function" for entry in artifact["abi"])


@pytest.mark.node_js
@pytest.mark.slow
def test_recompiling_gives_the_committed_artifacts() -> None:
    if shutil.which("node") is None:
        pytest.skip("node is not installed: cannot recompile the contracts with solc-js")
    if not (NODE_MODULES / "solc").exists():
        pytest.skip("npm package solc is absent: run `make node-deps`")
    fresh = compile_contracts()
    for name in CONTRACT_NAMES:
        committed = load_artifact(name)
        assert render(fresh[name]) == render(committed), f"{name} is stale: run `make contracts` and commit"
