"""The p2p service of one node: host, gossip, peer book, blobs, direct requests and discovery.

``P2PService.run()`` is a trio task (the node core starts it in its trio thread); it returns only
after the host is closed, so no socket outlives it. Other components use the service through its
attributes once ``run`` has reported started: ``gossip`` (typed publish/subscribe), ``blobs``
(fetch/push), ``requests`` (direct request/response) and ``peerbook``.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import multiaddr
import psutil
import trio
from libp2p.abc import IHost, INetConn, INetStream, INetwork, INotifee
from libp2p.peer.id import ID
from libp2p.tools.anyio_service import background_trio_service

from node.events import EventBus
from node.service import CoreContext, TaskStatus
from p2p.blobs import HAVE_REQUEST, BlobService, PushPolicy, refuse_all_pushes
from p2p.blobstore import BlobInfo, BlobStore
from p2p.config import P2PConfig
from p2p.discovery import Discovery
from p2p.events import (
    ConnectionRefused,
    HostStarted,
    PeerBanned,
    PeerConnected,
    PeerDisconnected,
    PeerUnbanned,
)
from p2p.gossip import Gossip
from p2p.host import (
    build_host,
    count_security_refusals,
    dialable_addrs,
    load_or_create_peer_key,
    parse_addrs,
    stop_auto_dialling,
)
from p2p.peerbook import PeerBook
from p2p.reputation import Reputation
from p2p.reqresp import RequestResponse
from p2p.validation import AllowListAuthorizer, Authorizer, ChainAuthorizer, MessageChecker
from protocol.messages import PROTOCOL_VERSION, ROLE_MINER, ROLE_RELAY, ROLE_VALIDATOR, Heartbeat, Identity
from protocol.signing import Domain, SignedMessage, SignerLike, sign

log = logging.getLogger("magnet.p2p")

SOFTWARE_VERSION = "magnet/0.1.0"
STOP_TIMEOUT = 5.0
PEERBOOK_SAVE_INTERVAL = 10.0
IDENTITY_REPEATS = (1.5, 5.0, 15.0)  # heartbeats after the first connection
# Each repeat lands at a random 75-125 % of its time: nodes started together (a restart, the devnet)
# would otherwise re-announce in one burst (20 nodes: 380 EIP-712 checks at once, ~2 s of delay).
IDENTITY_JITTER = 0.25
VALIDATOR_POLL = 0.5  # seconds between checks whether the chain validator set wants a read
FIRST_VALIDATOR_READ_WAIT = 5.0  # start-up waits this long for the first read of the set at most


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class LocalPeer:
    """What this node says about itself in its Identity."""

    signer: SignerLike
    roles: int
    payout_address: str = ""
    cpu_cores: int = field(default_factory=lambda: os.cpu_count() or 1)
    ram_mb: int = field(default_factory=lambda: psutil.virtual_memory().total // (1 << 20))
    gpu_name: str = ""
    gpu_mb: int = 0
    est_gflops: int = 0


class _ConnectionWatch(INotifee):
    """Emits connection events and drops banned peers that connect again."""

    def __init__(self, service: P2PService) -> None:
        self.service = service

    async def connected(self, network: INetwork, conn: INetConn) -> None:
        peer = conn.muxed_conn.peer_id
        if self.service.reputation.is_banned(peer.to_string()):
            self.service.schedule_disconnect(peer)
            return
        self.service.bus.emit(PeerConnected(peer_id=peer.to_string()))
        self.service.learn_identity(peer)

    async def disconnected(self, network: INetwork, conn: INetConn) -> None:
        self.service.bus.emit(PeerDisconnected(peer_id=conn.muxed_conn.peer_id.to_string()))

    async def opened_stream(self, network: INetwork, stream: INetStream) -> None:
        return None

    async def closed_stream(self, network: INetwork, stream: INetStream) -> None:
        return None

    async def listen(self, network: INetwork, multiaddr: multiaddr.Multiaddr) -> None:
        return None

    async def listen_close(self, network: INetwork, multiaddr: multiaddr.Multiaddr) -> None:
        return None


class P2PService:
    """Everything network-facing of one node, run as one trio task."""

    def __init__(self, config: P2PConfig, data_dir: Path, domain: Domain, local: LocalPeer, *,
                 authorizer: Authorizer | None = None, bus: EventBus | None = None,
                 bootstrap: Sequence[str] = (), push_policy: PushPolicy = refuse_all_pushes) -> None:
        self.config = config
        self.domain = domain
        self.local = local
        self.bus = bus or EventBus()
        self.key_pair = load_or_create_peer_key(data_dir / config.key_file)
        self.host: IHost = build_host(config, self.key_pair)
        self.peer_id: ID = self.host.get_id()
        self.reputation = Reputation(config.ban_threshold, config.ban_duration, on_ban=self._on_ban)
        self.peerbook = PeerBook()
        self.requests = RequestResponse(self.host, config, self.reputation.is_banned)
        self.authorizer: Authorizer = authorizer or AllowListAuthorizer(())
        self.checker = MessageChecker(domain, self.peerbook, self.authorizer,
                                      config.max_message_bytes, config.clock_skew, config.validity_window)
        self.gossip = Gossip(self.host, config, self.checker, self.peerbook, self.reputation,
                             self.requests, self.bus)
        self.store = BlobStore(data_dir / config.blob_dir, config.blob_quota_bytes, config.blob_max_bytes)
        self.blobs = BlobService(self.host, self.store, config, self.reputation, self.bus, push_policy)
        self.requests.register(HAVE_REQUEST, self.blobs.serve_have, max_request=8192, rate=10.0, burst=50)
        self.discovery = Discovery(self.host, config, self.bus, bootstrap)
        self.started_at = time.monotonic()
        self._nursery: trio.Nursery | None = None
        self._heartbeat_seq = now_ms()
        self._last_addrs: list[str] = []
        self._loops: trio.Nursery | None = None
        self._loops_done = trio.Event()
        self.stopping = trio.Event()
        self.validators_read = trio.Event()  # the first read of a chain validator set was tried
        self.host.get_network().register_notifee(_ConnectionWatch(self))
        self.refused_connections: dict[str, int] = {}
        count_security_refusals(self.host, self._on_refused)

    # --- lifecycle ------------------------------------------------------------------------------
    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Listen, join the gossip topics, announce ourselves; until cancelled or ``stop()``.

        py-libp2p leaks sockets when its tasks are cancelled before ``host.close()`` runs (a
        cancelled yamux close marks the connection closed without closing the socket). So the
        host runs under a shield, and cancelling ``run`` only sets ``stopping``: the host is
        then closed while everything still works, within ``STOP_TIMEOUT`` seconds.
        """
        async with trio.open_nursery() as watcher:
            watcher.start_soon(self._stop_when_cancelled)
            with trio.CancelScope(shield=True):
                await self._run_host(task_status)
            watcher.cancel_scope.cancel()

    def stop(self) -> None:
        """Ask ``run`` to close the host and return."""
        self.stopping.set()

    async def _stop_when_cancelled(self) -> None:
        try:
            await trio.sleep_forever()
        finally:
            self.stopping.set()

    async def _run_host(self, task_status: Any) -> None:
        listen = parse_addrs(self.config.listen_addrs, "p2p.listen_addrs")
        async with self.host.run(listen):
            try:
                async with background_trio_service(self.gossip.pubsub), \
                        background_trio_service(self.gossip.router), trio.open_nursery() as nursery:
                    self._nursery = nursery
                    await self._start(nursery)
                    task_status.started(self)
                    await self.stopping.wait()
                    self._nursery = None
                    # Our loops go first: once the host closes, its listeners' sockets are gone
                    # and a publish (libp2p reads the listen addresses for it) raised EBADF.
                    if self._loops is not None:
                        self._loops.cancel_scope.cancel()
                    with trio.move_on_after(STOP_TIMEOUT):
                        await self._loops_done.wait()
                    with trio.move_on_after(STOP_TIMEOUT):
                        await self.host.close()
                    nursery.cancel_scope.cancel()
            finally:
                self._nursery = None
                with trio.move_on_after(STOP_TIMEOUT):
                    await self.host.close()  # no-op when closed above; covers a failed start
                self.gossip.close()

    async def _start(self, nursery: trio.Nursery) -> None:
        await stop_auto_dialling(self.host)
        await self.gossip.pubsub.wait_until_ready()
        await self.gossip.subscribe_all(nursery)
        self.gossip.set_identity(self.sign_identity())
        await nursery.start(self._run_loops)
        if isinstance(self.authorizer, ChainAuthorizer):
            # Announcements heard before the first read would be refused: wait for it a little.
            with trio.move_on_after(FIRST_VALIDATOR_READ_WAIT):
                await self.validators_read.wait()
        self.bus.emit(HostStarted(peer_id=self.peer_id.to_string(), addrs=self.addrs()))

    async def _run_loops(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Discovery, announcements, unbans and validator-set reads: one nursery, cancelled (and
        waited for) before the host closes."""
        try:
            async with trio.open_nursery() as loops:
                self._loops = loops
                loops.start_soon(self.discovery.run)
                loops.start_soon(self._announce_loop)
                loops.start_soon(self._unban_loop)
                if isinstance(self.authorizer, ChainAuthorizer):
                    loops.start_soon(self._validator_set_loop, self.authorizer)
                task_status.started()
        finally:
            self._loops = None
            self._loops_done.set()

    async def fetch_blob(self, blob_hash: str, size: int, hints: Sequence[ID | str] = (),
                         public: bool = True) -> BlobInfo:
        """Fetch a public blob from ``hints`` (e.g. the announcing validator) and any connected peer
        that says it has it."""
        found = await self.blobs.find_providers(self.requests, blob_hash)
        hinted = [h if isinstance(h, ID) else ID.from_base58(h) for h in hints]
        providers = hinted + [p for p in found if p not in hinted]
        return await self.blobs.fetch(blob_hash, size, providers, public=public)

    def addrs(self) -> list[str]:
        """Dialable addresses with /p2p/<peer id>.

        While the host closes, its listeners' sockets go before our own tasks are cancelled, and
        asking them fails (EBADF); the addresses last read are returned then."""
        try:
            self._last_addrs = dialable_addrs(self.host)
        except OSError as exc:
            log.debug("listener addresses unreadable (host closing?): %s", exc)
        return list(self._last_addrs)

    # --- own messages ---------------------------------------------------------------------------
    def sign_identity(self) -> SignedMessage:
        local = self.local
        identity = Identity(
            peer_id=self.peer_id.to_string(), address=local.signer.address,
            payout_address=local.payout_address or local.signer.address, roles=local.roles,
            addrs=tuple(self.addrs()[:8]), cpu_cores=local.cpu_cores, ram_mb=local.ram_mb,
            gpu_name=local.gpu_name, gpu_mb=local.gpu_mb, est_gflops=local.est_gflops,
            software_version=SOFTWARE_VERSION, protocol_version=PROTOCOL_VERSION, issued_at=now_ms(),
        )
        return sign(identity, self.domain, local.signer)

    def sign_heartbeat(self, status: str = "idle", load_bps: int = 0, active_tasks: int = 0) -> SignedMessage:
        self._heartbeat_seq += 1
        heartbeat = Heartbeat(address=self.local.signer.address, seq=self._heartbeat_seq, status=status,
                              load_bps=load_bps, active_tasks=active_tasks,
                              uptime_s=int(time.monotonic() - self.started_at), issued_at=now_ms())
        return sign(heartbeat, self.domain, self.local.signer)

    async def _announce_loop(self) -> None:
        """Gossip our Identity once we have a peer to hear it, again as the mesh fills, then a
        Heartbeat now and then.

        One early publish reaches only the mesh of that moment, and GossipSub does not repair it
        (measured: 20 nodes, 6 of them knew under half the identities 12 s later). So the Identity
        goes out again after ``IDENTITY_REPEATS`` heartbeats; neighbours also ask for it on
        connect, and a peer still missing it fetches it when our first message reaches it. The
        repeats are jittered (``IDENTITY_JITTER``) so that nodes started together spread them out.
        """
        while not self.host.get_network().get_connections():
            await trio.sleep(0.2)
        waited = 0.0
        for repeat in IDENTITY_REPEATS:
            at = max(waited, repeat * random.uniform(1 - IDENTITY_JITTER, 1 + IDENTITY_JITTER))
            await trio.sleep((at - waited) * self.config.gossip_heartbeat)
            waited = at
            await self.gossip.publish(self.sign_identity())
        while True:
            await trio.sleep(self.config.heartbeat_interval)
            await self.gossip.publish(self.sign_heartbeat())

    def learn_identity(self, peer: ID) -> None:
        """Ask a newly connected peer for its Identity (over its connection), unless known."""
        if self._nursery is not None and self.peerbook.get(peer.to_string()) is None:
            self._nursery.start_soon(self.gossip.ask_identity, peer)

    def _on_refused(self, remote: str, reason: str) -> None:
        count = self.refused_connections[reason] = self.refused_connections.get(reason, 0) + 1
        log.info("refused inbound connection from %s: %s", remote, reason)
        self.bus.emit(ConnectionRefused(remote=remote, reason=reason, count=count))

    async def _validator_set_loop(self, authorizer: ChainAuthorizer) -> None:
        """Read the chain validator set when due (in a worker thread: the read blocks)."""
        while True:
            if authorizer.due():
                await trio.to_thread.run_sync(authorizer.refresh, abandon_on_cancel=True)  # type: ignore[call-arg]  # the stub lags trio 0.35
            self.validators_read.set()
            await trio.sleep(VALIDATOR_POLL)

    # --- bans -----------------------------------------------------------------------------------
    def _on_ban(self, peer: str, reason: str) -> None:
        log.warning("banning peer %s for %.0f s: %s", peer, self.config.ban_duration, reason)
        peer_id = ID.from_base58(peer)
        self.gossip.pubsub.add_to_blacklist(peer_id)
        self.schedule_disconnect(peer_id)
        self.bus.emit(PeerBanned(peer_id=peer, reason=reason, seconds=self.config.ban_duration))

    def schedule_disconnect(self, peer_id: ID) -> None:
        if self._nursery is not None:
            self._nursery.start_soon(self._disconnect, peer_id)

    async def _disconnect(self, peer_id: ID) -> None:
        try:
            await self.host.disconnect(peer_id)
        except Exception as exc:
            log.debug("disconnect of %s failed: %r", peer_id, exc)

    async def _unban_loop(self) -> None:
        while True:
            await trio.sleep(min(5.0, self.config.ban_duration))
            for peer in self.reputation.expired_bans():
                self.gossip.pubsub.remove_from_blacklist(ID.from_base58(peer))
                self.bus.emit(PeerUnbanned(peer_id=peer))


# --- the node core's plug-in -------------------------------------------------------------------


class NodeP2P:
    """``node.service.Service`` wrapper: builds a ``P2PService`` from the core's config and profile.

    Other services reach the network through ``core.service("p2p").p2p`` (gossip, blobs,
    requests, peer book) once the node has started.

    Who counts as a validator: where the core offers ``validator_source()`` (``NodeCore`` does
    when the profile names a JSON-RPC endpoint) a ``ChainAuthorizer`` over the registry, united
    with the profile's ``validators``; otherwise the profile's list alone.
    """

    name = "p2p"

    def __init__(self, core: CoreContext) -> None:
        profile = core.profile
        if profile is None:
            raise ValueError("the p2p role needs a network profile: pass --network FILE "
                             "(the devnet writes one)")
        if core.signer is None:
            raise ValueError("the p2p role needs a wallet to sign this node's Identity: run `magnet init`")
        self.core = core
        self.local = LocalPeer(core.signer, ROLE_MINER)
        self.p2p = P2PService(core.config.p2p, core.data_dir.root, profile.domain(), self.local,
                              authorizer=node_authorizer(core, profile.validators), bus=core.events,
                              bootstrap=profile.bootstrap_peers)

    def _roles(self) -> int:
        roles = (ROLE_VALIDATOR if self.core.service("validator") is not None else 0) | (
            ROLE_MINER if self.core.service("miner") is not None else 0)
        return roles or ROLE_RELAY

    async def run(self, core: CoreContext, task_status: TaskStatus[None]) -> None:
        self.local.roles = self._roles()
        async with trio.open_nursery() as nursery:
            await nursery.start(self.p2p.run)
            nursery.start_soon(self._save_peerbook_loop)
            task_status.started()
            await self.p2p.stopping.wait()
            nursery.cancel_scope.cancel()

    async def stop(self) -> None:
        self._save()  # while the host still answers for its addresses
        self.p2p.stop()

    def identity(self) -> dict[str, str]:
        return {"peer_id": self.p2p.peer_id.to_string(), "listen": " ".join(self.p2p.addrs())}

    async def _save_peerbook_loop(self) -> None:
        while True:
            await trio.sleep(PEERBOOK_SAVE_INTERVAL)
            self._save()

    def _save(self) -> None:
        try:
            save_peerbook(self.core.data_dir.root / self.p2p.config.key_file, self.p2p)
        except OSError as exc:
            log.warning("peer book not saved: %s", exc)


def create_service(core: CoreContext) -> NodeP2P:
    return NodeP2P(core)


def node_authorizer(core: CoreContext, validators: Sequence[str]) -> Authorizer:
    """The chain registry's validators (plus ``validators``) where the core can read them, else
    ``validators`` alone. The read function comes from the core: p2p/ does not import wallet/."""
    source = getattr(core, "validator_source", None)
    fetch = source() if callable(source) else None
    if fetch is None:
        return AllowListAuthorizer(validators)
    config = core.config.p2p
    return ChainAuthorizer(fetch, validators, config.validator_refresh, config.validator_recheck)


def peerbook_path(key_file: Path) -> Path:
    """Where a node writes its peer book for ``magnet peers`` (beside the peer key)."""
    return key_file.parent / "peers.json"


def save_peerbook(key_file: Path, service: P2PService) -> None:
    """Write the peer book (JSON, atomic) so ``magnet peers`` can show it from another process."""
    path = peerbook_path(key_file)
    data: dict[str, Any] = {
        "peer_id": service.peer_id.to_string(), "addrs": service.addrs(), "saved_at": time.time(),
        "connected": [p.to_string() for p in service.host.get_network().get_connections_map()],
        "peers": [record.summary() for record in service.peerbook.records()]}
    if isinstance(service.authorizer, ChainAuthorizer):
        data["validators"] = service.authorizer.summary()
    elif isinstance(service.authorizer, AllowListAuthorizer):
        data["validators"] = {"chain": None, "static": len(service.authorizer.addresses)}
    data["rejected"] = dict(service.gossip.rejected_by_reason)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
    os.replace(tmp, path)
