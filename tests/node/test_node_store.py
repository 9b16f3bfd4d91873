"""The SQLite store: migrations, transactions, and survival of a SIGKILL mid-write."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from node.store import Store, StoreError, split_sql

LEDGER = [
    "CREATE TABLE txn (id INTEGER PRIMARY KEY, note TEXT NOT NULL)",
    """CREATE TABLE entry (txn INTEGER NOT NULL REFERENCES txn(id), account TEXT NOT NULL,
       amount INTEGER NOT NULL);
       CREATE INDEX entry_txn ON entry(txn);""",
]


def test_migrations_apply_once_and_in_order(tmp_path: Path) -> None:
    with Store(tmp_path / "s.sqlite") as store:
        assert store.migrate("ledger", LEDGER[:1]) == 1
        assert store.version("ledger") == 1
        assert store.migrate("ledger", LEDGER) == 2
        assert store.migrate("ledger", LEDGER) == 2  # idempotent
        assert store.versions() == {"ledger": 2}
        assert store.query_one("PRAGMA journal_mode") == ("wal",)
    with Store(tmp_path / "s.sqlite") as store:
        assert store.version("ledger") == 2
        assert store.version("other") == 0


def test_failed_migration_leaves_previous_version(tmp_path: Path) -> None:
    with Store(tmp_path / "s.sqlite") as store:
        broken = [*LEDGER, "CREATE TABLE good (x INTEGER); CREATE TABLE txn (oops)"]
        with pytest.raises(StoreError, match="ledger migration 3 failed"):
            store.migrate("ledger", broken)
        assert store.version("ledger") == 2
        # The half of migration 3 that ran was rolled back with it.
        assert store.query("SELECT name FROM sqlite_master WHERE name = 'good'") == []


def test_store_from_newer_release_is_refused(tmp_path: Path) -> None:
    with Store(tmp_path / "s.sqlite") as store:
        store.migrate("ledger", LEDGER)
    with Store(tmp_path / "s.sqlite") as store, pytest.raises(StoreError, match="upgrade MAGNET"):
        store.migrate("ledger", LEDGER[:1])


def test_bad_component_name_and_closed_store(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.sqlite")
    with pytest.raises(StoreError, match="component name"):
        store.migrate("Drop Table", LEDGER)
    store.close()
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.query("SELECT 1")


def test_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="move it away"):
        Store(path)


def test_a_store_that_cannot_be_opened_is_a_clear_error(tmp_path: Path) -> None:
    """connect() itself fails (the parent is a file): the StoreError names the path, not an
    AttributeError from cleaning up a connection that never existed."""
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreError, match="cannot open store"):
        Store(tmp_path / "file" / "s.sqlite")


def test_transaction_rolls_back_on_error_and_nests(tmp_path: Path) -> None:
    with Store(tmp_path / "s.sqlite") as store:
        store.migrate("ledger", LEDGER)
        with pytest.raises(ZeroDivisionError), store.transaction() as conn:
            conn.execute("INSERT INTO txn (note) VALUES ('lost')")
            _ = 1 / 0
        assert store.query("SELECT COUNT(*) FROM txn") == [(0,)]
        with store.transaction() as conn:
            conn.execute("INSERT INTO txn (note) VALUES ('outer')")
            with pytest.raises(ValueError), store.transaction() as inner:
                inner.execute("INSERT INTO txn (note) VALUES ('inner')")
                raise ValueError
        assert store.query("SELECT note FROM txn") == [("outer",)]


def test_threads_never_interleave_transactions(tmp_path: Path) -> None:
    with Store(tmp_path / "s.sqlite", synchronous="NORMAL") as store:
        store.migrate("ledger", LEDGER)

        def writer(name: str) -> None:
            for _ in range(50):
                with store.transaction() as conn:
                    txn = conn.execute("INSERT INTO txn (note) VALUES (?)", (name,)).lastrowid
                    conn.execute("INSERT INTO entry VALUES (?, ?, 5)", (txn, name))
                    conn.execute("INSERT INTO entry VALUES (?, 'pool', -5)", (txn,))

        threads = [threading.Thread(target=writer, args=(f"t{i}",)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert store.query("SELECT COUNT(*), SUM(amount) FROM entry") == [(400, 0)]


def test_split_sql_keeps_semicolons_inside_statements() -> None:
    script = "CREATE TABLE a (x TEXT DEFAULT ';'); CREATE TRIGGER t AFTER INSERT ON a BEGIN " \
        "UPDATE a SET x = 'y;'; END; -- trailing comment"
    parts = split_sql(script)
    assert len(parts) == 3 and parts[1].startswith("CREATE TRIGGER") and parts[1].endswith("END;")
    assert parts[2] == "-- trailing comment"  # harmless: sqlite runs it as a no-op
    with pytest.raises(StoreError, match="incomplete"):
        split_sql("CREATE TABLE b (x TEXT DEFAULT 'unterminated)")


WRITER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from node.store import Store
    sys.path.insert(0, {tests!r})
    from test_node_store import LEDGER
    store = Store(Path({path!r}))
    store.migrate("ledger", LEDGER)
    n = 0
    while True:
        n += 1
        with store.transaction() as conn:
            txn = conn.execute("INSERT INTO txn (note) VALUES (?)", (f"t{{n}}",)).lastrowid
            # Many rows per transaction so the kill most likely lands inside one.
            for i in range(200):
                conn.execute("INSERT INTO entry VALUES (?, ?, ?)", (txn, f"a{{i}}", i + 1))
            conn.execute("INSERT INTO entry VALUES (?, 'pool', ?)", (txn, -sum(range(1, 201))))
        print(n, flush=True)
""")


def kill_writer_midway(path: Path, acks_before_kill: int) -> int:
    """Run a writer, SIGKILL it after ``acks_before_kill`` commits; return the commits it acknowledged."""
    child = subprocess.Popen(
        [sys.executable, "-c", WRITER.format(tests=str(Path(__file__).parent), path=str(path))],
        stdout=subprocess.PIPE, text=True,
    )
    assert child.stdout is not None
    acked = 0
    try:
        while acked < acks_before_kill:
            line = child.stdout.readline()
            assert line, "writer died before it was killed"
            acked = int(line)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
    # Acks still in the pipe were committed before the kill too.
    acked = max([acked, *(int(line) for line in child.stdout.read().split())])
    child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    return acked


def check_ledger(path: Path) -> int:
    """The store opens, passes integrity_check, and every transaction is whole and balanced."""
    with Store(path) as store:
        assert store.integrity_check() == "ok"
        count, first, last = store.query("SELECT COUNT(*), MIN(id), MAX(id) FROM txn")[0]
        assert (first, last) == (1, count)
        unbalanced = store.query(
            "SELECT txn, COUNT(*), SUM(amount) FROM entry GROUP BY txn"
            " HAVING COUNT(*) != 201 OR SUM(amount) != 0"
        )
        assert unbalanced == []
        assert store.query("SELECT COUNT(DISTINCT txn) FROM entry") == [(count,)]
    conn = sqlite3.connect(path)  # and a plain sqlite3 client agrees
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    finally:
        conn.close()
    return int(count)


def test_sigkill_mid_write_leaves_a_consistent_store(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    committed = 0
    # Three kills at different points, each recovering the WAL the previous one left behind.
    for acks_before_kill in (40, 7, 23):
        acked = kill_writer_midway(path, acks_before_kill)
        count = check_ledger(path)
        # Every acknowledged transaction is there; at most one more committed before its ack.
        assert committed + acked <= count <= committed + acked + 1
        committed = count
