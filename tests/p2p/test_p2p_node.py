"""The p2p role inside the real node core: bootstrap from a network profile, `magnet peers`."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from node.cli import main as magnet
from node.config import Config, load_config
from node.core import NodeCore
from node.profile import NetworkProfile
from p2p.service import NodeP2P
from p2p.status import status_section
from wallet.signer import LocalSigner

pytestmark = pytest.mark.network


def node_config(tmp_path: Path, name: str, profile: NetworkProfile) -> Config:
    config = load_config(path=tmp_path / "absent.toml", env={})
    config.node.data_dir = str(tmp_path / name)
    config.node.stop_timeout = 5.0
    profile_file = tmp_path / f"{name}-network.json"
    profile.save(profile_file)
    config.node.network = str(profile_file)
    config.p2p.listen_addrs = ["/ip4/127.0.0.1/tcp/0"]
    config.p2p.reconnect_interval = 0.5
    return config


def wait_until(condition, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_node_joins_through_its_bootstrap_peer_and_peers_lists_it(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    base = NetworkProfile.new_devnet(31337, "http://127.0.0.1:8545", "0x" + "11" * 20, "0x" + "22" * 20)
    first = NodeCore(node_config(tmp_path, "first", base), LocalSigner.create())
    first.plug_in("p2p")
    first.start()
    second = None
    try:
        service = first.service("p2p")
        assert isinstance(service, NodeP2P)
        assert first.identity()["peer_id"] == service.p2p.peer_id.to_string()
        bootstrap = first.call(_addrs, service)
        second_signer = LocalSigner.create()
        second = NodeCore(node_config(tmp_path, "second", base.with_peers(bootstrap)), second_signer)
        second.plug_in("p2p")
        second.start()
        wait_until(lambda: service.p2p.peerbook.peer_of(second_signer.address) is not None, 15,
                   "the second node's Identity at the first")
        record = service.p2p.peerbook.get(service.p2p.peerbook.peer_of(second_signer.address) or "")
        assert record is not None and record.roles == 4  # p2p alone: a relay
    finally:
        if second is not None:
            second.stop()
        first.stop()
    # The profile's JSON-RPC endpoint serves nothing: the chain validator set was never read.
    section = status_section(first.config, first.data_dir)
    assert section["validators_read"] == "never read" and "8545" in section["validators_error"]
    code = magnet(["peers", "--json", "--data-dir", str(tmp_path / "first")])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    book = json.loads(captured.out)
    assert [p["address"] for p in book["peers"] if p["address"] != first.address] == [second_signer.address]
    assert magnet(["peers", "--data-dir", str(tmp_path / "first")]) == 0
    text = capsys.readouterr().out
    assert "2 peers known" in text and second_signer.address in text  # itself and the second node


def test_peers_without_a_saved_book_says_what_to_do(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    code = magnet(["peers", "--data-dir", str(tmp_path / "empty")])
    assert code == 10 and "start a node first" in capsys.readouterr().err


def test_node_command_needs_a_network_profile(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    code = magnet(["node", "--data-dir", str(tmp_path / "n")])
    assert code == 2 and "--network FILE" in capsys.readouterr().err


async def _addrs(service: NodeP2P) -> list[str]:
    return service.p2p.addrs()
