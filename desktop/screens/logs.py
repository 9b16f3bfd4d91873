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
        self._partial = b""  # the last line, until its newline is written

    def refresh(self) -> None:
        """Show what the file gained since the last look (once a second while this screen is shown).

        Only the new complete lines are appended: setting the whole 200 kB tail again each second
        re-laid out thousands of lines on the GUI thread while a miner logged. A file that shrank
        (rotated) is read again from its tail."""
        try:
            size = self.log_file.stat().st_size
        except OSError:
            self.text.setPlainText("No log yet: it starts when the node starts.")
            self._size, self._partial = -1, b""
            return
        if size == self._size:
            return
        fresh = size < self._size or self._size < 0 or size - self._size > TAIL_BYTES
        start = max(0, size - TAIL_BYTES) if fresh else self._size
        with self.log_file.open("rb") as f:
            f.seek(start)
            data = f.read(size - start)
        self._size = start + len(data)
        if fresh:
            self._partial = b""
            if start > 0:  # begin at a whole line
                data = data[data.find(b"\n") + 1 :]
        data = self._partial + data
        complete, _, self._partial = data.rpartition(b"\n")
        if fresh:
            self.text.setPlainText(complete.decode("utf-8", "replace"))
        elif complete:
            self.text.appendPlainText(complete.decode("utf-8", "replace"))
        bar = self.text.verticalScrollBar()
        bar.setValue(bar.maximum())

    def open_log_folder(self) -> bool:
        return QDesktopServices.openUrl(QUrl.fromLocalFile(str(self.log_file.parent)))
