"""Tasks: every task seen on the network, what it is, and whether (and why) this computer takes it."""

from __future__ import annotations

from typing import Any

from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from desktop.screens.common import clock, fill_table, make_table, short
from desktop.snapshot import Snapshot

HEADERS = ["Task", "Kind", "Model", "Size", "Commit by", "Validator", "Reward weight", "Status", "Fits here?"]


class TasksScreen(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        self.summary = QLabel("No task seen yet: tasks appear here as validators announce them.")
        self.table = make_table(HEADERS)
        layout.addWidget(self.summary)
        layout.addWidget(self.table)

    def show_snapshot(self, snap: Snapshot) -> None:
        rows = [
            [
                short(t.task_id),
                t.kind,
                t.model,
                f"{t.size_bytes / 1e6:.1f} MB",
                clock(t.commit_by),
                short(t.validator),
                f"{t.reward_weight:.3f}",
                t.phase,
                ("yes: " if t.fits else "no: ") + t.reason,
            ]
            for t in reversed(snap.tasks)
        ]
        fill_table(self.table, rows)
        if rows:
            fitting = sum(t.fits for t in snap.tasks)
            self.summary.setText(f"{len(rows)} task(s) seen, {fitting} fit this computer.")

    def on_event_miner_task_seen(self, event: Any) -> None:
        self.summary.setText(f"New task {short(event.task_id)} ({event.task_kind}): {event.reason}")
