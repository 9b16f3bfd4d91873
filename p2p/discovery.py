"""Finding and keeping peers: bootstrap peers with backoff, reconnection after drops, mDNS on a LAN.

Bootstrap peers (from the network profile and the config) are dialled at start, retried with
exponential backoff while unreachable, and re-dialled whenever the connection drops. mDNS is off
by default: py-libp2p's mDNS finds peers but does not connect, and reports them on a zeroconf
thread, so found peers are handed to trio through a channel and dialled here.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import multiaddr
import trio
from libp2p.abc import IHost
from libp2p.discovery.events.peerDiscovery import peerDiscovery
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo, info_from_p2p_addr

from node.events import EventBus
from p2p.config import P2PConfig
from p2p.events import BootstrapFailed

log = logging.getLogger("magnet.p2p.discovery")


class DiscoveryError(ValueError):
    """A bootstrap address is unusable (the message says how to write one)."""


def parse_peer_addr(text: str) -> PeerInfo:
    """A multiaddr that ends in ``/p2p/<peer id>``, as PeerInfo."""
    try:
        return info_from_p2p_addr(multiaddr.Multiaddr(text))
    except Exception as exc:
        raise DiscoveryError(f"bootstrap address {text!r} is not usable ({exc}); write it as "
                             "/ip4/<host>/tcp/<port>/p2p/<peer id>") from exc


def is_connected(host: IHost, peer_id: ID) -> bool:
    return bool(host.get_network().get_connections(peer_id))


class Discovery:
    """Keeps connections to the peers this node must stay close to."""

    def __init__(self, host: IHost, config: P2PConfig, bus: EventBus, bootstrap: Sequence[str] = ()) -> None:
        self.host = host
        self.config = config
        self.bus = bus
        own = host.get_id()
        infos = [parse_peer_addr(a) for a in [*bootstrap, *config.bootstrap_peers]]
        self.keep: dict[ID, PeerInfo] = {i.peer_id: i for i in infos if i.peer_id != own}
        self.dials = 0

    def add(self, info: PeerInfo) -> None:
        """Stay connected to ``info`` from now on (reconnect after drops)."""
        if info.peer_id != self.host.get_id():
            self.keep[info.peer_id] = info

    async def run(self) -> None:
        """Dial every kept peer, retrying with backoff; runs until cancelled."""
        async with trio.open_nursery() as nursery:
            started: set[ID] = set()
            while True:
                for peer_id in list(self.keep):
                    if peer_id not in started:
                        started.add(peer_id)
                        nursery.start_soon(self._keep_connected, peer_id)
                if self.config.enable_mdns and not getattr(self, "_mdns_started", False):
                    self._mdns_started = True
                    nursery.start_soon(self._mdns_loop)
                await trio.sleep(self.config.reconnect_interval)

    async def _keep_connected(self, peer_id: ID) -> None:
        delay = self.config.bootstrap_backoff_initial
        while peer_id in self.keep:
            if is_connected(self.host, peer_id):
                delay = self.config.bootstrap_backoff_initial
                await trio.sleep(self.config.reconnect_interval)
                continue
            info = self.keep[peer_id]
            unblock = getattr(self.host.get_network(), "unblock_peer", None)
            if unblock is not None:
                unblock(peer_id)  # py-libp2p refuses a failed peer for 60 s: our backoff decides instead
            try:
                self.dials += 1
                with trio.fail_after(self.config.dial_timeout):
                    await self.host.connect(info)
                log.info("connected to %s", peer_id)
                delay = self.config.bootstrap_backoff_initial
            except Exception as exc:
                addr = f"{info.addrs[0] if info.addrs else ''}/p2p/{peer_id}"
                self.bus.emit(BootstrapFailed(addr=addr, error=repr(exc)[:200], retry_in=delay))
                log.info("cannot reach %s (%r); retrying in %.1f s", addr, exc, delay)
                await trio.sleep(delay)
                delay = min(delay * 2, self.config.bootstrap_backoff_max)

    async def _mdns_loop(self) -> None:
        """Dial peers that mDNS reports (its callback runs on a zeroconf thread)."""
        send, receive = trio.open_memory_channel[PeerInfo](64)
        token = trio.lowlevel.current_trio_token()

        def found(info: PeerInfo) -> None:
            try:
                trio.from_thread.run_sync(send.send_nowait, info, trio_token=token)
            except (trio.WouldBlock, trio.RunFinishedError, trio.ClosedResourceError):
                pass

        peerDiscovery.register_peer_discovered_handler(found)
        try:
            async with receive:
                async for info in receive:
                    if info.peer_id != self.host.get_id() and not is_connected(self.host, info.peer_id):
                        try:
                            with trio.fail_after(self.config.dial_timeout):
                                await self.host.connect(info)
                        except Exception as exc:
                            log.debug("mDNS peer %s not reachable: %r", info.peer_id, exc)
        finally:
            peerDiscovery.unregister_peer_discovered_handler(found)
