"""The validator's tables in the node store, and the reads and writes the service makes.

Every state change is written here (one transaction) before it takes effect on the network: a
commitment is stored before it counts, an artifact is on disk and its reveal row stored before the
miner is told "revealed", a receipt is signed and stored before it is sent, an epoch is marked
"posting" (with its root) before the transaction goes out. A validator killed at any point
restarts from these rows; every send is repeatable (the same signed bytes) and every chain post is
checked against the chain before it is retried.

Task ids and addresses are stored as text (0x hex / checksummed); signed messages as their
canonical bytes; times as unix seconds (REAL).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from node.store import Store

MIGRATIONS = [
    """
    CREATE TABLE val_task (
        id TEXT PRIMARY KEY, kind TEXT NOT NULL, origin TEXT NOT NULL, model_ref TEXT NOT NULL,
        phase TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '', dir TEXT NOT NULL,
        rows INTEGER NOT NULL, model_params INTEGER NOT NULL, hours REAL NOT NULL,
        join_by REAL NOT NULL, commit_by REAL NOT NULL, reveal_by REAL NOT NULL,
        retries INTEGER NOT NULL DEFAULT 0, reward_weight_e9 INTEGER NOT NULL,
        max_artifact_bytes INTEGER NOT NULL, pool_size INTEGER NOT NULL,
        base_blob TEXT NOT NULL, data_blob TEXT NOT NULL, test_blob TEXT NOT NULL,
        test_split_hash TEXT NOT NULL, announcement BLOB, status_msg BLOB,
        base_test_e9 INTEGER, base_syn_e9 INTEGER, epoch INTEGER, winner TEXT,
        created_at REAL NOT NULL, updated_at REAL NOT NULL
    );
    CREATE TABLE val_joiner (
        task_id TEXT NOT NULL, miner TEXT NOT NULL, peer_id TEXT NOT NULL, arrival INTEGER NOT NULL,
        joined_at REAL NOT NULL, status TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '',
        assignment BLOB, delivered INTEGER NOT NULL DEFAULT 0, payout TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (task_id, miner)
    );
    CREATE TABLE val_commitment (
        task_id TEXT NOT NULL, miner TEXT NOT NULL, seq INTEGER NOT NULL, commitment BLOB NOT NULL,
        received_at REAL NOT NULL, message BLOB NOT NULL, PRIMARY KEY (task_id, miner)
    );
    CREATE TABLE val_reveal (
        task_id TEXT NOT NULL, miner TEXT NOT NULL, artifact_hash TEXT NOT NULL,
        artifact_size INTEGER NOT NULL, revealed_at REAL NOT NULL, matches INTEGER NOT NULL,
        path TEXT NOT NULL, message BLOB NOT NULL, PRIMARY KEY (task_id, miner)
    );
    CREATE TABLE val_evaluation (
        task_id TEXT NOT NULL, miner TEXT NOT NULL, test_e9 INTEGER, syn_e9 INTEGER,
        malformed TEXT NOT NULL DEFAULT '', error TEXT NOT NULL DEFAULT '', seconds REAL NOT NULL,
        PRIMARY KEY (task_id, miner)
    );
    CREATE TABLE val_decision (
        task_id TEXT NOT NULL, miner TEXT NOT NULL, reason TEXT NOT NULL, message TEXT NOT NULL,
        credited_to TEXT NOT NULL, rank INTEGER NOT NULL, rank_score REAL NOT NULL,
        PRIMARY KEY (task_id, miner)
    );
    CREATE TABLE val_receipt (
        task_id TEXT NOT NULL, miner TEXT NOT NULL, epoch INTEGER NOT NULL, nonce INTEGER NOT NULL,
        issued_at INTEGER NOT NULL, rank INTEGER NOT NULL, pool_size INTEGER NOT NULL,
        amount TEXT NOT NULL, signed BLOB NOT NULL, gossiped INTEGER NOT NULL DEFAULT 0,
        delivered INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (task_id, miner)
    );
    CREATE TABLE val_epoch (
        epoch INTEGER PRIMARY KEY, state TEXT NOT NULL, root BLOB, file_hash BLOB, total TEXT,
        blob TEXT, tx TEXT, reason TEXT NOT NULL DEFAULT '', updated_at REAL NOT NULL
    );
    CREATE TABLE val_proof (
        epoch INTEGER NOT NULL, miner TEXT NOT NULL, task_id TEXT NOT NULL, signed BLOB NOT NULL,
        delivered INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (epoch, task_id, miner)
    );
    CREATE TABLE val_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    """,
]

TERMINAL_PHASES = ("finished", "failed")
PHASES = (
    "created",
    "joining",
    "training",
    "revealing",
    "evaluating",
    "scoring",
    "receipts",
    *TERMINAL_PHASES,
)


@dataclass(frozen=True)
class TaskRow:
    """One task as stored (columns of val_task by name)."""

    values: dict[str, Any]

    def __getattr__(self, name: str) -> Any:
        try:
            return self.values[name]
        except KeyError:
            raise AttributeError(name) from None

    @property
    def task_id(self) -> bytes:
        return bytes.fromhex(self.values["id"][2:])


class ValidatorDB:
    """Typed access to the validator's tables."""

    def __init__(self, store: Store) -> None:
        self.store = store
        store.migrate("validator", MIGRATIONS)

    # --- tasks --------------------------------------------------------------------------------
    def insert_task(self, **columns: Any) -> None:
        now = time.time()
        columns = {**columns, "created_at": now, "updated_at": now}
        names = ", ".join(columns)
        marks = ", ".join("?" for _ in columns)
        with self.store.transaction() as conn:
            conn.execute(f"INSERT INTO val_task ({names}) VALUES ({marks})", tuple(columns.values()))

    def update_task(self, task_id: str, **columns: Any) -> None:
        columns["updated_at"] = time.time()
        sets = ", ".join(f"{k} = ?" for k in columns)
        with self.store.transaction() as conn:
            conn.execute(f"UPDATE val_task SET {sets} WHERE id = ?", (*columns.values(), task_id))

    def task(self, task_id: str) -> TaskRow | None:
        rows = self.rows("SELECT * FROM val_task WHERE id = ?", (task_id,))
        return TaskRow(rows[0]) if rows else None

    def tasks(self, active_only: bool = False) -> list[TaskRow]:
        where = f"WHERE phase NOT IN {TERMINAL_PHASES}" if active_only else ""
        return [TaskRow(r) for r in self.rows(f"SELECT * FROM val_task {where} ORDER BY created_at")]

    # --- joiners ------------------------------------------------------------------------------
    def add_joiner(self, task_id: str, miner: str, peer_id: str, arrival: int, payout: str) -> None:
        with self.store.transaction() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO val_joiner (task_id, miner, peer_id, arrival, joined_at, "
                "status, payout) VALUES (?, ?, ?, ?, ?, 'queued', ?)",
                (task_id, miner, peer_id, arrival, time.time(), payout),
            )

    def joiners(self, task_id: str, status: str | None = None) -> list[dict[str, Any]]:
        if status is None:
            return self.rows("SELECT * FROM val_joiner WHERE task_id = ? ORDER BY arrival", (task_id,))
        return self.rows(
            "SELECT * FROM val_joiner WHERE task_id = ? AND status = ? ORDER BY arrival", (task_id, status)
        )

    def joiner(self, task_id: str, miner: str) -> dict[str, Any] | None:
        rows = self.rows("SELECT * FROM val_joiner WHERE task_id = ? AND miner = ?", (task_id, miner))
        return rows[0] if rows else None

    # --- commitments and reveals -----------------------------------------------------------------
    def add_commitment(
        self, task_id: str, miner: str, commitment: bytes, received_at: float, message: bytes
    ) -> bool:
        """Record a miner's first commitment (later ones are ignored); True when it was the first."""
        with self.store.transaction() as conn:
            seq = conn.execute(
                "SELECT COALESCE(MAX(seq), 0) + 1 FROM val_commitment WHERE task_id = ?", (task_id,)
            ).fetchone()[0]
            cur = conn.execute(
                "INSERT OR IGNORE INTO val_commitment VALUES (?, ?, ?, ?, ?, ?)",
                (task_id, miner, seq, commitment, received_at, message),
            )
            return cur.rowcount == 1

    def commitments(self, task_id: str) -> dict[str, dict[str, Any]]:
        rows = self.rows("SELECT * FROM val_commitment WHERE task_id = ? ORDER BY seq", (task_id,))
        return {r["miner"]: r for r in rows}

    def reveals(self, task_id: str) -> dict[str, dict[str, Any]]:
        return {r["miner"]: r for r in self.rows("SELECT * FROM val_reveal WHERE task_id = ?", (task_id,))}

    def evaluations(self, task_id: str) -> dict[str, dict[str, Any]]:
        rows = self.rows("SELECT * FROM val_evaluation WHERE task_id = ?", (task_id,))
        return {r["miner"]: r for r in rows}

    def decisions(self, task_id: str) -> list[dict[str, Any]]:
        return self.rows(
            "SELECT * FROM val_decision WHERE task_id = ? ORDER BY rank = 0, rank, miner", (task_id,)
        )

    # --- receipts, epochs, proofs ------------------------------------------------------------
    def receipts(self, task_id: str | None = None, epoch: int | None = None) -> list[dict[str, Any]]:
        where = _where({"task_id": task_id, "epoch": epoch})
        return self.rows(f"SELECT * FROM val_receipt {where[0]} ORDER BY issued_at, task_id, miner", where[1])

    def epoch(self, epoch: int) -> dict[str, Any] | None:
        rows = self.rows("SELECT * FROM val_epoch WHERE epoch = ?", (epoch,))
        return rows[0] if rows else None

    def epochs_with_receipts(self) -> list[int]:
        return [int(r[0]) for r in self.store.query("SELECT DISTINCT epoch FROM val_receipt ORDER BY epoch")]

    def set_epoch(self, epoch: int, **columns: Any) -> None:
        columns["updated_at"] = time.time()
        names = ", ".join(columns)
        updates = ", ".join(f"{k} = excluded.{k}" for k in columns)
        with self.store.transaction() as conn:
            conn.execute(
                f"INSERT INTO val_epoch (epoch, {names}) VALUES (?, {', '.join('?' for _ in columns)}) "
                f"ON CONFLICT(epoch) DO UPDATE SET {updates}",
                (epoch, *columns.values()),
            )

    def proofs(self, epoch: int | None = None, miner: str | None = None) -> list[dict[str, Any]]:
        where = _where({"epoch": epoch, "miner": miner})
        return self.rows(f"SELECT * FROM val_proof {where[0]} ORDER BY epoch, task_id", where[1])

    def mark(self, table: str, column: str, keys: dict[str, Any]) -> None:
        """Set a 0/1 flag (gossiped, delivered) on one row of a receipt, proof or joiner table."""
        assert table in ("val_receipt", "val_proof", "val_joiner") and column in ("gossiped", "delivered")
        where = " AND ".join(f"{k} = ?" for k in keys)
        with self.store.transaction() as conn:
            conn.execute(f"UPDATE {table} SET {column} = 1 WHERE {where}", tuple(keys.values()))

    # --- meta (JSON values) ------------------------------------------------------------------
    def meta(self, key: str, default: Any = None) -> Any:
        row = self.store.query_one("SELECT value FROM val_meta WHERE key = ?", (key,))
        return json.loads(row[0]) if row else default

    def set_meta(self, key: str, value: Any) -> None:
        with self.store.transaction() as conn:
            conn.execute("INSERT OR REPLACE INTO val_meta VALUES (?, ?)", (key, json.dumps(value)))

    def next_counter(self, key: str) -> int:
        """A number that increases by one per call, across restarts (stored before it is used)."""
        with self.store.transaction():
            value = int(self.meta(key, 0)) + 1
            self.set_meta(key, value)
        return value

    # --- helpers -------------------------------------------------------------------------------
    def rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        with self.store.transaction() as conn:  # the public way to a cursor (column names)
            cur = conn.execute(sql, params)
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def iter_all_receipts(self) -> Iterator[dict[str, Any]]:
        yield from self.receipts()


def _where(filters: dict[str, Any]) -> tuple[str, tuple[Any, ...]]:
    """A WHERE clause over the filters that are not None (column names are ours, never input)."""
    used = {k: v for k, v in filters.items() if v is not None}
    if not used:
        return "", ()
    return "WHERE " + " AND ".join(f"{k} = ?" for k in used), tuple(used.values())
