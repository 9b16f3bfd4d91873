"""A second, independent client written from docs/PROTOCOL.md in JavaScript verifies our v1 vectors."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from protocol_samples import KeySigner, samples

from protocol.base import lookup
from protocol.encoding import encode
from protocol.signing import Domain, sign, signing_digest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("eip712_check.mjs")
NEEDED = ("@noble/curves/secp256k1.js", "@noble/hashes/sha3.js")


def _unicode_vector(domain_json: dict[str, Any]) -> dict[str, Any]:
    """A message whose strings need escaping and non-ASCII UTF-8, to check the canonical-form claim."""
    net = Domain(
        domain_json["chainId"], domain_json["verifyingContract"], bytes.fromhex(domain_json["salt"][2:])
    )
    signer = KeySigner(b"\x01" * 32)
    msg = samples(signer.address, KeySigner(b"\x02" * 32).address)["Assignment"]
    msg = dataclasses.replace(msg, reason='pool "complet" \\ désolé ✓ 🚀 日本')  # type: ignore[type-var]
    data = encode(sign(msg, net, signer))
    return {
        "type": msg.TYPE,
        "version": msg.VERSION,
        "encoded": data.decode("utf-8"),
        "signer": signer.address,
        "digest": signing_digest(msg, net).hex(),
    }


@pytest.mark.node_js
def test_javascript_client_reproduces_canonical_form_digest_and_signer() -> None:
    if shutil.which("node") is None:
        pytest.skip("node is not installed: the JavaScript client check needs Node.js >= 20")
    for module in NEEDED:
        if not (REPO / "node_modules" / module.split("/")[0] / module.split("/")[1]).is_dir():
            pytest.skip(f"{module} is absent from node_modules (run make node-deps)")
    doc = json.loads((Path(__file__).parent / "vectors" / "v1.json").read_text())
    later = [json.loads(p.read_text()) for p in sorted((Path(__file__).parent / "vectors").glob("v1_*.json"))]
    assert all(d["domain"] == doc["domain"] for d in later)
    expected = doc["vectors"] + [v for d in later for v in d["vectors"]] + [_unicode_vector(doc["domain"])]
    items = [
        {"encoded": v["encoded"], "fields": lookup(v["type"], v["version"]).eip712_fields()} for v in expected
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
    assert len(outputs) == len(expected)
    for out, vector in zip(outputs, expected, strict=True):
        assert out["type"] == vector["type"]
        assert out["canonical"], f"{vector['type']}: JSON.stringify of the sorted envelope differs"
        assert out["digest"] == vector["digest"]
        assert out["signer"] == vector["signer"].lower()
