"""The GUI thread stays live and the GUI process stays up: Qt bindings that keep None's refcount,
chart redraws coalesced, no heavy imports on the pool while mining."""

from __future__ import annotations

import sys
from typing import Any

from PySide6.QtCore import QPointF
from PySide6.QtGui import QImage, QPainter
from PySide6.QtWidgets import QLabel


def test_qt_calls_returning_nothing_keep_the_refcount_of_none(qtbot: Any) -> None:
    """PySide6 6.12.0 on Python 3.11 dropped a reference to None on every call that returns nothing
    (QLabel.setText, QPainter.drawLine...): after enough calls None was deallocated and the app
    aborted (``Fatal Python error: none_dealloc``, at exit or mid-run while a chart repainted)."""
    label = QLabel()
    qtbot.addWidget(label)
    image = QImage(8, 8, QImage.Format.Format_ARGB32)
    painter = QPainter(image)
    try:
        before = sys.getrefcount(None)
        for _ in range(200):
            label.setText("x")
            painter.drawLine(QPointF(0, 0), QPointF(1, 1))
        lost = before - sys.getrefcount(None)
    finally:
        painter.end()
    assert lost < 50, f"{lost} references to None lost in 400 Qt calls: a PySide6 refcount bug (pin it)"
