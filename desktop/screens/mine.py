"""Mine: the big Start / Stop button, the state in words, the current task, progress with ETA, the
live loss chart, the hardware card, earnings and the last accepted submission."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from desktop.charts import LazyChart
from desktop.hardware import HardwareReading
from desktop.screens.common import Card, clock, duration, short, tokens
from desktop.snapshot import Snapshot, start_of_today
from desktop.throttle import Throttled

WORKING = ("joining", "downloading", "searching hyperparameters", "training", "submitting")
PROGRESS_MS = 250  # step events come every few ms: the bar and its ETA are redrawn at most this often


class MineScreen(QWidget):
    start_clicked = Signal()
    stop_clicked = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.mining = False
        self.button = QPushButton("Start mining")
        self.button.setMinimumHeight(64)
        self.button.setStyleSheet("font-size: 20px; font-weight: bold;")
        self.button.setEnabled(False)  # until the node is running
        self.button.clicked.connect(self._clicked)
        self.state = QLabel("The node is starting...")
        self.state.setStyleSheet("font-size: 16px;")
        self.state.setWordWrap(True)
        self.task = QLabel("Current task: none")
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.eta = QLabel("")
        self.loss_chart = LazyChart("Training loss (live)", "loss", "step")
        self.hardware = QLabel("reading the hardware...")
        self.earnings = QLabel("")
        self.last_submission = QLabel("")
        self._loss_task = ""
        self._latest_progress: tuple[float, float] | None = None
        self._progress_redraw = Throttled(self._show_latest_progress, PROGRESS_MS, self)
        self._build()

    def _build(self) -> None:
        top = QVBoxLayout(self)
        top.addWidget(self.button)
        top.addWidget(self.state)
        top.addWidget(self.task)
        row = QHBoxLayout()
        row.addWidget(self.progress, 1)
        row.addWidget(self.eta)
        top.addLayout(row)
        top.addWidget(self.loss_chart, 1)
        cards = QGridLayout()
        hardware = Card("This computer")
        hardware.body.addWidget(self.hardware)
        money = Card("Earnings")
        money.body.addWidget(self.earnings)
        money.body.addWidget(self.last_submission)
        cards.addWidget(hardware, 0, 0)
        cards.addWidget(money, 0, 1)
        top.addLayout(cards)
        self.hardware.setAlignment(Qt.AlignmentFlag.AlignTop)

    def _clicked(self) -> None:
        self.button.setEnabled(False)  # until the core answers
        (self.stop_clicked if self.mining else self.start_clicked).emit()

    def set_node_ready(self, ready: bool, text: str = "") -> None:
        self.button.setEnabled(ready)
        if text:
            self.state.setText(text)

    def set_mining(self, mining: bool) -> None:
        self.mining = mining
        self.button.setText("Stop mining" if mining else "Start mining")
        self.button.setEnabled(True)

    def show_snapshot(self, snap: Snapshot) -> None:
        if snap.mining != self.mining:
            self.set_mining(snap.mining)
        self.show_state(snap.state, snap.detail)
        task = next((t for t in snap.tasks if t.task_id == snap.current_task), None)
        self.task.setText(
            f"Current task: {short(snap.current_task)} ({task.kind} on {task.model}), "
            f"commit due {clock(task.commit_by)}"
            if task
            else "Current task: none"
        )
        self.show_progress(snap.progress, snap.eta_s, snap.state in WORKING)
        today = snap.earned_since(start_of_today())
        self.earnings.setText(
            f"Today: {tokens(today)}\nTotal: {tokens(snap.earned)}\n"
            f"Claimable: {tokens(snap.claimable)}   Claimed: {tokens(snap.claimed)}"
        )
        self.last_submission.setText(f"Last accepted submission: {clock(snap.last_submission)}")

    def show_state(self, state: str, detail: str) -> None:
        self.state.setText(f"<b>{state.capitalize()}</b>" + (f" — {detail}" if detail else ""))

    def show_progress(self, percent: float, eta_s: float, busy: bool) -> None:
        self.progress.setValue(int(percent * 10))
        self.progress.setFormat(f"{percent:.1f}%")
        self.eta.setText(f"about {duration(eta_s)} left" if busy and eta_s > 0 else "")

    def show_hardware(self, reading: HardwareReading) -> None:
        self.hardware.setText("\n".join(reading.lines()))

    # --- core events ---------------------------------------------------------------------------
    def on_event_miner_state_changed(self, event: Any) -> None:
        self._latest_progress = None  # the new state's progress comes with it or with the next snapshot
        self.show_state(event.state, event.detail)

    def on_event_miner_progress(self, event: Any) -> None:
        """Every step's loss goes into the chart's data; the widgets are redrawn on timers."""
        self._latest_progress = (event.percent, event.eta_s)
        self._progress_redraw()
        if event.loss is None:
            return
        if event.task_id != self._loss_task:  # a new task: a new curve
            self._loss_task = event.task_id
            self.loss_chart.set_data([], [])
        x = float(event.step) if event.step else float(len(self.loss_chart.xs))
        self.loss_chart.append(x, float(event.loss))

    def _show_latest_progress(self) -> None:
        if self._latest_progress is not None:
            self.show_progress(*self._latest_progress, True)
            self._latest_progress = None

    def on_event_miner_committed(self, event: Any) -> None:
        self.state.setText(f"<b>Committed</b> — {event.seconds_before_deadline:.0f} s before the deadline")

    def loss_points(self) -> int:
        return len(self.loss_chart.ys)
