"""Charts with pyqtgraph, which takes ~1-2 s to import: it is imported on a pool thread after the
window is up, and each screen gets its plot once that is done (a placeholder shows meanwhile).

A repaint is GUI-thread time, so charts are drawn cheaply and not too often:

- no grid and no antialiasing: a loss-chart repaint took ~18 ms of the GUI thread with pyqtgraph's
  translucent grid (its lines, replayed by each AxisItem, were ~15 ms of it) and ~3 ms without, on
  these cores when idle; with the training processes on the same two cores, 3-5 times that. Those
  repaints were the GUI stalls over 100 ms seen while a devnet task trained (bench/gui_start.py);
- at most one redraw per ``REDRAW_MS`` (``Throttled``): the trainer reports every step, many a
  second on a small model, and the Wallet screen sets its series with every snapshot (unchanged
  data is not redrawn at all).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from desktop.throttle import Throttled

REDRAW_MS = 500


def _import_pyqtgraph() -> Any:
    import pyqtgraph

    pyqtgraph.setConfigOptions(antialias=False, background="w", foreground="k")
    return pyqtgraph


class LazyChart(QWidget):
    """A line chart that appears once pyqtgraph is loaded; data set before that is kept."""

    def __init__(self, title: str, y_label: str, x_label: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.title, self.y_label, self.x_label = title, y_label, x_label
        self.plot: Any = None
        self.curve: Any = None
        self.xs: list[float] = []
        self.ys: list[float] = []
        self.redraw = Throttled(self._draw, REDRAW_MS, self)
        self.setMinimumHeight(160)
        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)
        self._placeholder = QLabel(f"{title}: loading the chart...")
        self._layout.addWidget(self._placeholder)

    def attach(self, pg: Any) -> None:
        self.plot = pg.PlotWidget(title=self.title)
        self.plot.setLabel("left", self.y_label)
        self.plot.setLabel("bottom", self.x_label)
        self.curve = self.plot.plot(self.xs, self.ys, pen=pg.mkPen("#1f6feb", width=2))
        self._layout.removeWidget(self._placeholder)
        self._placeholder.deleteLater()
        self._layout.addWidget(self.plot)

    def set_data(self, xs: list[float], ys: list[float]) -> None:
        if list(xs) == self.xs and list(ys) == self.ys:
            return  # the Wallet screen sets its whole series with every snapshot
        self.xs, self.ys = list(xs), list(ys)
        self._schedule()

    def append(self, x: float, y: float, keep: int = 2000) -> None:
        self.xs.append(x)
        self.ys.append(y)
        del self.xs[:-keep], self.ys[:-keep]
        self._schedule()

    def _schedule(self) -> None:
        if self.curve is not None:
            self.redraw()

    def _draw(self) -> None:
        if self.curve is not None:
            self.curve.setData(self.xs, self.ys)


def load_charts(run_in_thread: Callable[..., None], charts: list[LazyChart]) -> None:
    """Import pyqtgraph off the GUI thread, then give every chart its plot (on the GUI thread)."""

    def attach_all(pg: Any) -> None:
        for chart in charts:
            chart.attach(pg)

    run_in_thread(_import_pyqtgraph, done=attach_all)
