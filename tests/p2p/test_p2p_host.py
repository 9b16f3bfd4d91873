"""The host on 127.0.0.1: Noise only (plaintext and secio peers refused and counted), addresses,
persistent identity, and a clean stop that leaves no socket or thread behind."""

from __future__ import annotations

import gc
from collections.abc import Callable
from pathlib import Path

import multiaddr
import psutil
import pytest
import trio
from libp2p import new_host
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.custom_types import TProtocol
from libp2p.network.config import ConnectionConfig
from libp2p.peer.peerinfo import PeerInfo
from libp2p.security.insecure.transport import PLAINTEXT_PROTOCOL_ID, InsecureTransport
from libp2p.security.secio.transport import ID as SECIO_ID
from libp2p.security.secio.transport import Transport as SecioTransport
from p2p_netutil import connect, make_service, start, wait_for

from p2p.events import ConnectionRefused

LeakCheck = Callable[[], Callable[[], list[str]]]  # tests/conftest.py thread_leak_check

pytestmark = pytest.mark.network


@pytest.mark.parametrize("offered", ["plaintext", "secio"])
def test_peer_without_noise_is_refused_and_counted(tmp_path: Path, offered: str) -> None:
    async def main() -> None:
        async with trio.open_nursery() as nursery:
            node = await start(nursery, make_service(tmp_path, "node"))
            refused: list[ConnectionRefused] = []
            node.bus.subscribe(refused.append, [ConnectionRefused])  # type: ignore[arg-type]
            keys = create_new_key_pair()
            security = (
                {TProtocol(PLAINTEXT_PROTOCOL_ID): InsecureTransport(keys)}
                if offered == "plaintext"
                else {TProtocol(SECIO_ID): SecioTransport(keys)}
            )
            intruder = new_host(
                key_pair=keys,
                sec_opt=security,
                connection_config=ConnectionConfig(max_connections_per_peer=1),
            )
            async with intruder.run([multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]):
                try:
                    with pytest.raises(Exception):  # noqa: B017  the dial fails whatever the error type
                        await intruder.connect(PeerInfo(node.peer_id, node.host.get_addrs()))
                    await wait_for(lambda: bool(refused), 5, "the refusal to be counted")
                finally:
                    await intruder.close()
            await trio.sleep(0.3)
            # The intruder's dialer retries: every attempt is refused, each one counted.
            assert set(node.refused_connections) == {"no_common_security_protocol"}
            assert node.refused_connections["no_common_security_protocol"] == len(refused) >= 1
            assert [e.count for e in refused] == list(range(1, len(refused) + 1))
            assert not node.host.get_network().get_connections(intruder.get_id())
            nursery.cancel_scope.cancel()

    trio.run(main)


def test_addresses_identity_and_restart(tmp_path: Path) -> None:
    async def run_once() -> tuple[str, list[str]]:
        async with trio.open_nursery() as nursery:
            node = await start(nursery, make_service(tmp_path, "node"))
            result = (node.peer_id.to_string(), node.addrs())
            nursery.cancel_scope.cancel()
        return result

    first_id, addrs = trio.run(run_once)
    second_id, _ = trio.run(run_once)
    assert first_id == second_id  # the peer key persists in the data dir
    assert addrs
    assert all(a.startswith("/ip4/127.0.0.1/tcp/") and a.endswith(f"/p2p/{first_id}") for a in addrs)
    assert not any(a.split("/")[4] == "0" for a in addrs)  # the real port was read back


def open_inet_sockets() -> int:
    return len(psutil.Process().net_connections(kind="inet"))


@pytest.mark.slow
def test_starting_and_stopping_ten_nodes_leaves_nothing_behind(
    tmp_path: Path, thread_leak_check: LeakCheck
) -> None:
    gc.collect()
    sockets_before, leaked = open_inet_sockets(), thread_leak_check()

    async def main() -> int:
        async with trio.open_nursery() as nursery:
            nodes = [await start(nursery, make_service(tmp_path, f"n{i}")) for i in range(10)]
            for node in nodes[1:]:
                await connect(node, nodes[0])
            await trio.sleep(1.5)  # meshes form, identities are gossiped
            during = open_inet_sockets()
            nursery.cancel_scope.cancel()
        return during

    during = trio.run(main)
    gc.collect()  # an unclosed socket would raise ResourceWarning here (an error in this suite)
    assert during >= 10 + 2 * 9  # 10 listeners and both ends of 9 connections were open
    assert open_inet_sockets() == sockets_before
    assert leaked() == []


@pytest.mark.slow
def test_mdns_finds_and_connects_a_lan_peer_and_stops_cleanly(
    tmp_path: Path, thread_leak_check: LeakCheck
) -> None:
    leaked = thread_leak_check()

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            a = await start(nursery, make_service(tmp_path, "a", enable_mdns=True))
            b = await start(nursery, make_service(tmp_path, "b", enable_mdns=True))
            await wait_for(
                lambda: bool(a.host.get_network().get_connections(b.peer_id)), 15, "an mDNS-found connection"
            )
            nursery.cancel_scope.cancel()

    trio.run(main)
    gc.collect()
    assert leaked() == []  # zeroconf's threads are gone
