"""Every screen renders with data (a snapshot and core events, as the bridge delivers them), and a
screenshot of each is written to the folder the test names (printed with -s)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from desktop.bridge import CoreBridge
from desktop.hardware import read_hardware
from desktop.settings import DesktopSettings
from desktop.snapshot import PeerView, ReceiptView, Snapshot, TaskView
from desktop.window import MainWindow
from miner import events as ev

pytestmark = pytest.mark.gui
VALIDATOR = "0x" + "5a" * 20


def snapshot() -> Snapshot:
    now = time.time()
    tasks = [
        TaskView(
            "0x" + "ab" * 32,
            "instruct",
            "magnet-tiny-llama",
            10_500_000,
            now + 600,
            VALIDATOR,
            0.25,
            "training",
            True,
            "fits: 420 s of training time",
        ),
        TaskView(
            "0x" + "cd" * 32,
            "image",
            "sd-tiny",
            90_000_000,
            now + 900,
            VALIDATOR,
            1.5,
            "skipped",
            False,
            "needs a GPU with 8000 MiB, this miner has 0 MiB",
        ),
    ]
    receipts = [
        ReceiptView(
            "0x" + "ef" * 32,
            VALIDATOR,
            1,
            1,
            3,
            3 * 10**18,
            now - 3600,
            f"verified, signed by {VALIDATOR}",
            "claimed",
        ),
        ReceiptView(
            "0x" + "ab" * 32,
            VALIDATOR,
            2,
            2,
            3,
            2 * 10**18,
            now - 60,
            f"verified, signed by {VALIDATOR}",
            "pending proof",
        ),
    ]
    peers = [
        PeerView("12D3KooWValidator", VALIDATOR, "validator", True, now),
        PeerView("12D3KooWMinerTwo", "0x" + "77" * 20, "miner", False, now - 120),
    ]
    return Snapshot(
        address="0x" + "42" * 20,
        state="training",
        detail="final run",
        mining=True,
        current_task=tasks[0].task_id,
        phase="train",
        progress=42.5,
        eta_s=95,
        last_submission=now - 3600,
        tasks=tasks,
        receipts=receipts,
        earned=5 * 10**18,
        claimable=0,
        claimed=3 * 10**18,
        peers=peers,
        connections=1,
        network_name="devnet",
        rpc_url="http://127.0.0.1:8545",
        registry="0x" + "11" * 20,
        token="0x" + "22" * 20,
    )


def test_every_screen_renders_with_data(qtbot: Any, data_dir: Path, screens_dir: Path) -> None:
    bridge = CoreBridge()
    window = MainWindow(bridge, data_dir, DesktopSettings(network_file="/tmp/network.json"))
    qtbot.addWidget(window)
    window.show()
    window.after_shown()
    (data_dir / "logs").mkdir()
    (data_dir / "logs" / "magnet.log").write_text("2026-11-22 09:00:00 INFO magnet.miner: miner running\n")
    qtbot.waitUntil(lambda: window.mine.loss_chart.plot is not None, timeout=30_000)  # pyqtgraph loaded
    window.show_snapshot(snapshot())
    task = "0x" + "ab" * 32
    for step, loss in enumerate([2.9, 2.5, 2.2, 2.0, 1.9], start=1):
        bridge.event_arrived.emit(
            ev.Progress(
                task_id=task,
                phase="train",
                percent=step * 10.0,
                eta_s=90.0,
                loss=loss,
                step=step,
                total_steps=10,
            )
        )
    bridge.event_arrived.emit(ev.WatchdogAlert(task_id=task, problem="lost network", action="reconnecting"))
    window.mine.show_hardware(read_hardware())
    qtbot.waitUntil(lambda: window.mine.loss_points() == 5, timeout=5_000)
    # the bar and the chart are redrawn at most every PROGRESS_MS / REDRAW_MS, with the latest data
    qtbot.waitUntil(lambda: "about 1 min 30 s left" in window.mine.eta.text(), timeout=5_000)
    qtbot.waitUntil(lambda: len(window.mine.loss_chart.curve.getData()[0]) == 5, timeout=5_000)

    assert "Training" in window.mine.state.text() and "final run" in window.mine.state.text()
    assert window.mine.button.text() == "Stop mining"
    assert "about 1 min 30 s left" in window.mine.eta.text()
    assert "Total: 5.0000 MAG" in window.mine.earnings.text()
    assert "CPU:" in window.mine.hardware.text() and "RAM:" in window.mine.hardware.text()
    assert window.tasks.table.rowCount() == 2
    assert "needs a GPU" in window.tasks.table.item(0, 8).text()
    assert window.wallet.receipt_rows() == 2 and window.wallet.chart.ys == [3.0, 5.0]
    assert "Pending (waiting for the epoch proof): 2.0000 MAG" in window.wallet.rewards.text()
    assert window.network.table.rowCount() == 2 and "online" in window.network.validators.text()
    assert "lost network" in window.network.alert.text()
    window.wallet.show_balance(3 * 10**18)

    for index, name in enumerate(window.screens):
        window.nav.setCurrentRow(index)
        if name == "Logs":
            window.logs.refresh()
            assert "miner running" in window.logs.text.toPlainText()
        qtbot.wait(50)
        path = screens_dir / f"{index + 1}-{name.lower()}.png"
        assert window.grab().save(str(path)), path
        assert path.stat().st_size > 5_000, f"{path} looks empty"
    print(f"screenshots of {len(window.screens)} screens in {screens_dir}")


def test_the_mine_screen_says_why_the_node_could_not_start(qtbot: Any, data_dir: Path) -> None:
    window = MainWindow(CoreBridge(), data_dir, DesktopSettings())
    qtbot.addWidget(window)
    window.on_core_state("failed", "The password is not right. Type it again; check Caps Lock.")
    assert "password is not right" in window.mine.state.text()
    assert not window.mine.button.isEnabled()
    assert "failed" in window.statusBar().currentMessage()
