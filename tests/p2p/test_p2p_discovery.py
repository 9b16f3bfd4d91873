"""Bootstrap peers: retried with backoff while unreachable, re-dialled after a drop."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
from p2p_netutil import make_service, start, wait_for

from p2p.discovery import DiscoveryError, parse_peer_addr
from p2p.events import BootstrapFailed

pytestmark = pytest.mark.network


@pytest.mark.slow
def test_bootstrap_is_retried_with_backoff_and_reconnected_after_a_drop(tmp_path: Path) -> None:
    async def main() -> None:
        async with trio.open_nursery() as nursery:
            hub = make_service(tmp_path, "hub", listen_addrs=["/ip4/127.0.0.1/tcp/0"])
            # Learn the hub's peer id without running it yet; pick a port nobody listens on.
            with trio.socket.socket() as probe:
                await probe.bind(("127.0.0.1", 0))
                port = probe.getsockname()[1]
            hub.config.listen_addrs = [f"/ip4/127.0.0.1/tcp/{port}"]
            bootstrap = f"/ip4/127.0.0.1/tcp/{port}/p2p/{hub.peer_id}"
            node = make_service(tmp_path, "node", bootstrap_backoff_initial=0.1, bootstrap_backoff_max=0.4,
                                dial_timeout=2.0)
            node.discovery.add(parse_peer_addr(bootstrap))
            failures: list[BootstrapFailed] = []
            node.bus.subscribe(failures.append, [BootstrapFailed])  # type: ignore[arg-type]
            await start(nursery, node)
            await wait_for(lambda: len(failures) >= 4, 15, "four failed attempts")
            assert [f.retry_in for f in failures[:4]] == [0.1, 0.2, 0.4, 0.4]  # doubling, capped

            def connected() -> bool:
                return bool(node.host.get_network().get_connections(hub.peer_id))

            await start(nursery, hub)  # the bootstrap peer comes up: the node gets in by itself
            await wait_for(connected, 10, "connection")
            await hub.host.disconnect(node.peer_id)  # a drop
            await wait_for(lambda: not connected(), 5, "the drop")
            await wait_for(connected, 10, "reconnection")
            nursery.cancel_scope.cancel()

    trio.run(main)


@pytest.mark.parametrize("bad", ["/ip4/127.0.0.1/tcp/4001", "hello", "/ip4/127.0.0.1/tcp/1/p2p/notapeerid"])
def test_bootstrap_address_without_a_peer_id_says_how_to_write_one(bad: str) -> None:
    with pytest.raises(DiscoveryError, match="/p2p/<peer id>"):
        parse_peer_addr(bad)
