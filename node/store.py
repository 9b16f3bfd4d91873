"""The node's SQLite store: WAL mode, per-component numbered migrations, transactions.

Each component owns its tables and registers its migrations by name::

    store.migrate("validator", [
        "CREATE TABLE task (id TEXT PRIMARY KEY, state TEXT NOT NULL)",     # version 1
        "ALTER TABLE task ADD COLUMN reason TEXT NOT NULL DEFAULT ''",      # version 2
    ])

Migration ``i`` (1-based) brings the component from version ``i - 1`` to ``i``; each runs in its own
transaction together with the version bump, so a crash leaves the component at a whole version.
Released migrations are never edited, only appended to. A store written by a newer release (a version
past the list) refuses to open rather than guess.

Thread safety: one connection shared by all threads behind a re-entrant lock. ``transaction()`` holds
the lock for the whole transaction (so transactions of different threads never interleave) and nests
as a savepoint when the same thread opens another inside it. Reads through ``query()`` take the lock
too. Other processes may read the file concurrently (WAL), but only the process holding the data
directory lock writes.

Durability: ``synchronous=FULL`` by default: a committed transaction survives a process kill and a
power loss; ``NORMAL`` survives a process kill only.
"""

from __future__ import annotations

import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

Migration = str | Callable[[sqlite3.Connection], None]

# Version of the store's own bookkeeping table (PRAGMA user_version).
STORE_FORMAT = 1
COMPONENT_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
SYNCHRONOUS_MODES = ("FULL", "NORMAL", "EXTRA")


class StoreError(RuntimeError):
    """The store cannot be opened, migrated or written."""


class Store:
    """One SQLite database file shared by the node's components."""

    def __init__(self, path: Path, synchronous: str = "FULL", busy_timeout: float = 10.0) -> None:
        if synchronous.upper() not in SYNCHRONOUS_MODES:
            raise StoreError(f"synchronous must be one of {SYNCHRONOUS_MODES}, got {synchronous!r}")
        self.path = path
        self._lock = threading.RLock()
        self._depth = 0
        self._conn: sqlite3.Connection | None = None  # close() works even when connect() fails
        try:
            # isolation_level=None: we issue BEGIN/COMMIT ourselves, so Python never opens
            # transactions behind our back (and executescript never commits half a migration).
            self._conn = sqlite3.connect(
                path, isolation_level=None, check_same_thread=False, timeout=busy_timeout
            )
            self._configure(synchronous.upper())
        except sqlite3.DatabaseError as exc:
            self.close()
            raise StoreError(
                f"cannot open store {path}: {exc}. If the file is damaged, move it away and restart "
                "(the node rebuilds it; tasks in progress are lost)."
            ) from exc

    def _configure(self, synchronous: str) -> None:
        conn = self._connection()
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StoreError(f"store {self.path}: the file system refused WAL mode (got {mode})")
        conn.execute(f"PRAGMA synchronous={synchronous}")
        conn.execute("PRAGMA foreign_keys=ON")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > STORE_FORMAT:
            raise StoreError(
                f"store {self.path} has format {version}, newer than this release understands "
                f"({STORE_FORMAT}): upgrade MAGNET or use another data directory"
            )
        if version < STORE_FORMAT:
            conn.executescript(
                "BEGIN IMMEDIATE;"
                "CREATE TABLE IF NOT EXISTS schema_version ("
                " component TEXT PRIMARY KEY, version INTEGER NOT NULL, updated_at REAL NOT NULL);"
                f"PRAGMA user_version={STORE_FORMAT};"
                "COMMIT;"
            )

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"store {self.path} is closed")
        return self._conn

    def version(self, component: str) -> int:
        """The schema version ``component`` is at (0: never migrated)."""
        row = self.query_one("SELECT version FROM schema_version WHERE component = ?", (component,))
        return int(row[0]) if row else 0

    def versions(self) -> dict[str, int]:
        return {str(c): int(v) for c, v in self.query("SELECT component, version FROM schema_version")}

    def migrate(self, component: str, migrations: Sequence[Migration]) -> int:
        """Apply ``component``'s migrations not yet applied, each atomically. Returns the version."""
        if not COMPONENT_NAME.match(component):
            raise StoreError(f"component name {component!r} must match {COMPONENT_NAME.pattern}")
        with self._lock:
            current = self.version(component)
            if current > len(migrations):
                raise StoreError(
                    f"store {self.path}: {component} is at schema version {current} but this release "
                    f"knows only {len(migrations)}; upgrade MAGNET or use another data directory"
                )
            for number in range(current + 1, len(migrations) + 1):
                self._apply(component, number, migrations[number - 1])
            return len(migrations)

    def _apply(self, component: str, number: int, migration: Migration) -> None:
        bump = (
            "INSERT INTO schema_version (component, version, updated_at) VALUES (?, ?, ?) "
            "ON CONFLICT(component) DO UPDATE SET version = excluded.version,"
            " updated_at = excluded.updated_at"
        )
        try:
            with self.transaction() as conn:
                if callable(migration):
                    migration(conn)
                else:
                    for statement in split_sql(migration):
                        conn.execute(statement)
                conn.execute(bump, (component, number, time.time()))
        except sqlite3.Error as exc:
            raise StoreError(f"store {self.path}: {component} migration {number} failed: {exc}") from exc

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``with store.transaction() as conn:`` commits on success, rolls back on any exception.

        Opens with BEGIN IMMEDIATE (the write lock up front, so no upgrade deadlock); nested calls
        in the same thread become savepoints.
        """
        with self._lock:
            conn = self._connection()
            nested = self._depth > 0
            savepoint = f"sp{self._depth}"
            conn.execute(f"SAVEPOINT {savepoint}" if nested else "BEGIN IMMEDIATE")
            self._depth += 1
            try:
                yield conn
            except BaseException:
                self._depth -= 1
                if nested:
                    conn.execute(f"ROLLBACK TO {savepoint}")
                    conn.execute(f"RELEASE {savepoint}")
                elif conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            self._depth -= 1
            conn.execute(f"RELEASE {savepoint}" if nested else "COMMIT")

    def query(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[tuple[Any, ...]]:
        """Run a read and return every row."""
        with self._lock:
            return list(self._connection().execute(sql, params).fetchall())

    def query_one(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> tuple[Any, ...] | None:
        with self._lock:
            row: tuple[Any, ...] | None = self._connection().execute(sql, params).fetchone()
            return row

    def integrity_check(self) -> str:
        """SQLite's own check: ``"ok"`` when the file is sound."""
        row = self.query_one("PRAGMA integrity_check")
        return str(row[0]) if row else "no answer"

    def close(self) -> None:
        """Checkpoint the WAL into the main file and close. Safe to call twice."""
        with self._lock:
            conn, self._conn = self._conn, None
            if conn is None:
                return
            try:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error:
                pass  # another reader holds the WAL: the next open checkpoints it
            finally:
                conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def split_sql(script: str) -> list[str]:
    """Split a migration script into whole statements (sqlite3 runs one per ``execute``).

    Cuts at each ``;`` that ends a complete statement, so semicolons inside strings and
    trigger bodies stay where they are.
    """
    statements: list[str] = []
    pending = ""
    parts = script.split(";")
    for part in parts[:-1]:
        pending += part + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \t\r\n;"):
                statements.append(pending.strip())
            pending = ""
    pending += parts[-1]
    if pending.strip():
        if not sqlite3.complete_statement(pending + "\n;"):
            raise StoreError(f"incomplete SQL statement in migration: {pending.strip()[:80]!r}")
        statements.append(pending.strip())
    return statements


def read_only_query(path: object, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]] | None:
    """Rows of one query on the store opened read-only (never created, migrated or locked for
    writing: fine while a node runs on it); None when the store or the queried table is absent."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=2.0)
    except sqlite3.Error:
        return None
    try:
        return [tuple(row) for row in conn.execute(sql, params).fetchall()]
    except sqlite3.Error:
        return None
    finally:
        conn.close()
