"""``magnet`` with no command: the desktop app (``main()``; node/cli/launch.py imports this lazily).

The window is shown first; the node core starts behind it on the bridge's pool (unlocking the
keystore takes about a second, starting the network a few more), so the window is up long before
the core is. On a first run the wizard comes first. Imports here are Qt and the light node base
modules only: no torch, web3 or libp2p on the start path.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from PySide6.QtCore import QTimer
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QApplication, QInputDialog, QLineEdit

from desktop.bridge import CORE_FAILED, CoreBridge
from desktop.corebuild import LaunchOptions, build_core, password_without_asking
from desktop.devnet import LocalDevnet
from desktop.settings import NETWORK_DEVNET, DesktopSettings, chosen_data_dir
from desktop.tray import Tray, tray_available
from desktop.window import MainWindow
from desktop.wizard import FirstRunWizard

log = logging.getLogger("magnet.desktop")
BACKGROUND_START_MS = 50
SMOKE_ENV = "MAGNET_DESKTOP_SMOKE"
ICON_DIR = Path(__file__).resolve().parent.parent / "assets" / "icons"


def parse_options(argv: Sequence[str]) -> LaunchOptions:
    """The options the ``magnet`` command line passes on (everything else is the CLI's business)."""
    from node.paths import resolve_data_dir

    parser = argparse.ArgumentParser(add_help=False)
    for flag in ("--data-dir", "--config", "--network", "--password-file"):
        parser.add_argument(flag, default="")
    args, _ = parser.parse_known_args(list(argv))
    return LaunchOptions(
        data_dir=resolve_data_dir(configured_data_dir(args.data_dir)),
        config_file=Path(args.config) if args.config else None,
        network=args.network,
        password_file=args.password_file,
    )


def configured_data_dir(given: str) -> str:
    """``--data-dir``, else MAGNET_HOME (resolve_data_dir reads it), else the folder chosen in Settings."""
    if given:
        return str(Path(given).expanduser().resolve())
    return "" if os.environ.get("MAGNET_HOME") else chosen_data_dir()


def app_icon() -> QIcon:
    icon = QIcon()
    for png in sorted(ICON_DIR.glob("magnet-*.png")):
        icon.addFile(str(png))
    return icon


class DesktopApp:
    """Opens the wizard or the window, starts the node behind it, stops everything at exit."""

    def __init__(self, options: LaunchOptions) -> None:
        self.options = options
        self.data_dir = options.data_dir
        self.settings = DesktopSettings.load(self.data_dir)
        self.bridge = CoreBridge()
        self.icon = app_icon()
        self.window: MainWindow | None = None
        self.wizard: FirstRunWizard | None = None
        self.devnet: LocalDevnet | None = None
        self.tray: Tray | None = None
        self.password: str | None = None

    def needs_wizard(self) -> bool:
        return not (self.data_dir / "wallet" / "keystore.json").exists()

    def open(self) -> None:
        if self.needs_wizard():
            self.open_wizard()
        else:
            self.open_window(password_without_asking(self.options))

    def open_wizard(self) -> None:
        from node.config import load_config

        scrypt_n = load_config(path=self.options.config_file).wallet.scrypt_n
        self.wizard = FirstRunWizard(self.bridge, self.data_dir, self.settings, scrypt_n)
        self.wizard.setWindowIcon(self.icon)
        self.wizard.accepted.connect(lambda: self.open_window(self.wizard.password if self.wizard else None))
        self.wizard.show()

    def open_window(self, password: str | None) -> None:
        self.password = password
        self.window = MainWindow(self.bridge, self.data_dir, self.settings, self.icon)
        self.window.show()
        # Background work (pyqtgraph's import, the core's start) competes for the GIL: it begins once
        # the window had its first paint, so the person sees the window at once.
        QTimer.singleShot(BACKGROUND_START_MS, self.window.after_shown)
        if tray_available():
            self.tray = Tray(self.window, self.icon)
            self.bridge.register(self.tray)
        self.bridge.core_state.connect(self._core_state)
        QTimer.singleShot(BACKGROUND_START_MS, self.prepare_network)

    def prepare_network(self) -> None:
        if self.settings.network_mode == NETWORK_DEVNET and not self.options.network:
            self.devnet = LocalDevnet(self.data_dir / "devnet")
            self.devnet.ready.connect(self._devnet_ready)
            self.devnet.failed.connect(self._devnet_failed)
            self.devnet.start()
            if self.window is not None:
                self.window.statusBar().showMessage("Starting a local devnet (about 20 s)...")
            return
        self.unlock_and_start()

    def _devnet_failed(self, text: str) -> None:
        if self.window is not None:
            self.window.show_error("The local devnet stopped", text)

    def _devnet_ready(self, profile: str, miner_toml: str) -> None:
        self.settings.network_file, self.settings.miner_config_file = profile, miner_toml
        self.unlock_and_start()

    def unlock_and_start(self) -> None:
        if self.password is None:
            self.ask_password()
            return
        options, settings, password = self.options, self.settings, self.password
        self.bridge.start_core(lambda: build_core(options, settings, password))

    def ask_password(self, retry: bool = False) -> None:
        dialog = QInputDialog(self.window)
        dialog.setWindowTitle("Unlock your wallet")
        dialog.setLabelText(("That password was not right. " if retry else "") + "Your wallet password:")
        dialog.setTextEchoMode(QLineEdit.EchoMode.Password)
        dialog.textValueSelected.connect(self._password_given)
        dialog.open()  # not exec(): the window stays live behind it

    def _password_given(self, password: str) -> None:
        self.password = password
        self.unlock_and_start()

    def _core_state(self, state: str, text: str) -> None:
        if state == CORE_FAILED and text.startswith("The password is not right"):
            self.password = None
            self.ask_password(retry=True)

    def shutdown(self) -> None:
        self.bridge.stop_core_now()
        if self.devnet is not None:
            self.devnet.stop()


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_options(sys.argv[1:] if argv is None else argv)
    app = QApplication.instance() or QApplication([sys.argv[0]])
    assert isinstance(app, QApplication)
    app.setApplicationName("MAGNET")
    desktop = DesktopApp(options)
    app.aboutToQuit.connect(desktop.shutdown)
    desktop.open()
    if os.environ.get(SMOKE_ENV):
        QTimer.singleShot(0, lambda: smoke_report(desktop, app))
    return int(app.exec())


def smoke_report(desktop: DesktopApp, app: QApplication) -> None:
    """``MAGNET_DESKTOP_SMOKE=1``: say which window is up, then quit (the installer's bundle check)."""
    shown = desktop.wizard if desktop.wizard is not None else desktop.window
    title = shown.windowTitle() if shown is not None and shown.isVisible() else ""
    print(f"magnet: window visible: {title}" if title else "magnet: no window", flush=True)
    QTimer.singleShot(500, app.quit)
