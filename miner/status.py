"""The miner's section of ``magnet status``: read-only queries on the store (no password, no running
node needed; safe while one runs)."""

from __future__ import annotations

import time
from typing import Any

from miner.db import ACTIVE_PHASES
from node.store import read_only_query


def status_section(config: Any, data_dir: Any) -> dict[str, Any]:
    """Tasks by phase, the ones in progress, receipts, earnings and claims, the last accepted
    submission."""
    store = data_dir.store
    phases = read_only_query(store, "SELECT phase, COUNT(*) FROM miner_task GROUP BY phase")
    if phases is None:
        return {"mining": "never run on this data directory"}
    marks = ",".join("?" for _ in ACTIVE_PHASES)
    active = read_only_query(
        store,
        f"SELECT id, kind, phase, reason, commit_by FROM miner_task WHERE phase IN ({marks}) "
        "ORDER BY updated_at DESC LIMIT 5",
        ACTIVE_PHASES,
    ) or []
    receipts = read_only_query(store, "SELECT amount, received_at FROM miner_receipt") or []
    proofs = read_only_query(store, "SELECT amount, claimed FROM miner_proof") or []
    now = time.time()
    last = max((float(at) for _, at in receipts), default=None)
    return {
        "tasks": {str(phase): int(n) for phase, n in phases},
        "in_progress": [
            {
                "task": str(task_id)[:18],
                "kind": kind,
                "phase": phase,
                "reason": reason,
                "commit_in_s": round(float(commit_by) - now),
            }
            for task_id, kind, phase, reason, commit_by in active
        ],
        "receipts": len(receipts),
        "earned_units": str(sum(int(amount) for amount, _ in receipts)),
        "claimed_units": str(sum(int(amount) for amount, claimed in proofs if claimed)),
        "unclaimed_proofs": sum(1 for _, claimed in proofs if not claimed),
        "last_accepted": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(last)) if last else None,
    }
