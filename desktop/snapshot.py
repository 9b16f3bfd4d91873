"""What the screens show, read inside the core's trio loop in one go (no Qt here).

``take_snapshot(core)`` runs through ``CoreBridge.run_in_core`` once a second: it only reads the
miner's fields, its store and the peer book, so it returns in a few milliseconds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class TaskView:
    task_id: str
    kind: str
    model: str
    size_bytes: int
    commit_by: float
    validator: str
    reward_weight: float
    phase: str
    fits: bool
    reason: str


@dataclass(frozen=True)
class ReceiptView:
    task_id: str
    validator: str
    epoch: int
    rank: int
    pool_size: int
    amount: int
    received_at: float
    verification: str  # "verified, signed by 0x..." or why not
    reward: str  # "claimed", "claimable", "pending proof"


@dataclass(frozen=True)
class PeerView:
    peer_id: str
    address: str
    roles: str
    connected: bool
    last_seen: float


@dataclass
class Snapshot:
    address: str = ""
    state: str = "stopped"
    detail: str = ""
    mining: bool = False
    current_task: str = ""
    phase: str = ""
    progress: float = 0.0
    eta_s: float = 0.0
    last_submission: float = 0.0
    tasks: list[TaskView] = field(default_factory=list)
    receipts: list[ReceiptView] = field(default_factory=list)
    earned: int = 0
    claimable: int = 0
    claimed: int = 0
    peers: list[PeerView] = field(default_factory=list)
    connections: int = 0
    network_name: str = ""
    rpc_url: str = ""
    registry: str = ""
    token: str = ""

    def earned_since(self, since: float) -> int:
        return sum(r.amount for r in self.receipts if r.received_at >= since)


async def take_snapshot(core: Any) -> Snapshot:
    miner = core.service("miner")
    snap = Snapshot(address=core.address)
    profile = core.profile
    if profile is not None:
        snap.network_name, snap.rpc_url = profile.name, profile.rpc_url
        snap.registry, snap.token = profile.registry, profile.token
    if miner is None:
        return snap
    snap.state, snap.detail, snap.mining = miner.state, miner.state_detail, miner.mining
    snap.current_task, snap.phase = miner.current_task, miner.job_phase
    miner.refresh_progress()
    snap.progress, snap.eta_s, snap.last_submission = miner.progress, miner.eta_s, miner.last_submission
    snap.tasks = [task_view(t) for t in miner.tasks()]
    snap.receipts = receipt_views(miner, profile)
    earnings = miner.earnings()
    snap.earned, snap.claimable, snap.claimed = earnings["earned"], earnings["claimable"], earnings["claimed"]
    snap.peers, snap.connections = peer_views(miner.p2p)
    return snap


def task_view(row: Any) -> TaskView:
    from protocol.encoding import decode

    ann = decode(row.announcement).message
    return TaskView(
        task_id=row.id,
        kind=row.kind,
        model=str(getattr(ann, "model_ref", "")),
        size_bytes=int(getattr(ann, "base_model_size", 0)) + int(getattr(ann, "train_data_size", 0)),
        commit_by=row.commit_by,
        validator=row.validator,
        reward_weight=int(getattr(ann, "reward_weight_e9", 0)) / 1e9,
        phase=row.phase,
        fits=row.fits,
        reason=row.reason,
    )


def receipt_views(miner: Any, profile: Any) -> list[ReceiptView]:
    proofs = {p["receipt_hash"]: p for p in miner.db.proofs()} if miner.db else {}
    views = []
    for r in miner.receipts():
        proof = proofs.get(r["receipt_hash"])
        reward = "claimed" if proof and proof["claimed"] else "claimable" if proof else "pending proof"
        views.append(
            ReceiptView(
                task_id=r["task_id"],
                validator=r["validator"],
                epoch=r["epoch"],
                rank=r["rank"],
                pool_size=r["pool_size"],
                amount=r["amount"],
                received_at=r["received_at"],
                verification=verify(r["signed"], profile),
                reward=reward,
            )
        )
    return views


def verify(signed: bytes, profile: Any) -> str:
    """Check the receipt's EIP-712 signature again here (the miner checked it on arrival)."""
    if profile is None:
        return "not checked (no network profile)"
    from protocol.encoding import decode
    from wallet.receipts import verify_receipt

    try:
        return f"verified, signed by {verify_receipt(decode(bytes(signed)), profile.domain())}"
    except Exception as exc:
        return f"NOT verified: {exc}"


def peer_views(p2p: Any) -> tuple[list[PeerView], int]:
    try:
        conns = p2p.host.get_network().get_connections()
        connected = {
            c.muxed_conn.peer_id.to_string() for c in (conns.values() if isinstance(conns, dict) else conns)
        }
    except Exception:
        connected = set()
    roles = {1: "miner", 2: "validator", 4: "relay"}
    views = [
        PeerView(
            peer_id=rec.peer_id,
            address=rec.address,
            roles=", ".join(name for bit, name in roles.items() if rec.roles & bit) or "-",
            connected=rec.peer_id in connected,
            last_seen=rec.last_seen,
        )
        for rec in p2p.peerbook.records()
    ]
    return views, len(connected)


def start_of_today() -> float:
    now = time.localtime()
    return time.mktime((now.tm_year, now.tm_mon, now.tm_mday, 0, 0, 0, 0, 0, -1))
