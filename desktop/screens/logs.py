"""Logs: the tail of the node's log file, refreshed while shown, and a button that opens its folder."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QUrl
from PySide6.QtGui import QDesktopServices, QFont
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPlainTextEdit, QPushButton, QVBoxLayout, QWidget

TAIL_BYTES = 200_000


class LogsScreen(QWidget):
    def __init__(self, log_file: Path, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.log_file = log_file
        self.text = QPlainTextEdit()
        self.text.setReadOnly(True)
        self.text.setFont(QFont("monospace"))
        self.text.setMaximumBlockCount(5000)
        self.open_folder = QPushButton("Open the log folder")
        self.open_folder.clicked.connect(self.open_log_folder)
        self.where = QLabel(f"Log file: {log_file}")
        layout = QVBoxLayout(self)
        row = QHBoxLayout()
        row.addWidget(self.where, 1)
        row.addWidget(self.open_folder)
        layout.addLayout(row)
        layout.addWidget(self.text)
        self._size = -1

    def refresh(self) -> None:
        """Re-read the tail when the file changed (cheap: a stat, a bounded read)."""
        try:
            size = self.log_file.stat().st_size
        except OSError:
            self.text.setPlainText("No log yet: it starts when the node starts.")
            return
        if size == self._size:
            return
        self._size = size
        with self.log_file.open("rb") as f:
            f.seek(max(0, size - TAIL_BYTES))
            self.text.setPlainText(f.read().decode("utf-8", "replace"))
        bar = self.text.verticalScrollBar()
        bar.setValue(bar.maximum())

    def open_log_folder(self) -> bool:
        return QDesktopServices.openUrl(QUrl.fromLocalFile(str(self.log_file.parent)))
