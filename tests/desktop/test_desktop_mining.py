"""The app mines on a devnet kept running in another process: Start, states change, progress moves,
Stop works mid-task, Start again, and a verified receipt appears on the Wallet screen.

The devnet (`magnet devnet --keep-running --extra-miners 1`) waits for the app's miner before it
announces its task; the app is the real DesktopApp with its window, bridge, NodeCore and miner.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from desktop_helpers import PASSWORD
from devnet_process import DevnetProcess
from PySide6.QtCore import Qt

from desktop.app import DesktopApp
from desktop.bridge import CORE_RUNNING
from desktop.corebuild import LaunchOptions
from desktop.settings import DesktopSettings

pytestmark = [pytest.mark.gui, pytest.mark.slow, pytest.mark.network]


class Recorder:
    """Core events as the GUI receives them (through the bridge, on the GUI thread)."""

    def __init__(self) -> None:
        self.states: list[str] = []
        self.progress: list[float] = []
        self.receipts: list[Any] = []

    def on_event_miner_state_changed(self, event: Any) -> None:
        self.states.append(event.state)

    def on_event_miner_progress(self, event: Any) -> None:
        self.progress.append(event.percent)

    def on_event_miner_receipt_received(self, event: Any) -> None:
        self.receipts.append(event)


def test_start_stop_and_a_receipt_on_a_devnet(qtbot: Any, wallet_data_dir: Path, tmp_path: Path) -> None:
    devnet = DevnetProcess(
        tmp_path / "devnet",
        "--miners",
        "1",
        "--extra-miners",
        "1",
        "--train-seconds",
        "180",
        "--rows",
        "80",
        "--no-autoresearch",
    )
    desktop = None
    try:
        profile, miner_toml = devnet.wait_for_files(timeout=90)
        settings = DesktopSettings(
            network_file=str(profile),
            miner_config_file=str(miner_toml),
            pause_on_battery=False,
            first_run_done=True,
        )
        settings.save(wallet_data_dir)
        password_file = tmp_path / "password"
        password_file.write_text(PASSWORD + "\n")
        desktop = DesktopApp(LaunchOptions(data_dir=wallet_data_dir, password_file=str(password_file)))
        recorder = Recorder()
        desktop.bridge.register(recorder)
        desktop.open()
        window = desktop.window
        assert window is not None and window.isVisible()
        qtbot.waitUntil(lambda: desktop.bridge.state == CORE_RUNNING, timeout=60_000)
        qtbot.waitUntil(window.mine.button.isEnabled, timeout=5_000)
        qtbot.mouseClick(window.mine.button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: window.mine.button.text() == "Stop mining", timeout=10_000)

        qtbot.waitUntil(lambda: "training" in recorder.states, timeout=120_000)
        qtbot.waitUntil(lambda: bool(recorder.progress), timeout=120_000)  # the training child reports

        qtbot.mouseClick(window.mine.button, Qt.MouseButton.LeftButton)  # Stop, mid-task
        qtbot.waitUntil(lambda: recorder.states[-1] == "stopped", timeout=30_000)
        qtbot.waitUntil(lambda: window.mine.button.text() == "Start mining", timeout=10_000)
        assert not training_children(), "the training process outlived Stop"
        stopped_at = len(recorder.progress)
        qtbot.wait(2_000)
        assert len(recorder.progress) == stopped_at, "training went on after Stop"
        assert "stopped" in window.mine.state.text().lower()

        qtbot.mouseClick(window.mine.button, Qt.MouseButton.LeftButton)  # Start again: resumes the task
        qtbot.waitUntil(lambda: len(recorder.progress) > stopped_at, timeout=150_000)  # resumed
        qtbot.waitUntil(lambda: any(p > 0 for p in recorder.progress), timeout=150_000)
        qtbot.waitUntil(lambda: window.mine.progress.value() > 0 or bool(recorder.receipts), timeout=10_000)
        qtbot.waitUntil(lambda: bool(recorder.receipts), timeout=240_000)
        assert recorder.receipts[0].verified, recorder.receipts[0].reason
        qtbot.waitUntil(lambda: window.wallet.receipt_rows() >= 1, timeout=10_000)
        verification = window.wallet.table.item(0, 6).text()
        assert verification.startswith("verified, signed by"), verification
        for state in ("looking for tasks", "joining", "downloading", "training", "submitting"):
            assert state in recorder.states, recorder.states
    except BaseException:
        print(devnet.output())
        raise
    finally:
        if desktop is not None:
            desktop.shutdown()
            if desktop.window is not None:
                desktop.window.close()
        devnet.stop()


def training_children() -> list[str]:
    """Training processes this test process started (through the app's miner), still alive."""
    import psutil

    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            if "train_child" in " ".join(child.cmdline()) and child.status() != psutil.STATUS_ZOMBIE:
                found.append(child.cmdline()[-1])
        except psutil.NoSuchProcess:
            continue
    return found
