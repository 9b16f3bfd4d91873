"""Small helpers the screens share: formatting amounts, times and durations for people."""

from __future__ import annotations

import time

from PySide6.QtWidgets import QFrame, QLabel, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget

TOKEN_UNITS = 10**18
TOKEN = "MAG"


def tokens(units: int) -> str:
    return f"{units / TOKEN_UNITS:,.4f} {TOKEN}"


def clock(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts > 0 else "never"


def duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
    if seconds >= 60:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds} s"


def short(text: str, keep: int = 10) -> str:
    return text if len(text) <= 2 * keep + 3 else f"{text[:keep]}...{text[-4:]}"


class Card(QFrame):
    """A titled box."""

    def __init__(self, title: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.body = QVBoxLayout(self)
        heading = QLabel(f"<b>{title}</b>")
        self.body.addWidget(heading)


class Table(QTableWidget):
    """A read-only table that remembers the rows it shows (fill_table touches only what changed)."""

    def __init__(self, rows: int, columns: int) -> None:
        super().__init__(rows, columns)
        self.shown_rows: list[list[str]] | None = None


def fill_table(table: Table, rows: list[list[str]]) -> None:
    """Show ``rows``: called with every snapshot (once a second), so an unchanged table costs nothing,
    only the cells whose text changed are set, and the columns are re-fitted (every cell measured)
    only when rows come or go. Rebuilding every item and re-fitting each second took the GUI thread
    tens of ms per table once the tasks, receipts and peers numbered a few hundred."""
    if rows == table.shown_rows:
        return
    count_changed = table.rowCount() != len(rows) or table.shown_rows is None
    table.setRowCount(len(rows))
    for r, row in enumerate(rows):
        for c, text in enumerate(row):
            item = table.item(r, c)
            if item is None:
                item = QTableWidgetItem(text)
                item.setToolTip(text)
                table.setItem(r, c, item)
            elif item.text() != text:
                item.setText(text)
                item.setToolTip(text)
    if count_changed:
        table.resizeColumnsToContents()
    table.shown_rows = [list(row) for row in rows]


def make_table(headers: list[str]) -> Table:
    table = Table(0, len(headers))
    table.setHorizontalHeaderLabels(headers)
    table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
    table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
    table.horizontalHeader().setStretchLastSection(True)
    table.verticalHeader().setVisible(False)
    return table
