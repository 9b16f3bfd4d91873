"""The libp2p host: TCP + Noise + yamux, a persistent Ed25519 peer key, desktop-sized limits.

py-libp2p's ``new_host()`` accepts plaintext and secio unless told otherwise, dials with a fixed
250 ms wait unless ``max_connections_per_peer=1``, and its connection manager aims at 50-100
connections: every one of those defaults is overridden here (see ../shared/NOTES.md).
"""

from __future__ import annotations

import ipaddress
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import multiaddr
import psutil
from libp2p import new_host
from libp2p.abc import IHost
from libp2p.crypto.ed25519 import Ed25519PrivateKey
from libp2p.crypto.keys import KeyPair
from libp2p.crypto.x25519 import create_new_key_pair as create_x25519_key_pair
from libp2p.custom_types import TProtocol
from libp2p.network.config import ConnectionConfig
from libp2p.peer.id import ID
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
from libp2p.stream_muxer.yamux.yamux import Yamux
from libp2p.transport.exceptions import SecurityUpgradeFailure

from p2p.config import P2PConfig

log = logging.getLogger("magnet.p2p.host")
# py-libp2p turns propagation off on import; our log handlers should see its warnings.
logging.getLogger("libp2p").propagate = True
# Its auto-connector logs at INFO on every start; we stop it (see stop_auto_dialling).
logging.getLogger("libp2p.network.auto_connector").setLevel(logging.WARNING)

KEY_SEED_BYTES = 32


class HostConfigError(ValueError):
    """A listen/announce address or the peer key file is unusable."""


def load_or_create_peer_key(path: Path) -> KeyPair:
    """The node's Ed25519 peer key, created (mode 0600) on first use.

    The file holds the 32-byte seed only; a file of another size is refused rather than
    silently replaced, since replacing it would change the node's peer id.
    """
    if path.exists():
        seed = path.read_bytes()
        if len(seed) != KEY_SEED_BYTES:
            raise HostConfigError(
                f"peer key file {path} holds {len(seed)} bytes, expected {KEY_SEED_BYTES}; "
                "restore it from a backup or delete it to start with a new peer id"
            )
        private = Ed25519PrivateKey.new(seed)
    else:
        private = Ed25519PrivateKey.new()
        seed = private.to_bytes()[:KEY_SEED_BYTES]
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(seed)
        private = Ed25519PrivateKey.new(seed)
    return KeyPair(private, private.get_public_key())


def parse_addrs(addrs: Sequence[str], what: str) -> list[multiaddr.Multiaddr]:
    """Multiaddrs from strings, each TCP over IPv4/IPv6/DNS, with a clear error otherwise."""
    parsed = []
    for text in addrs:
        try:
            addr = multiaddr.Multiaddr(text)
        except Exception as exc:
            raise HostConfigError(f"{what}: {text!r} is not a multiaddr ({exc}); "
                                  "write e.g. /ip4/127.0.0.1/tcp/4401") from exc
        if "tcp" not in [p.name for p in addr.protocols()]:
            raise HostConfigError(f"{what}: {text!r} is not a TCP address; only TCP is supported")
        parsed.append(addr)
    return parsed


def local_ipv4_addresses() -> list[str]:
    """This machine's IPv4 addresses, loopback first, link-local left out."""
    found = ["127.0.0.1"]
    for entries in psutil.net_if_addrs().values():
        for entry in entries:
            if entry.family.name != "AF_INET":
                continue
            ip = ipaddress.ip_address(entry.address)
            if ip.is_loopback or ip.is_link_local or entry.address in found:
                continue
            found.append(entry.address)
    return found


def advertisable(addrs: list[multiaddr.Multiaddr]) -> list[multiaddr.Multiaddr]:
    """Replace unspecified hosts (0.0.0.0) with real interface addresses: 0.0.0.0 is undialable."""
    result: list[multiaddr.Multiaddr] = []
    for addr in addrs:
        text = str(addr)
        if text.startswith("/ip4/0.0.0.0/"):
            rest = text[len("/ip4/0.0.0.0"):]
            result.extend(multiaddr.Multiaddr(f"/ip4/{ip}{rest}") for ip in local_ipv4_addresses())
        elif not text.startswith("/ip6/::/"):
            result.append(addr)
    unique: dict[str, multiaddr.Multiaddr] = {str(a): a for a in result}
    return list(unique.values())


def connection_config(config: P2PConfig) -> ConnectionConfig:
    return ConnectionConfig(
        max_connections=config.max_connections,
        min_connections=min(config.low_watermark, config.max_connections),
        low_watermark=config.low_watermark,
        high_watermark=config.high_watermark,
        max_connections_per_peer=1,
        dial_timeout=config.dial_timeout,
    )


def build_host(config: P2PConfig, key_pair: KeyPair) -> IHost:
    """A host that speaks only Noise for security and only yamux for multiplexing."""
    announce = parse_addrs(config.announce_addrs, "p2p.announce_addrs") if config.announce_addrs else None
    noise = NoiseTransport(key_pair, noise_privkey=create_x25519_key_pair().private_key)
    host = new_host(
        key_pair=key_pair,
        sec_opt={TProtocol(NOISE_PROTOCOL_ID): noise},
        muxer_opt={TProtocol(YAMUX_PROTOCOL_ID): Yamux},
        listen_addrs=parse_addrs(config.listen_addrs, "p2p.listen_addrs"),
        connection_config=connection_config(config),
        announce_addrs=announce,
        addrs_factory=None if announce else advertisable,
        enable_mDNS=config.enable_mdns,
        enable_upnp=False,
    )
    return host


def peer_id_of(key_pair: KeyPair) -> ID:
    return ID.from_pubkey(key_pair.public_key)


def dialable_addrs(host: IHost) -> list[str]:
    """The host's advertised addresses with its /p2p/<id> suffix, as strings."""
    own = host.get_id().to_string()
    return [f"{addr}/p2p/{own}" if "/p2p/" not in str(addr) else str(addr) for addr in host.get_addrs()]


async def stop_auto_dialling(host: IHost) -> None:
    """Stop py-libp2p's auto-connector (call once the host runs).

    It dials every peer in the peerstore whenever the count drops below a target, and right after
    each disconnect: it would dial miners behind NAT, re-dial peers that banned us, and leaks a
    socket when such a dial is cancelled mid-handshake. ``p2p.discovery`` keeps the connections
    a node needs instead.
    """
    connector = getattr(host.get_network(), "auto_connector", None)
    if connector is not None:
        await connector.stop()


def count_security_refusals(host: IHost, on_refused: Callable[[str, str], None]) -> None:
    """Report each inbound connection refused at the security handshake (e.g. plaintext only).

    py-libp2p logs these at debug level and offers no hook, so the upgrader's
    ``upgrade_security`` is wrapped on this host's instance only.
    """
    upgrader = getattr(host.get_network(), "upgrader", None)
    if upgrader is None:
        return
    original = upgrader.upgrade_security

    async def upgrade_security(raw_conn: Any, is_initiator: bool, peer_id: ID | None = None) -> Any:
        try:
            return await original(raw_conn, is_initiator, peer_id)
        except SecurityUpgradeFailure as exc:
            if not is_initiator:
                remote = raw_conn.get_remote_address() if hasattr(raw_conn, "get_remote_address") else None
                where = f"{remote[0]}:{remote[1]}" if remote else "unknown"
                on_refused(where, _refusal_reason(exc))
            raise

    upgrader.upgrade_security = upgrade_security


def _refusal_reason(exc: SecurityUpgradeFailure) -> str:
    text = str(exc)
    return "no_common_security_protocol" if "negotiate" in text else "security_handshake_failed"
