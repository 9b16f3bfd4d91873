"""Network profiles: round trip, fresh salts, and a clear error for every kind of bad file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.profile import NetworkProfile, ProfileError
from protocol.signing import Domain

PEER = "/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA"
REGISTRY = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
TOKEN = "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512"
VALIDATOR = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"


def devnet(**overrides: Any) -> NetworkProfile:
    args: dict[str, Any] = dict(
        chain_id=131277322940537, rpc_url="http://127.0.0.1:8545", registry=REGISTRY, token=TOKEN,
        bootstrap_peers=[PEER], validators=[VALIDATOR.lower()],
    )
    args.update(overrides)
    return NetworkProfile.new_devnet(**args)


def test_round_trip_through_a_file(tmp_path: Path) -> None:
    profile = devnet()
    path = tmp_path / "net" / "profile.json"
    profile.save(path)
    loaded = NetworkProfile.load(path)
    assert loaded == profile
    assert loaded.validators == (VALIDATOR,)  # checksummed on the way in
    assert json.loads(path.read_text())["domain_salt"] == "0x" + profile.domain_salt.hex()


def test_each_devnet_gets_a_fresh_salt_and_its_domain() -> None:
    a, b = devnet(), devnet()
    assert a.domain_salt != b.domain_salt and len(a.domain_salt) == 32
    domain = a.domain()
    assert isinstance(domain, Domain)
    assert (domain.chain_id, domain.verifying_contract, domain.salt) == (a.chain_id, REGISTRY, a.domain_salt)
    assert a.domain().separator() != b.domain().separator()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"format": "something-else"}, "not a MAGNET network profile"),
        ({"version": 99}, "newer than this MAGNET"),
        ({"extra": 1}, "unknown field"),
        ({"name": "../../etc"}, "name must be"),
        ({"chain_id": 0}, "chain_id must be"),
        ({"chain_id": True}, "chain_id must be"),
        ({"rpc_url": "file:///etc/passwd"}, "rpc_url must be"),
        ({"registry": "0x1234"}, "registry"),
        ({"token": REGISTRY.lower().replace("f", "F", 1)}, "checksum"),
        ({"domain_salt": "0x1234"}, "domain_salt"),
        ({"bootstrap_peers": ["/ip4/127.0.0.1/tcp/4001"]}, "/p2p/<peer id>"),
        ({"bootstrap_peers": ["/ip4/999.0.0.1/tcp/1/p2p/x"]}, "not a dialable multiaddr"),
        ({"bootstrap_peers": "not a list"}, "must be a JSON list"),
        ({"validators": ["nobody"]}, "validators"),
    ],
)
def test_bad_fields_are_named(tmp_path: Path, change: dict[str, Any], message: str) -> None:
    data = devnet().to_json()
    data.update(change)
    path = tmp_path / "p.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ProfileError, match=message) as info:
        NetworkProfile.load(path)
    assert str(path) in str(info.value)


def test_missing_field_unreadable_and_oversize_files(tmp_path: Path) -> None:
    data = devnet().to_json()
    del data["token"]
    path = tmp_path / "p.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ProfileError, match="missing field"):
        NetworkProfile.load(path)
    with pytest.raises(ProfileError, match="does not exist"):
        NetworkProfile.load(tmp_path / "absent.json")
    path.write_bytes(b"\xff\xfe{")
    with pytest.raises(ProfileError, match="not valid JSON"):
        NetworkProfile.load(path)
    path.write_text(" " * 300_000)
    with pytest.raises(ProfileError, match="over"):
        NetworkProfile.load(path)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(data=JSON, field=st.sampled_from(sorted(devnet().to_json())), value=JSON)
def test_any_json_is_a_profile_or_a_profile_error(data: Any, field: str, value: Any) -> None:
    for candidate in (data, {**devnet().to_json(), field: value}):
        try:
            NetworkProfile.from_json(candidate)
        except ProfileError:
            pass
