"""The peer book: peer id <-> EVM address <-> payout address, roles, hardware, last seen.

Entries come only from signed ``Identity`` messages that were checked. One that arrived on gossip
from the peer id it names is *proven* (the peer signed the gossip message with its libp2p key and
the address signed the Identity); one fetched from a third peer only shows that the address claims
the peer id. A proven Identity always replaces a merely claimed one and is never replaced by one;
otherwise a newer Identity replaces an older one, so a replayed Identity cannot roll a binding back.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from protocol.messages import ROLE_MINER, ROLE_RELAY, ROLE_VALIDATOR, Identity

ROLE_NAMES = {ROLE_MINER: "miner", ROLE_VALIDATOR: "validator", ROLE_RELAY: "relay"}


def role_names(roles: int) -> list[str]:
    return [name for bit, name in ROLE_NAMES.items() if roles & bit]


@dataclass
class PeerRecord:
    peer_id: str
    address: str
    payout_address: str
    roles: int
    addrs: tuple[str, ...]
    hardware: dict[str, int | str]
    identity_issued_at: int
    identity_bytes: bytes = field(repr=False)
    proven: bool = False
    last_seen: float = field(default_factory=time.time)
    status: str = ""

    def summary(self) -> dict[str, object]:
        """A JSON-friendly view (``magnet peers``)."""
        return {
            "peer_id": self.peer_id,
            "address": self.address,
            "payout_address": self.payout_address,
            "roles": role_names(self.roles),
            "addrs": list(self.addrs),
            "hardware": dict(self.hardware),
            "last_seen": round(self.last_seen, 3),
            "status": self.status,
        }


class PeerBook:
    """Bindings learnt from Identity messages."""

    def __init__(self, max_peers: int = 10_000) -> None:
        self.max_peers = max_peers
        self.by_peer: dict[str, PeerRecord] = {}
        self.by_address: dict[str, str] = {}

    def bind(self, identity: Identity, raw: bytes, proven: bool = True) -> bool:
        """Record ``identity`` (already verified). Returns True if it changed the book."""
        current = self.by_peer.get(identity.peer_id)
        if current is not None and not self._replaces(current, identity, proven):
            current.last_seen = time.time()
            return False
        if current is None and len(self.by_peer) >= self.max_peers:
            self._evict_oldest()
        if current is not None and self.by_address.get(current.address) == identity.peer_id:
            del self.by_address[current.address]
        self.by_peer[identity.peer_id] = PeerRecord(
            peer_id=identity.peer_id,
            address=identity.address,
            payout_address=identity.payout_address,
            roles=identity.roles,
            addrs=tuple(identity.addrs),
            hardware={"cpu_cores": identity.cpu_cores, "ram_mb": identity.ram_mb,
                      "gpu_name": identity.gpu_name, "gpu_mb": identity.gpu_mb,
                      "est_gflops": identity.est_gflops},
            identity_issued_at=identity.issued_at,
            identity_bytes=raw,
            proven=proven,
        )
        self.by_address[identity.address] = identity.peer_id
        return True

    @staticmethod
    def _replaces(current: PeerRecord, identity: Identity, proven: bool) -> bool:
        if proven != current.proven:
            return proven
        return identity.issued_at > current.identity_issued_at

    def _evict_oldest(self) -> None:
        oldest = min(self.by_peer.values(), key=lambda r: r.last_seen)
        self.forget(oldest.peer_id)

    def forget(self, peer_id: str) -> None:
        record = self.by_peer.pop(peer_id, None)
        if record is not None and self.by_address.get(record.address) == peer_id:
            del self.by_address[record.address]

    def address_of(self, peer_id: str) -> str | None:
        record = self.by_peer.get(peer_id)
        return record.address if record else None

    def peer_of(self, address: str) -> str | None:
        return self.by_address.get(address)

    def get(self, peer_id: str) -> PeerRecord | None:
        return self.by_peer.get(peer_id)

    def seen(self, peer_id: str, status: str | None = None) -> None:
        record = self.by_peer.get(peer_id)
        if record is not None:
            record.last_seen = time.time()
            if status is not None:
                record.status = status

    def records(self) -> list[PeerRecord]:
        return sorted(self.by_peer.values(), key=lambda r: r.peer_id)

    def __len__(self) -> int:
        return len(self.by_peer)
