"""A second, independent client written from docs/PROTOCOL.md in JavaScript verifies our v1 vectors."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from protocol.base import lookup

REPO = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("eip712_check.mjs")
NEEDED = ("@noble/curves/secp256k1.js", "@noble/hashes/sha3.js")


@pytest.mark.node_js
def test_javascript_client_reproduces_canonical_form_digest_and_signer() -> None:
    if shutil.which("node") is None:
        pytest.skip("node is not installed: the JavaScript client check needs Node.js >= 20")
    for module in NEEDED:
        if not (REPO / "node_modules" / module.split("/")[0] / module.split("/")[1]).is_dir():
            pytest.skip(f"{module} is absent from node_modules (run make node-deps)")
    doc = json.loads((Path(__file__).parent / "vectors" / "v1.json").read_text())
    items = [
        {"encoded": v["encoded"], "fields": lookup(v["type"], v["version"]).eip712_fields()}
        for v in doc["vectors"]
    ]
    result = subprocess.run(
        ["node", str(SCRIPT)],
        input=json.dumps({"domain": doc["domain"], "items": items}).encode(),
        capture_output=True,
        cwd=REPO,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr.decode()
    outputs = [json.loads(line) for line in result.stdout.decode().splitlines()]
    assert len(outputs) == len(doc["vectors"])
    for out, vector in zip(outputs, doc["vectors"], strict=True):
        assert out["type"] == vector["type"]
        assert out["canonical"], f"{vector['type']}: JSON.stringify of the sorted envelope differs"
        assert out["digest"] == vector["digest"]
        assert out["signer"] == vector["signer"].lower()
