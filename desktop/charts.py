"""Charts with pyqtgraph, which takes ~1-2 s to import: it is imported on a pool thread after the
window is up, and each screen gets its plot once that is done (a placeholder shows meanwhile)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget


def _import_pyqtgraph() -> Any:
    import pyqtgraph

    pyqtgraph.setConfigOptions(antialias=True, background="w", foreground="k")
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
        self.setMinimumHeight(160)
        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)
        self._placeholder = QLabel(f"{title}: loading the chart...")
        self._layout.addWidget(self._placeholder)

    def attach(self, pg: Any) -> None:
        self.plot = pg.PlotWidget(title=self.title)
        self.plot.setLabel("left", self.y_label)
        self.plot.setLabel("bottom", self.x_label)
        self.plot.showGrid(x=True, y=True, alpha=0.3)
        self.curve = self.plot.plot(self.xs, self.ys, pen=pg.mkPen("#1f6feb", width=2))
        self._layout.removeWidget(self._placeholder)
        self._placeholder.deleteLater()
        self._layout.addWidget(self.plot)

    def set_data(self, xs: list[float], ys: list[float]) -> None:
        self.xs, self.ys = list(xs), list(ys)
        if self.curve is not None:
            self.curve.setData(self.xs, self.ys)

    def append(self, x: float, y: float, keep: int = 2000) -> None:
        self.xs.append(x)
        self.ys.append(y)
        del self.xs[:-keep], self.ys[:-keep]
        if self.curve is not None:
            self.curve.setData(self.xs, self.ys)


def load_charts(run_in_thread: Callable[..., None], charts: list[LazyChart]) -> None:
    """Import pyqtgraph off the GUI thread, then give every chart its plot (on the GUI thread)."""

    def attach_all(pg: Any) -> None:
        for chart in charts:
            chart.attach(pg)

    run_in_thread(_import_pyqtgraph, done=attach_all)
