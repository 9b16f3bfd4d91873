"""The main window: a list of screens on the left, the screen on the right, the node's state below.

It owns the timers: a snapshot of the core once a second (read inside the core's loop, delivered
by the bridge), the hardware card every two seconds (read on the pool), the chain balance every
fifteen seconds (a plain JSON-RPC call on the pool, without web3: desktop/chainread.py). Nothing here waits
on the core.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from PySide6.QtCore import QTimer, Signal
from PySide6.QtGui import QCloseEvent, QIcon
from PySide6.QtWidgets import QHBoxLayout, QListWidget, QMainWindow, QMessageBox, QStackedWidget, QWidget

from desktop import actions
from desktop.bridge import CORE_FAILED, CORE_RUNNING, CoreBridge
from desktop.chainread import token_balance
from desktop.charts import load_charts
from desktop.errors import in_words
from desktop.hardware import read_hardware
from desktop.screens.logs import LogsScreen
from desktop.screens.mine import MineScreen
from desktop.screens.network import NetworkScreen
from desktop.screens.settings import SettingsScreen
from desktop.screens.tasks import TasksScreen
from desktop.screens.wallet import WalletScreen
from desktop.settings import DesktopSettings
from desktop.snapshot import Snapshot, take_snapshot

log = logging.getLogger("magnet.desktop")
SNAPSHOT_MS, HARDWARE_MS, BALANCE_MS = 1000, 2000, 15000


class MainWindow(QMainWindow):
    snapshot_shown = Signal(object)  # each Snapshot once every screen showed it (tests wait on it)

    def __init__(
        self, bridge: CoreBridge, data_dir: Path, settings: DesktopSettings, icon: QIcon | None = None
    ) -> None:
        super().__init__()
        self.bridge, self.data_dir, self.settings = bridge, data_dir, settings
        self.setWindowTitle("MAGNET")
        if icon is not None:
            self.setWindowIcon(icon)
        self.resize(1100, 760)
        self.mine = MineScreen()
        self.tasks = TasksScreen()
        self.wallet = WalletScreen(bridge, data_dir / "wallet")
        self.network = NetworkScreen()
        self.settings_screen = SettingsScreen(settings, data_dir)
        self.logs = LogsScreen(data_dir / "logs" / "magnet.log")
        self.screens: dict[str, QWidget] = {
            "Mine": self.mine,
            "Tasks": self.tasks,
            "Wallet": self.wallet,
            "Network": self.network,
            "Settings": self.settings_screen,
            "Logs": self.logs,
        }
        self.last_snapshot: Snapshot | None = None
        self._snapshot_pending = False
        self._build()
        self._wire()

    def _build(self) -> None:
        self.nav = QListWidget()
        self.nav.setFixedWidth(140)
        self.stack = QStackedWidget()
        for name, screen in self.screens.items():
            self.nav.addItem(name)
            self.stack.addWidget(screen)
        self.nav.currentRowChanged.connect(self.stack.setCurrentIndex)
        self.nav.setCurrentRow(0)
        body = QWidget()
        row = QHBoxLayout(body)
        row.addWidget(self.nav)
        row.addWidget(self.stack, 1)
        self.setCentralWidget(body)
        self.statusBar().showMessage("Starting the node...")

    def _wire(self) -> None:
        for screen in self.screens.values():
            self.bridge.register(screen)
        self.bridge.register(self)
        self.bridge.core_state.connect(self.on_core_state)
        self.mine.start_clicked.connect(self.start_mining)
        self.mine.stop_clicked.connect(self.stop_mining)
        self.wallet.claim_clicked.connect(self.claim)
        self.settings_screen.saved.connect(self.apply_settings)
        self.timers = [
            self._every(SNAPSHOT_MS, self.request_snapshot),
            self._every(HARDWARE_MS, self.request_hardware),
            self._every(BALANCE_MS, self.request_balance),
        ]

    def _every(self, ms: int, slot: Any) -> QTimer:
        timer = QTimer(self)
        timer.timeout.connect(slot)
        timer.start(ms)
        return timer

    def after_shown(self) -> None:
        """Work deferred until the window is on screen: charts (pyqtgraph import), first readings."""
        load_charts(self.bridge.run_in_thread, [self.mine.loss_chart, self.wallet.chart])
        self.request_hardware()

    # --- the core's life ---------------------------------------------------------------------------
    def on_core_state(self, state: str, text: str) -> None:
        self.statusBar().showMessage(f"Node {state}: {text.splitlines()[0]}")
        self.network.show_core_state(state, text)
        self.mine.set_node_ready(
            state == CORE_RUNNING,
            "Ready: press Start mining." if state == CORE_RUNNING else text if state == CORE_FAILED else "",
        )
        if state == CORE_RUNNING and self.bridge.core is not None:
            self.wallet.set_identity(self.bridge.core.address, self.settings.payout_address)
            self.request_snapshot()
            self.request_balance()
        if state == CORE_FAILED:
            self.show_error("The node could not start", text)

    def show_error(self, title: str, text: str) -> None:
        box = QMessageBox(QMessageBox.Icon.Warning, title, text, parent=self)
        box.open()  # not exec(): the event loop keeps running

    # --- actions -----------------------------------------------------------------------------------
    def start_mining(self) -> None:
        if not self.bridge.run_in_core(
            actions.start_mining,
            self.bridge.core,
            done=lambda _s: self.mine.set_mining(True),
            failed=self._action_failed,
        ):
            self.mine.set_node_ready(False, "The node is not running yet.")

    def stop_mining(self) -> None:
        self.mine.show_state("stopping", "ending the training job (it resumes from its checkpoint)")
        self.bridge.run_in_core(
            actions.stop_mining,
            self.bridge.core,
            done=lambda _s: self.mine.set_mining(False),
            failed=self._action_failed,
        )

    def claim(self) -> None:
        self.wallet.status.setText("Claiming on chain...")
        self.bridge.run_in_core(
            actions.claim_rewards,
            self.bridge.core,
            done=lambda left: self.wallet.status.setText(
                "Claimed."
                if not left
                else "Some rewards could not be claimed yet: "
                "the epoch may still be open. MAGNET retries by itself."
            ),
            failed=self._action_failed,
        )

    def _action_failed(self, error: BaseException) -> None:
        self.mine.set_node_ready(self.bridge.state == CORE_RUNNING)
        self.show_error("That did not work", in_words(error))

    def apply_settings(self, settings: DesktopSettings) -> None:
        core = self.bridge.core
        if core is not None:
            self.bridge.run_in_core(apply_limits, core, settings)

    # --- periodic readings ---------------------------------------------------------------------------
    def request_snapshot(self) -> None:
        if self._snapshot_pending or self.bridge.core is None:
            return
        self._snapshot_pending = True  # before the call: its result may be delivered at any time after
        if not self.bridge.run_in_core(
            take_snapshot, self.bridge.core, done=self.show_snapshot, failed=self._snapshot_failed
        ):
            self._snapshot_pending = False

    def show_snapshot(self, snap: Snapshot) -> None:
        self._snapshot_pending = False
        self.last_snapshot = snap
        for name in ("Mine", "Tasks", "Wallet", "Network"):
            self.screens[name].show_snapshot(snap)  # type: ignore[attr-defined]
        if self.stack.currentWidget() is self.logs:
            self.logs.refresh()
        self.snapshot_shown.emit(snap)

    def _snapshot_failed(self, error: BaseException) -> None:
        self._snapshot_pending = False
        log.debug("snapshot failed: %s", error)

    def request_hardware(self) -> None:
        self.bridge.run_in_thread(read_hardware, done=self.mine.show_hardware)

    def request_balance(self) -> None:
        snap, core = self.last_snapshot, self.bridge.core
        if core is None or snap is None or not snap.rpc_url:
            return
        payout = self.settings.payout_address or core.address
        self.bridge.run_in_thread(
            token_balance,
            snap.rpc_url,
            snap.registry,
            payout,
            done=self.wallet.show_balance,
            failed=lambda e: self.wallet.show_balance(None, in_words(e).splitlines()[0]),
        )

    # --- events the window itself shows ---------------------------------------------------------------
    def on_event_node_service_failed(self, event: Any) -> None:
        self.show_error(
            "Mining stopped",
            f"Part of the node failed ({event.name}): {event.error}. "
            "Restart MAGNET; the Logs screen has the details.",
        )

    def closeEvent(self, event: QCloseEvent) -> None:
        for timer in self.timers:
            timer.stop()
        super().closeEvent(event)


async def apply_limits(core: Any, settings: DesktopSettings) -> None:
    """Settings saved while the node runs: the miner reads its config object at each decision."""
    settings.apply_to(core.config)
