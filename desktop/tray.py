"""The tray icon: status, Start / Stop, Open, Quit, and a notification when a receipt arrives.

Only where ``QSystemTrayIcon.isSystemTrayAvailable()`` (never offscreen or under a bare Xvfb): the
app works the same without it, the window being the only way in.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtGui import QAction, QIcon
from PySide6.QtWidgets import QMenu, QSystemTrayIcon

from desktop.screens.common import tokens


def tray_available() -> bool:
    return QSystemTrayIcon.isSystemTrayAvailable()


class Tray:
    def __init__(self, window: Any, icon: QIcon) -> None:
        self.window = window
        self.icon = QSystemTrayIcon(icon, window)
        self.menu = QMenu()
        self.status = QAction("Starting...", self.menu)
        self.status.setEnabled(False)
        self.toggle = QAction("Start mining", self.menu)
        self.toggle.triggered.connect(self._toggle)
        show = QAction("Open MAGNET", self.menu)
        show.triggered.connect(window.showNormal)
        quit_action = QAction("Quit", self.menu)
        quit_action.triggered.connect(window.close)
        for action in (self.status, self.toggle, show, quit_action):
            self.menu.addAction(action)
        self.icon.setContextMenu(self.menu)
        self.icon.setToolTip("MAGNET")
        self.icon.show()

    def _toggle(self) -> None:
        (self.window.stop_mining if self.window.mine.mining else self.window.start_mining)()

    def on_event_miner_state_changed(self, event: Any) -> None:
        self.status.setText(f"MAGNET: {event.state}")
        self.icon.setToolTip(f"MAGNET: {event.state}")
        self.toggle.setText("Stop mining" if self.window.mine.mining else "Start mining")

    def on_event_miner_receipt_received(self, event: Any) -> None:
        if event.verified:
            self.icon.showMessage(
                "MAGNET: a receipt arrived", f"Rank {event.rank} of {event.pool_size}: {tokens(event.amount)}"
            )
