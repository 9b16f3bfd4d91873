"""Released messages stay decodable: the vectors in tests/protocol/vectors/ must decode and verify forever."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from protocol.base import registry
from protocol.encoding import decode, encode, message_id
from protocol.signing import Domain, recover_signer, signing_digest

VECTOR_FILES = sorted((Path(__file__).parent / "vectors").glob("v*.json"))


def _load(path: Path) -> tuple[Domain, list[dict[str, Any]]]:
    doc = json.loads(path.read_text())
    d = doc["domain"]
    net = Domain(d["chainId"], d["verifyingContract"], bytes.fromhex(d["salt"][2:]))
    return net, doc["vectors"]


def _all_vectors() -> list[tuple[str, Domain, dict[str, Any]]]:
    out = []
    for path in VECTOR_FILES:
        net, vectors = _load(path)
        out += [(path.name, net, v) for v in vectors]
    return out


def test_vector_files_exist() -> None:
    assert [p.name for p in VECTOR_FILES][:1] == ["v1.json"]


def test_every_registered_type_version_has_a_vector() -> None:
    covered = {(v["type"], v["version"]) for _name, _net, v in _all_vectors()}
    assert set(registry()) <= covered, "add a vector file for every newly released (type, version)"


@pytest.mark.parametrize(
    ("file", "net", "vector"), _all_vectors(), ids=lambda x: x["type"] if isinstance(x, dict) else ""
)
def test_released_vector_decodes_and_verifies(file: str, net: Domain, vector: dict[str, Any]) -> None:
    data = vector["encoded"].encode("utf-8")
    signed = decode(data)
    assert (vector["type"], vector["version"]) == (signed.message.TYPE, signed.message.VERSION)
    assert recover_signer(signed, net) == vector["signer"]
    assert encode(signed) == data
    assert message_id(data).hex() == vector["message_id"]
    assert signed.message.struct_hash().hex() == vector["struct_hash"]
    assert signing_digest(signed.message, net).hex() == vector["digest"]
