"""A miner process killed during training restarts and still commits in time; when its validator then
disappears, it gives the task up after the reveal deadline with a clear event.

The validator runs in this process (a devnet with no miners of its own); the miner is `magnet mine` in a
child process, killed with SIGKILL while its training job runs and started again on the same data dir.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
from devnet_helpers import Proc, make_wallet

from devnet.main import write_joiner_config
from devnet.network import DevnetSettings, start_devnet, wait_extra_miners
from devnet.run import create_task

pytestmark = [pytest.mark.slow, pytest.mark.network]


def test_killed_miner_resumes_commits_and_gives_up_when_the_validator_is_gone(tmp_path: Path) -> None:
    settings = DevnetSettings(miners=0, train_s=60, autoresearch=False)
    net = start_devnet(tmp_path / "devnet", settings)
    miner_dir = tmp_path / "miner"
    password_file = make_wallet(miner_dir)
    config = write_joiner_config(net)
    args = (
        "mine",
        "--network",
        str(net.profile_file),
        "--config",
        str(config),
        "--data-dir",
        str(miner_dir),
        "--password-file",
        str(password_file),
    )
    miner = Proc(*args)
    restarted = None
    try:
        wait_extra_miners(net, 1, timeout=60)
        task_id = create_task(net, 0)
        miner.wait_for("state: training", timeout=60)
        checkpoint = miner_dir / "miner" / task_id[2:18] / "checkpoint"
        _wait_until(lambda: checkpoint.exists() and any(checkpoint.iterdir()), timeout=60)
        miner.stop(signal.SIGKILL)  # mid-training, a checkpoint on disk
        assert not any("committed" in line for line in miner.lines)

        restarted = Proc(*args)
        restarted.wait_for("state: training", timeout=60)  # the same task, resumed from the store
        committed = restarted.wait_for(f"committed {task_id[:14]}", timeout=120)
        assert "before the deadline" in committed
        validator_db = net.validator_service.db
        _wait_until(lambda: bool(validator_db.commitments(task_id)), timeout=20)

        net.validator.stop()  # the validator disappears before the reveal
        gave_up = restarted.wait_for(f"gave up {task_id[:14]}", timeout=120)
        assert "validator could not be reached before the reveal deadline" in gave_up
    finally:
        for proc in (miner, restarted):
            if proc is not None:
                proc.stop(signal.SIGTERM)
        net.stop()


def _wait_until(check: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.3)
    raise AssertionError("condition not met in time")
