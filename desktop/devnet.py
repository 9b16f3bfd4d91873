""" "Start a local devnet": `magnet devnet --keep-running` in a child process (a QProcess: nothing
waits), ready once its network profile file appears; the app then joins it as an extra miner."""

from __future__ import annotations

import sys
from pathlib import Path

from PySide6.QtCore import QObject, QProcess, QTimer, Signal

READY_POLL_MS = 500


def devnet_command(root: Path) -> list[str]:
    base = [sys.executable] if getattr(sys, "frozen", False) else [sys.executable, "-m", "node.cli"]
    return [*base, "devnet", "--keep-running", "--miners", "1", "--data-dir", str(root)]


class LocalDevnet(QObject):
    ready = Signal(str, str)  # network profile file, miner.toml for joiners
    failed = Signal(str)

    def __init__(self, root: Path, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.root = root
        self.process = QProcess(self)
        self.process.setProcessChannelMode(QProcess.ProcessChannelMode.MergedChannels)
        self.process.finished.connect(self._ended)
        self.poll = QTimer(self)
        self.poll.timeout.connect(self._check_ready)

    @property
    def profile_file(self) -> Path:
        return self.root / "network.json"

    def start(self) -> None:
        if self.profile_file.exists():
            self.profile_file.unlink()  # a stale profile from an earlier run is not this devnet's
        program, *args = devnet_command(self.root)
        self.process.start(program, args)
        self.poll.start(READY_POLL_MS)

    def _check_ready(self) -> None:
        if self.profile_file.exists() and (self.root / "miner.toml").exists():  # miner.toml comes last
            self.poll.stop()
            self.ready.emit(str(self.profile_file), str(self.root / "miner.toml"))

    def _ended(self, code: int, _status: object) -> None:
        self.poll.stop()
        tail = bytes(self.process.readAll().data()).decode(errors="replace").strip().splitlines()[-3:]
        self.failed.emit(f"The local devnet stopped (exit {code}): {' '.join(tail)}")

    def stop(self) -> None:
        if self.process.state() != QProcess.ProcessState.NotRunning:
            self.process.finished.disconnect(self._ended)
            self.process.terminate()
            if not self.process.waitForFinished(10000):
                self.process.kill()
