"""What a running (or stopped) validator shows: tasks, miners, ratings and scores.

Built from the store alone, through a ``query(sql, params) -> list[dict]`` function, so the HTTP API
(the service's store) and ``magnet status`` (a read-only look at the file, fine while the node
runs) produce the same report.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from validator.config import ValidatorConfig
from validator.ratings import RatingBook
from validator.scoring import E9, TaskScore, miner_weights

Query = Callable[[str, tuple[Any, ...]], list[dict[str, Any]]]


def read_only_query(store_file: Path) -> Query | None:
    """A query function over the store file opened read-only; None when it has no validator tables."""
    try:
        conn = sqlite3.connect(f"file:{store_file}?mode=ro", uri=True)
        conn.execute("SELECT 1 FROM val_task LIMIT 1")
    except sqlite3.Error:
        return None

    def query(sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        cur = conn.execute(sql, params)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    return query


def task_summaries(query: Query) -> list[dict[str, Any]]:
    rows = query(
        "SELECT id, kind, origin, phase, reason, join_by, commit_by, reveal_by, winner, epoch, "
        "reward_weight_e9 FROM val_task ORDER BY created_at",
        (),
    )
    for row in rows:
        tid = (row["id"],)
        row["joined"] = query("SELECT COUNT(*) AS n FROM val_joiner WHERE task_id = ?", tid)[0]["n"]
        row["selected"] = query(
            "SELECT COUNT(*) AS n FROM val_joiner WHERE task_id = ? AND status = 'selected'", tid
        )[0]["n"]
        row["commitments"] = query("SELECT COUNT(*) AS n FROM val_commitment WHERE task_id = ?", tid)[0]["n"]
        row["reveals"] = query("SELECT COUNT(*) AS n FROM val_reveal WHERE task_id = ?", tid)[0]["n"]
        row["decisions"] = query(
            "SELECT miner, reason, message, rank, rank_score FROM val_decision "
            "WHERE task_id = ? ORDER BY rank = 0, rank, miner",
            tid,
        )
    return rows


def miner_summaries(query: Query, cfg: ValidatorConfig, now: float) -> list[dict[str, Any]]:
    weights_by_task = {
        r["id"]: r["reward_weight_e9"] for r in query("SELECT id, reward_weight_e9 FROM val_task", ())
    }
    receipts = query("SELECT task_id, miner, rank, pool_size, issued_at, amount FROM val_receipt", ())
    scores = [
        TaskScore(
            r["miner"],
            r["task_id"],
            r["issued_at"] / 1000.0,
            r["rank"],
            r["pool_size"],
            weights_by_task.get(r["task_id"], 0) / E9,
        )
        for r in receipts
    ]
    weights = miner_weights(scores, now, cfg) if scores else {}
    miners: dict[str, dict[str, Any]] = {}
    for r in receipts:
        m = miners.setdefault(r["miner"], {"miner": r["miner"], "tasks": 0, "wins": 0, "amount": 0})
        m["tasks"] += 1
        m["wins"] += int(r["rank"] == 1)
        m["amount"] += int(r["amount"])
    for address, m in miners.items():
        m["weight"] = round(weights.get(address, 0.0), 9)
        m["amount"] = str(m["amount"])
    return sorted(miners.values(), key=lambda m: (-m["weight"], m["miner"]))


def ratings(query: Query) -> dict[str, list[dict[str, Any]]]:
    rows = query("SELECT value FROM val_meta WHERE key = 'ratings'", ())
    if not rows:
        return {}
    import json

    book = RatingBook.from_dict(json.loads(rows[0]["value"]))
    kinds = sorted({k for k, *_ in book.to_dict()["ratings"]})
    return {
        kind: [
            {"miner": m, "mu": round(r.mu, 3), "sigma": round(r.sigma, 3), "ordinal": round(r.ordinal, 3)}
            for m, r in book.leaderboard(kind)
        ]
        for kind in kinds
    }


def epochs(query: Query) -> list[dict[str, Any]]:
    rows = query("SELECT epoch, state, total, tx, reason FROM val_epoch ORDER BY epoch", ())
    return rows


def full_report(query: Query, cfg: ValidatorConfig, now: float | None = None) -> dict[str, Any]:
    now = time.time() if now is None else now
    return {
        "tasks": task_summaries(query),
        "miners": miner_summaries(query, cfg, now),
        "ratings": ratings(query),
        "epochs": epochs(query),
    }
