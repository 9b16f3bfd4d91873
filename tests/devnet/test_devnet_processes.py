"""The devnet end to end, and a miner in another process joining it (`magnet mine --network FILE`).

One run covers both (the test budget has room for one full devnet): `magnet devnet --keep-running
--extra-miners 1` in one process, `magnet mine` in another. The devnet's first task must end with every
receipt verified, every miner's on-chain balance equal to its epoch amounts and every miner claimed
(the devnet checks each and prints FAILED otherwise); the outside miner must take part in the same
task and print its verified receipt and its claim.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
from devnet_helpers import Proc, make_wallet

pytestmark = [pytest.mark.slow, pytest.mark.network]


def test_a_devnet_and_a_miner_from_another_process_run_a_task_to_claimed_rewards(tmp_path: Path) -> None:
    devnet_dir, miner_dir = tmp_path / "devnet", tmp_path / "extra-miner"
    password_file = make_wallet(miner_dir)
    devnet = Proc(
        "devnet",
        "--keep-running",
        "--miners",
        "2",
        "--extra-miners",
        "1",
        "--train-seconds",
        "70",
        "--data-dir",
        str(devnet_dir),
    )
    miner = None
    try:
        devnet.wait_for("== waiting", timeout=120)
        profile = devnet_dir / "network.json"
        assert json.loads(profile.read_text())["bootstrap_peers"]
        miner = Proc(
            "mine",
            "--network",
            str(profile),
            "--config",
            str(devnet_dir / "miner.toml"),
            "--data-dir",
            str(miner_dir),
            "--password-file",
            str(password_file),
        )
        miner.wait_for("connected to", timeout=60)
        devnet.wait_for("== train", timeout=120)
        miner.wait_for("join 0x", timeout=60)
        done = devnet.wait_for("== done", timeout=420)
        assert "FAILED" not in "\n".join(devnet.lines), "\n".join(devnet.lines)
        assert "done" in done
        balances = [line for line in devnet.lines if "MAG (ok)" in line]
        assert len(balances) == 2  # the devnet's own two miners: balance == epoch amounts, claimed
        verified = [line for line in devnet.lines if ": verified, signed by" in line]
        assert len(verified) == 3  # every receipt of the task (the outside miner's too) verifies
        receipt = miner.wait_for("receipt 0x", timeout=60)
        assert "rank" in receipt and "MAG" in receipt
        miner.wait_for("claimed", timeout=120)
    finally:
        if miner is not None:
            assert miner.stop(signal.SIGTERM) == 0, "\n".join(miner.lines[-30:])
        devnet.stop(signal.SIGINT)
