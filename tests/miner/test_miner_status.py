"""`magnet status`'s miner section: read-only figures from the miner's tables."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

from miner.db import MinerDB
from miner.status import status_section
from node.store import Store


def test_status_counts_tasks_earnings_and_claims_while_the_store_is_open(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite"
    data_dir = SimpleNamespace(store=path)
    assert status_section(None, SimpleNamespace(store=tmp_path / "absent.sqlite")) == {
        "mining": "never run on this data directory"
    }
    db = MinerDB(Store(path))  # stays open, as in a running node
    now = time.time()
    db.add_task("0x" + "aa" * 32, "0xV", "peer", "instruct", b"ann", True, "fits", now, now + 90, now + 100)
    db.add_task("0x" + "bb" * 32, "0xV", "peer", "dpo", b"ann", True, "fits", now, now + 90, now + 100)
    db.add_task("0x" + "cc" * 32, "0xV", "peer", "bitnet", b"ann", False, "needs 9 GiB", now, now, now)
    db.update("0x" + "aa" * 32, phase="training", reason="searching hyperparameters")
    db.update("0x" + "bb" * 32, phase="done")
    db.update("0x" + "cc" * 32, phase="refused")
    db.add_receipt("0x" + "bb" * 32, "0xV", 0, 1, 3, 7 * 10**18, "0xr1", b"signed")
    db.add_proof("0xr1", 0, "0xV", 7 * 10**18, b"signed")

    section = status_section(None, data_dir)
    assert section["tasks"] == {"training": 1, "done": 1, "refused": 1}
    (active,) = section["in_progress"]
    assert active["kind"] == "instruct" and active["phase"] == "training"
    assert active["reason"] == "searching hyperparameters" and 80 <= active["commit_in_s"] <= 90
    assert section["receipts"] == 1 and section["earned_units"] == str(7 * 10**18)
    assert section["claimed_units"] == "0" and section["unclaimed_proofs"] == 1
    assert section["last_accepted"] is not None

    db.mark_claimed("0xr1", "0x" + "11" * 32)
    section = status_section(None, data_dir)
    assert section["claimed_units"] == str(7 * 10**18) and section["unclaimed_proofs"] == 0
