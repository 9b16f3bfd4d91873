"""Settings: resource caps, idle-only mining and the schedule, battery pause, task kinds, the network,
the data folder and start at login. Saved to desktop.json; limits apply to the running miner at once,
the network and the data folder at the next start."""

from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from desktop import autostart
from desktop.settings import DesktopSettings, choose_data_dir
from miner.config import ALL_KINDS
from miner.policy import ScheduleError, parse_schedule


class SettingsScreen(QWidget):
    saved = Signal(object)  # DesktopSettings

    def __init__(self, settings: DesktopSettings, data_dir: Path, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.settings, self.data_dir = settings, data_dir
        self.threads = QSpinBox()
        self.threads.setRange(0, os.cpu_count() or 64)
        self.threads.setSpecialValueText("all cores")
        self.ram = QSpinBox()
        self.ram.setRange(0, 1 << 20)
        self.ram.setSuffix(" MiB")
        self.ram.setSpecialValueText("what is free")
        self.gpu = QComboBox()
        self.gpu.addItems(["auto", "cpu", "cuda:0", "cuda:1"])
        self.idle_only = QCheckBox("Mine only when the computer is idle")
        self.idle_after = QSpinBox()
        self.idle_after.setRange(10, 86400)
        self.idle_after.setSuffix(" s without input")
        self.schedule = QLineEdit()
        self.schedule.setPlaceholderText("e.g. mon-fri 22:00-07:00; sat-sun 00:00-24:00 (empty: always)")
        self.battery = QCheckBox("Pause on battery")
        self.kinds = {kind: QCheckBox(kind) for kind in ALL_KINDS}
        self.network_file = QLineEdit()
        self.peers = QLineEdit()
        self.peers.setPlaceholderText("extra bootstrap peers, comma separated multiaddrs")
        self.login = QCheckBox("Start MAGNET when I log in")
        self.login.setEnabled(autostart.supported())
        self.message = QLabel("")
        self.message.setWordWrap(True)
        self._build()
        self.load(settings)

    def _build(self) -> None:
        layout = QVBoxLayout(self)
        caps = QGroupBox("Limits")
        form = QFormLayout(caps)
        form.addRow("CPU threads", self.threads)
        form.addRow("RAM per training job", self.ram)
        form.addRow("Device", self.gpu)
        when = QGroupBox("When to mine")
        form2 = QFormLayout(when)
        form2.addRow(self.idle_only, self.idle_after)
        form2.addRow("Schedule", self.schedule)
        form2.addRow(self.battery)
        kinds = QGroupBox("Task kinds")
        row = QHBoxLayout(kinds)
        for box in self.kinds.values():
            row.addWidget(box)
        net = QGroupBox("Network and storage")
        form3 = QFormLayout(net)
        browse = QPushButton("Choose...")
        browse.clicked.connect(self._choose_profile)
        pick = QHBoxLayout()
        pick.addWidget(self.network_file, 1)
        pick.addWidget(browse)
        form3.addRow("Network profile", pick)
        form3.addRow("Bootstrap peers", self.peers)
        self.folder = QLabel(str(self.data_dir))
        move = QPushButton("Change...")
        move.clicked.connect(self._choose_folder)
        folder = QHBoxLayout()
        folder.addWidget(self.folder, 1)
        folder.addWidget(move)
        form3.addRow("Data folder", folder)
        form3.addRow(self.login)
        save = QPushButton("Save")
        save.clicked.connect(self.save)
        for widget in (caps, when, kinds, net):
            layout.addWidget(widget)
        layout.addWidget(save)
        layout.addWidget(self.message)
        layout.addStretch(1)

    def load(self, s: DesktopSettings) -> None:
        self.threads.setValue(s.max_threads)
        self.ram.setValue(s.max_ram_mb)
        self.gpu.setCurrentText(s.gpu)
        self.idle_only.setChecked(s.idle_only)
        self.idle_after.setValue(int(s.idle_after_s))
        self.schedule.setText("; ".join(s.schedule))
        self.battery.setChecked(s.pause_on_battery)
        for kind, box in self.kinds.items():
            box.setChecked(not s.enabled_kinds or kind in s.enabled_kinds)
        self.network_file.setText(s.network_file)
        self.peers.setText(", ".join(s.bootstrap_peers))
        self.login.setChecked(s.start_at_login or autostart.starts_at_login())

    def _choose_profile(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Network profile", str(self.data_dir), "JSON (*.json)")
        if path:
            self.network_file.setText(path)

    def _choose_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Data folder", str(self.data_dir))
        if path:
            self.use_folder(Path(path))

    def use_folder(self, path: Path) -> None:
        """Remember ``path`` for the next start (the running node keeps its folder: it holds its lock)."""
        try:
            choose_data_dir(path)
        except OSError as exc:
            self.message.setText(f"The folder could not be remembered: {exc}.")
            return
        self.folder.setText(f"{self.data_dir} (next start: {path})")
        self.message.setText(
            f"MAGNET will use {path} from its next start; it makes a wallet there if it has none."
        )

    def save(self) -> bool:
        schedule = [part.strip() for part in self.schedule.text().split(";") if part.strip()]
        try:
            parse_schedule(schedule)
        except ScheduleError as exc:
            self.message.setText(f"The schedule cannot be read: {exc}")
            return False
        s = self.settings
        s.max_threads, s.max_ram_mb, s.gpu = self.threads.value(), self.ram.value(), self.gpu.currentText()
        s.idle_only, s.idle_after_s, s.schedule = (
            self.idle_only.isChecked(),
            float(self.idle_after.value()),
            schedule,
        )
        s.pause_on_battery = self.battery.isChecked()
        s.enabled_kinds = [k for k, box in self.kinds.items() if box.isChecked()]
        s.network_file = self.network_file.text().strip()
        s.bootstrap_peers = [p.strip() for p in self.peers.text().split(",") if p.strip()]
        s.start_at_login = self.login.isChecked()
        try:
            if autostart.supported():
                autostart.set_start_at_login(s.start_at_login)
            s.save(self.data_dir)
        except OSError as exc:
            self.message.setText(f"The settings could not be saved: {exc}. Check the folder's permissions.")
            return False
        self.message.setText("Saved. Limits apply to the next task; the network after a restart.")
        self.saved.emit(s)
        return True
