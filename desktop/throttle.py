"""Redraw at most so often: the core reports faster than a person can read, the GUI thread must not
repaint at that pace (a repaint is ms of the GUI thread; on busy cores, tens of ms)."""

from __future__ import annotations

import time
from collections.abc import Callable

from PySide6.QtCore import QObject, QTimer


class Throttled:
    """``throttled()`` runs ``fn()`` at once when its last run is ``interval_ms`` ago or more, else
    once when the interval is over, for every request made meanwhile. ``fn`` reads the latest data."""

    def __init__(self, fn: Callable[[], None], interval_ms: int, parent: QObject) -> None:
        self.fn, self.interval_s = fn, interval_ms / 1000
        self.runs = 0
        self._last = float("-inf")
        self._timer = QTimer(parent)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self._run)

    def __call__(self) -> None:
        if self._timer.isActive():
            return  # already due: that run shows this request's data too
        wait_s = self._last + self.interval_s - time.monotonic()
        if wait_s <= 0:
            self._run()
        else:
            self._timer.start(max(1, round(wait_s * 1000)))

    def cancel(self) -> None:
        self._timer.stop()

    def _run(self) -> None:
        self._last = time.monotonic()
        self.runs += 1
        self.fn()
