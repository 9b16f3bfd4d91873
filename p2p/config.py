"""Configuration section of `p2p` (a pure dataclass: imports nothing of ours).

Every duration is in seconds. Each field carries a help text; `node.config` gathers this
section into the node's one `Config`.
"""

from __future__ import annotations

from dataclasses import dataclass, field


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass
class P2PConfig:
    """Settings of `p2p`: host, gossip, validation, discovery, blobs and direct requests."""

    # --- host ---------------------------------------------------------------------------------
    listen_addrs: list[str] = field(
        default_factory=lambda: ["/ip4/0.0.0.0/tcp/0"],
        metadata=_help("Multiaddrs to listen on (TCP only). Port 0 picks a free port."),
    )
    announce_addrs: list[str] = field(
        default_factory=list,
        metadata=_help("Multiaddrs advertised to peers instead of the listen addresses; empty: the "
                       "listen addresses with 0.0.0.0 replaced by this machine's addresses."),
    )
    key_file: str = field(
        default="p2p/peer_key", metadata=_help("Ed25519 peer key file, relative to the data directory.")
    )
    max_connections: int = field(default=48, metadata=_help("Most open connections (desktop-sized)."))
    low_watermark: int = field(default=8, metadata=_help("Below this many connections, dial known peers."))
    high_watermark: int = field(default=32, metadata=_help("Above this many connections, prune."))
    dial_timeout: float = field(default=10.0, metadata=_help("Seconds allowed to dial a peer."))

    # --- gossip -------------------------------------------------------------------------------
    gossip_heartbeat: float = field(default=1.0, metadata=_help("GossipSub heartbeat interval (seconds)."))
    gossip_degree: int = field(default=6, metadata=_help("GossipSub mesh degree D."))
    gossip_degree_low: int = field(default=4, metadata=_help("GossipSub mesh degree low bound."))
    gossip_degree_high: int = field(default=12, metadata=_help("GossipSub mesh degree high bound."))
    gossip_protocols: list[str] = field(
        default_factory=lambda: ["/meshsub/1.1.0"],
        metadata=_help("GossipSub protocol versions spoken. v1.1 only: v1.2's IDONTWANT costs CPU here."),
    )
    gossip_max_per_topic_per_second: float = field(
        default=40.0,
        metadata=_help("GossipSub spam protection: messages per second per topic accepted from one peer."),
    )
    max_message_bytes: int = field(default=65536, metadata=_help("Largest gossip payload accepted (bytes)."))
    clock_skew: float = field(
        default=30.0, metadata=_help("Seconds a message's issued_at may lie in the future.")
    )
    validity_window: float = field(
        default=600.0, metadata=_help("Seconds a message stays valid; replays inside it are rejected.")
    )
    publish_rate: float = field(
        default=5.0, metadata=_help("Own gossip publishes per second (token bucket).")
    )
    publish_burst: int = field(default=20, metadata=_help("Own gossip publishes allowed in a burst."))
    heartbeat_interval: float = field(
        default=300.0,
        metadata=_help("Seconds between own Heartbeat messages. Network-wide cost: N nodes send N/interval "
                       "messages/s, each costing every node ~5-10 ms CPU: 100 nodes at 300 s = 3 ms/s each."),
    )
    identity_fetch_timeout: float = field(
        default=1.0,
        metadata=_help("Seconds a message from a sender whose Identity is unknown waits for it to be "
                       "fetched (the fetch goes on in the background); after that it is dropped."),
    )
    validator_refresh: float = field(
        default=60.0,
        metadata=_help("Seconds between reads of the validator set from the chain registry (who may "
                       "announce tasks and sign receipts); an unknown signer asks for an early read."),
    )
    validator_recheck: float = field(
        default=10.0,
        metadata=_help("Fewest seconds between two early reads of the validator set (unknown signers)."),
    )
    ban_threshold: int = field(default=5, metadata=_help("Rejected messages after which a peer is banned."))
    ban_duration: float = field(default=900.0, metadata=_help("Seconds a banned peer stays disconnected."))

    # --- discovery ----------------------------------------------------------------------------
    bootstrap_peers: list[str] = field(
        default_factory=list,
        metadata=_help("Extra bootstrap multiaddrs with /p2p/<peer id> (the network profile adds its own)."),
    )
    bootstrap_backoff_initial: float = field(default=1.0, metadata=_help("First retry delay to a bootstrap."))
    bootstrap_backoff_max: float = field(default=60.0, metadata=_help("Longest retry delay to a bootstrap."))
    reconnect_interval: float = field(default=5.0, metadata=_help("Seconds between connectivity checks."))
    enable_mdns: bool = field(default=False, metadata=_help("Find peers on the LAN with mDNS."))

    # --- blobs --------------------------------------------------------------------------------
    blob_dir: str = field(default="blobs", metadata=_help("Blob store directory, relative to the data dir."))
    blob_quota_bytes: int = field(
        default=50_000_000_000, metadata=_help("Most bytes kept in the blob store; unpinned blobs go first.")
    )
    blob_max_bytes: int = field(default=20_000_000_000, metadata=_help("Largest single blob accepted."))
    blob_chunk_bytes: int = field(
        default=1_048_112,
        metadata=_help("Bytes read from disk at a time (in a worker thread) when serving a blob; they go "
                       "out in stream writes of 65,507 bytes, one yamux frame in one Noise message each."),
    )
    blob_stall_timeout: float = field(
        default=10.0, metadata=_help("Seconds without progress after which a blob provider is dropped.")
    )
    blob_transfers_per_peer: int = field(
        default=2, metadata=_help("Concurrent blob transfers served to (or accepted from) one peer.")
    )
    blob_provider_penalty: int = field(
        default=3, metadata=_help("Rejections charged to a provider that served bytes failing the hash.")
    )

    # --- direct requests ----------------------------------------------------------------------
    request_timeout: float = field(default=15.0, metadata=_help("Seconds allowed for a direct request."))
    request_max_bytes: int = field(default=1_048_576, metadata=_help("Largest direct request or reply."))
    request_rate: float = field(default=2.0, metadata=_help("Direct requests per second accepted per peer."))
    request_burst: int = field(default=10, metadata=_help("Direct requests accepted from a peer in a burst."))
