"""The miner's tables in the node store: every step of every task, so a restart resumes it.

A task row moves through phases, each written before the step's effect is relied on:

    seen -> joining -> assigned -> downloaded -> training -> trained -> committed -> revealed -> done
      \\-> refused / skipped / given_up (terminal, with their reason)
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from node.store import Store

MIGRATIONS = [
    """CREATE TABLE miner_task (
        id TEXT PRIMARY KEY, validator TEXT NOT NULL, validator_peer TEXT NOT NULL, kind TEXT NOT NULL,
        announcement BLOB NOT NULL, phase TEXT NOT NULL, fits INTEGER NOT NULL, reason TEXT NOT NULL,
        join_by REAL NOT NULL, commit_by REAL NOT NULL, reveal_by REAL NOT NULL,
        salt BLOB, artifact_hash TEXT, artifact_size INTEGER, plan TEXT, restarts INTEGER NOT NULL DEFAULT 0,
        seen_at REAL NOT NULL, updated_at REAL NOT NULL)""",
    """CREATE TABLE miner_receipt (
        task_id TEXT PRIMARY KEY, validator TEXT NOT NULL, epoch INTEGER NOT NULL, rank INTEGER NOT NULL,
        pool_size INTEGER NOT NULL, amount TEXT NOT NULL, receipt_hash TEXT NOT NULL, signed BLOB NOT NULL,
        received_at REAL NOT NULL)""",
    """CREATE TABLE miner_proof (
        receipt_hash TEXT PRIMARY KEY, epoch INTEGER NOT NULL, validator TEXT NOT NULL, amount TEXT NOT NULL,
        signed BLOB NOT NULL, claimed INTEGER NOT NULL DEFAULT 0, claim_tx TEXT NOT NULL DEFAULT '',
        received_at REAL NOT NULL)""",
    "CREATE TABLE miner_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
]

ACTIVE_PHASES = ("joining", "assigned", "downloaded", "training", "trained", "committed", "revealed")
TERMINAL_PHASES = ("done", "refused", "skipped", "given_up")


@dataclass(frozen=True)
class TaskRow:
    id: str
    validator: str
    validator_peer: str
    kind: str
    announcement: bytes
    phase: str
    fits: bool
    reason: str
    join_by: float
    commit_by: float
    reveal_by: float
    salt: bytes | None
    artifact_hash: str | None
    artifact_size: int | None
    plan: dict[str, Any] | None
    restarts: int
    seen_at: float
    updated_at: float


_COLUMNS = (
    "id, validator, validator_peer, kind, announcement, phase, fits, reason, join_by, commit_by, "
    "reveal_by, salt, artifact_hash, artifact_size, plan, restarts, seen_at, updated_at"
)


def _row(raw: Any) -> TaskRow:
    values = list(raw)
    values[4] = bytes(values[4])
    values[6] = bool(values[6])
    values[11] = bytes(values[11]) if values[11] is not None else None
    values[14] = json.loads(values[14]) if values[14] else None
    return TaskRow(*values)


class MinerDB:
    """Typed access to the miner's tables."""

    def __init__(self, store: Store) -> None:
        self.store = store
        store.migrate("miner", MIGRATIONS)

    # --- tasks ------------------------------------------------------------------------------------
    def add_task(
        self,
        task_id: str,
        validator: str,
        peer: str,
        kind: str,
        announcement: bytes,
        fits: bool,
        reason: str,
        join_by: float,
        commit_by: float,
        reveal_by: float,
    ) -> bool:
        """Record a task seen on gossip; False when it was known already."""
        now = time.time()
        with self.store.transaction() as conn:
            cursor = conn.execute(
                f"INSERT OR IGNORE INTO miner_task ({_COLUMNS}) VALUES "
                "(?, ?, ?, ?, ?, 'seen', ?, ?, ?, ?, ?, NULL, NULL, NULL, NULL, 0, ?, ?)",
                (
                    task_id,
                    validator,
                    peer,
                    kind,
                    announcement,
                    int(fits),
                    reason,
                    join_by,
                    commit_by,
                    reveal_by,
                    now,
                    now,
                ),
            )
            return cursor.rowcount == 1

    def task(self, task_id: str) -> TaskRow | None:
        raw = self.store.query_one(f"SELECT {_COLUMNS} FROM miner_task WHERE id = ?", (task_id,))
        return _row(raw) if raw else None

    def tasks(self, phases: tuple[str, ...] | None = None) -> list[TaskRow]:
        rows = [_row(r) for r in self.store.query(f"SELECT {_COLUMNS} FROM miner_task ORDER BY seen_at")]
        return [r for r in rows if phases is None or r.phase in phases]

    def update(self, task_id: str, **changes: Any) -> None:
        if "plan" in changes and changes["plan"] is not None:
            changes["plan"] = json.dumps(changes["plan"], sort_keys=True)
        if "fits" in changes:
            changes["fits"] = int(changes["fits"])
        changes["updated_at"] = time.time()
        names = ", ".join(f"{k} = ?" for k in changes)
        with self.store.transaction() as conn:
            conn.execute(f"UPDATE miner_task SET {names} WHERE id = ?", (*changes.values(), task_id))

    # --- receipts and proofs ----------------------------------------------------------------------
    def add_receipt(
        self,
        task_id: str,
        validator: str,
        epoch: int,
        rank: int,
        pool_size: int,
        amount: int,
        receipt_hash: str,
        signed: bytes,
    ) -> bool:
        with self.store.transaction() as conn:
            cursor = conn.execute(
                "INSERT OR IGNORE INTO miner_receipt VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (task_id, validator, epoch, rank, pool_size, str(amount), receipt_hash, signed, time.time()),
            )
            return cursor.rowcount == 1

    def receipts(self) -> list[dict[str, Any]]:
        keys = (
            "task_id",
            "validator",
            "epoch",
            "rank",
            "pool_size",
            "amount",
            "receipt_hash",
            "signed",
            "received_at",
        )
        rows = self.store.query(f"SELECT {', '.join(keys)} FROM miner_receipt ORDER BY received_at")
        return [{**dict(zip(keys, r, strict=True)), "amount": int(r[5])} for r in rows]

    def receipt_by_hash(self, receipt_hash: str) -> dict[str, Any] | None:
        return next((r for r in self.receipts() if r["receipt_hash"] == receipt_hash), None)

    def add_proof(self, receipt_hash: str, epoch: int, validator: str, amount: int, signed: bytes) -> bool:
        with self.store.transaction() as conn:
            cursor = conn.execute(
                "INSERT OR IGNORE INTO miner_proof VALUES (?, ?, ?, ?, ?, 0, '', ?)",
                (receipt_hash, epoch, validator, str(amount), signed, time.time()),
            )
            return cursor.rowcount == 1

    def proofs(self, claimed: bool | None = None) -> list[dict[str, Any]]:
        keys = (
            "receipt_hash",
            "epoch",
            "validator",
            "amount",
            "signed",
            "claimed",
            "claim_tx",
            "received_at",
        )
        rows = self.store.query(f"SELECT {', '.join(keys)} FROM miner_proof ORDER BY received_at")
        found = [
            {**dict(zip(keys, r, strict=True)), "amount": int(r[3]), "claimed": bool(r[5])} for r in rows
        ]
        return [p for p in found if claimed is None or p["claimed"] == claimed]

    def mark_claimed(self, receipt_hash: str, tx_hash: str) -> None:
        with self.store.transaction() as conn:
            conn.execute(
                "UPDATE miner_proof SET claimed = 1, claim_tx = ? WHERE receipt_hash = ?",
                (tx_hash, receipt_hash),
            )

    # --- meta -------------------------------------------------------------------------------------
    def meta(self, key: str, default: str = "") -> str:
        row = self.store.query_one("SELECT value FROM miner_meta WHERE key = ?", (key,))
        return str(row[0]) if row else default

    def set_meta(self, key: str, value: str) -> None:
        with self.store.transaction() as conn:
            conn.execute("INSERT OR REPLACE INTO miner_meta VALUES (?, ?)", (key, value))
