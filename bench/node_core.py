"""Node core benchmark: prints one JSON object.

Each figure is measured against a baseline in the same run, with the ratio (ours / baseline):

- ``call``: round trip of ``NodeCore.call()`` from another thread into the core's trio loop, against
  a bare ``trio.from_thread.run`` into a bare trio thread (what any trio-in-a-thread design costs);
- ``store``: committed transactions per second through ``Store.transaction()`` (WAL, synchronous FULL
  and NORMAL), against the same statements with the bare ``sqlite3`` module and the same pragmas;
- ``logging``: records per second into a rotating file with the redaction filter, against the same
  handler without it.

Run: ``.venv/bin/python bench/node_core.py [--calls N] [--txns N] [--records N]``
"""

from __future__ import annotations

import argparse
import json
import logging
import logging.handlers
import os
import platform
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from node.config import load_config
from node.core import NodeCore
from node.logs import RedactionFilter
from node.store import Store

LINE = "peer %s delivered task announcement %s in %.1f ms (%d bytes)"


async def echo(x: int) -> int:
    return x


def latencies(call: Callable[[int], int], n: int) -> dict[str, float]:
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        call(i)
        times.append(time.perf_counter() - t0)
    times.sort()
    return {
        "per_s": n / sum(times),
        "p50_us": times[n // 2] * 1e6,
        "p99_us": times[int(n * 0.99)] * 1e6,
    }


def bench_call(n: int, tmp: Path) -> dict[str, Any]:
    token_box: list[trio.lowlevel.TrioToken] = []
    started = threading.Event()
    stop_box: list[trio.Event] = []

    async def bare_main() -> None:
        token_box.append(trio.lowlevel.current_trio_token())
        stop_box.append(trio.Event())
        started.set()
        await stop_box[0].wait()

    thread = threading.Thread(target=trio.run, args=(bare_main,))
    thread.start()
    started.wait()
    token = token_box[0]
    baseline = latencies(lambda i: trio.from_thread.run(echo, i, trio_token=token), n)
    trio.from_thread.run_sync(stop_box[0].set, trio_token=token)
    thread.join()

    config = load_config(path=tmp / "absent.toml", env={})
    config.node.data_dir = str(tmp / "call-home")
    core = NodeCore(config, log_to_file=False)
    core.start()
    try:
        ours = latencies(lambda i: core.call(echo, i), n)
    finally:
        core.stop()
    return {"calls": n, "core_call": ours, "bare_from_thread_run": baseline,
            "ratio_p50": ours["p50_us"] / baseline["p50_us"]}


LEDGER = [
    "CREATE TABLE entry (txn INTEGER NOT NULL, account TEXT NOT NULL, amount INTEGER NOT NULL)",
]


def one_txn(conn: sqlite3.Connection, i: int) -> None:
    conn.execute("INSERT INTO entry VALUES (?, 'miner', 5)", (i,))
    conn.execute("INSERT INTO entry VALUES (?, 'pool', -5)", (i,))


def bench_store(n: int, tmp: Path, synchronous: str) -> dict[str, Any]:
    path = tmp / f"ours-{synchronous}.sqlite"
    with Store(path, synchronous=synchronous) as store:
        store.migrate("bench", LEDGER)
        t0 = time.perf_counter()
        for i in range(n):
            with store.transaction() as conn:
                one_txn(conn, i)
        ours = n / (time.perf_counter() - t0)
    conn = sqlite3.connect(tmp / f"bare-{synchronous}.sqlite", isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={synchronous}")
        conn.execute(LEDGER[0])
        t0 = time.perf_counter()
        for i in range(n):
            conn.execute("BEGIN IMMEDIATE")
            one_txn(conn, i)
            conn.execute("COMMIT")
        bare = n / (time.perf_counter() - t0)
    finally:
        conn.close()
    return {"txns": n, "store_txn_per_s": ours, "bare_sqlite_txn_per_s": bare, "ratio": ours / bare}


def bench_logging(n: int, tmp: Path) -> dict[str, Any]:
    def rate(with_filter: bool) -> float:
        logger = logging.getLogger(f"bench.{with_filter}")
        logger.propagate = False
        logger.setLevel(logging.INFO)
        handler = logging.handlers.RotatingFileHandler(
            tmp / f"log-{with_filter}.log", maxBytes=50_000_000, backupCount=1, encoding="utf-8"
        )
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        if with_filter:
            handler.addFilter(RedactionFilter())
        logger.addHandler(handler)
        try:
            t0 = time.perf_counter()
            for i in range(n):
                logger.info(LINE, "12D3KooWQmExample", f"task-{i}", 12.5, 734)
            return n / (time.perf_counter() - t0)
        finally:
            logger.removeHandler(handler)
            handler.close()

    rate(True)  # warm the wordlist cache
    bare, ours = rate(False), rate(True)
    return {"records": n, "redacted_per_s": ours, "plain_per_s": bare, "ratio": ours / bare}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--txns", type=int, default=1000)
    parser.add_argument("--records", type=int, default=20000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        result = {
            "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
            "call": bench_call(args.calls, Path(tmp)),
            "store_full": bench_store(args.txns, Path(tmp), "FULL"),
            "store_normal": bench_store(args.txns, Path(tmp), "NORMAL"),
            "logging": bench_logging(args.records, Path(tmp)),
        }
    print(json.dumps(rounded(result), indent=2))


def rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 2)
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    return value


if __name__ == "__main__":
    main()
