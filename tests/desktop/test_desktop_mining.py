"""The app mines on a devnet kept running in another process (`magnet devnet --keep-running
--extra-miners 1`, which waits for the app's miner before it announces its task). The app is the real
DesktopApp: its window, bridge, NodeCore and miner service; the test clicks its buttons."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
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
        self.alerts: list[str] = []

    def on_event_miner_state_changed(self, event: Any) -> None:
        self.states.append(event.state)

    def on_event_miner_progress(self, event: Any) -> None:
        self.progress.append(event.percent)

    def on_event_miner_receipt_received(self, event: Any) -> None:
        self.receipts.append(event)

    def on_event_miner_watchdog(self, event: Any) -> None:
        self.alerts.append(f"{event.problem}: {event.action}")

    def on_event_miner_task_given_up(self, event: Any) -> None:
        self.alerts.append(f"given up: {event.reason}")


@contextmanager
def app_on_devnet(qtbot: Any, data_dir: Path, tmp_path: Path, train_s: int) -> Iterator[tuple[Any, Recorder]]:
    """A devnet in another process, the app joined to it, mining started with the big button."""
    devnet = DevnetProcess(
        tmp_path / "devnet",
        "--miners",
        "1",
        "--extra-miners",
        "1",
        "--train-seconds",
        str(train_s),
        "--rows",
        "80",
        "--no-autoresearch",
    )
    desktop, recorder = None, None
    try:
        profile, miner_toml = devnet.wait_for_files(timeout=90)
        DesktopSettings(
            network_file=str(profile),
            miner_config_file=str(miner_toml),
            pause_on_battery=False,
            first_run_done=True,
        ).save(data_dir)
        password_file = tmp_path / "password"
        password_file.write_text(PASSWORD + "\n")
        desktop = DesktopApp(LaunchOptions(data_dir=data_dir, password_file=str(password_file)))
        recorder = Recorder()
        desktop.bridge.register(recorder)
        desktop.open()
        window = desktop.window
        assert window is not None and window.isVisible()
        qtbot.waitUntil(lambda: desktop.bridge.state == CORE_RUNNING, timeout=90_000)
        qtbot.waitUntil(window.mine.button.isEnabled, timeout=5_000)
        qtbot.mouseClick(window.mine.button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: window.mine.button.text() == "Stop mining", timeout=10_000)
        yield window, recorder
    except BaseException:
        print(devnet.output())
        print("miner alerts seen by the app:", recorder.alerts if recorder else "-")
        raise
    finally:
        if desktop is not None:
            desktop.shutdown()
            if desktop.window is not None:
                desktop.window.close()
        devnet.stop()


def test_start_mining_shows_states_progress_and_a_receipt(
    qtbot: Any, wallet_data_dir: Path, tmp_path: Path
) -> None:
    with app_on_devnet(qtbot, wallet_data_dir, tmp_path, train_s=70) as (window, recorder):
        qtbot.waitUntil(lambda: "training" in recorder.states, timeout=120_000)
        # On a quiet machine the final run can finish between two percent reports, so progress > 0
        # is not guaranteed before the receipt: wait for either, then require progress events seen.
        moved = lambda: any(p > 0 for p in recorder.progress) or bool(recorder.receipts)  # noqa: E731
        qtbot.waitUntil(moved, timeout=240_000)
        qtbot.waitUntil(lambda: bool(recorder.receipts), timeout=300_000)
        assert recorder.progress, "no training progress reached the GUI"
        assert recorder.receipts[0].verified, recorder.receipts[0].reason
        qtbot.waitUntil(lambda: window.wallet.receipt_rows() >= 1, timeout=10_000)
        verification = window.wallet.table.item(0, 6).text()
        assert verification.startswith("verified, signed by"), verification
        seen = list(dict.fromkeys(recorder.states))
        for state in ("looking for tasks", "joining", "downloading", "training", "submitting"):
            assert state in seen, seen
        print(f"states seen: {seen}; progress events: {len(recorder.progress)}")


def test_stop_works_mid_task(qtbot: Any, wallet_data_dir: Path, tmp_path: Path) -> None:
    with app_on_devnet(qtbot, wallet_data_dir, tmp_path, train_s=120) as (window, recorder):
        qtbot.waitUntil(lambda: "training" in recorder.states, timeout=120_000)
        qtbot.waitUntil(lambda: bool(training_children(wallet_data_dir)), timeout=120_000)  # the app's job
        qtbot.mouseClick(window.mine.button, Qt.MouseButton.LeftButton)  # Stop, mid-task
        qtbot.waitUntil(lambda: window.mine.button.text() == "Start mining", timeout=30_000)
        qtbot.wait(15_000)  # time for a (wrongly) restarted training process to show up
        assert recorder.states[-1] == "stopped", f"still {recorder.states[-1]!r} after Stop"
        assert not training_children(wallet_data_dir), "a training process runs after Stop"


def training_children(data_dir: Path) -> list[str]:
    """Training processes of the app's miner (job files under ``data_dir``), still alive. The devnet
    runs in a child of this process too: its own miner's jobs are descendants as well, and counting
    them made the Stop test fail whenever the devnet's miner was training (seen on the original code
    too, 1 run in 2)."""
    import psutil

    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            cmdline = child.cmdline()
            if (
                "train_child" in " ".join(cmdline)
                and cmdline[-1].startswith(str(data_dir))
                and child.status() != psutil.STATUS_ZOMBIE
            ):
                found.append(cmdline[-1])
        except psutil.NoSuchProcess:
            continue
    return found
