"""Draw MAGNET's icon with QPainter: assets/icons/magnet-<size>.png (16..512) and the same design as
assets/icons/magnet.svg. Run: QT_QPA_PLATFORM=offscreen python installer/make_icons.py"""

from __future__ import annotations

import sys
from pathlib import Path

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QGuiApplication, QImage, QPainter, QPainterPath, QPen

ICONS = Path(__file__).resolve().parent.parent / "assets" / "icons"
SIZES = (16, 24, 32, 48, 64, 128, 256, 512)
BACKGROUND, MAGNET_RED, POLE, SPARK = "#14213d", "#e63946", "#e5e5e5", "#ffd166"

SVG = f"""<svg xmlns="http://www.w3.org/2000/svg" width="512" height="512" viewBox="0 0 100 100">
  <rect x="4" y="4" width="92" height="92" rx="20" fill="{BACKGROUND}"/>
  <path d="M26 22 V52 A24 24 0 0 0 74 52 V22" fill="none" stroke="{MAGNET_RED}" stroke-width="16"/>
  <rect x="18" y="16" width="16" height="14" fill="{POLE}"/>
  <rect x="66" y="16" width="16" height="14" fill="{POLE}"/>
  <circle cx="50" cy="30" r="6" fill="{SPARK}"/>
</svg>
"""


def draw(size: int) -> QImage:
    """The icon at ``size`` pixels: a red horseshoe magnet with silver poles and a spark, on navy."""
    image = QImage(size, size, QImage.Format.Format_ARGB32)
    image.fill(Qt.GlobalColor.transparent)
    p = QPainter(image)
    p.setRenderHint(QPainter.RenderHint.Antialiasing)
    p.scale(size / 100, size / 100)  # drawn on the SVG's 100x100 grid
    p.setPen(Qt.PenStyle.NoPen)
    p.setBrush(QColor(BACKGROUND))
    p.drawRoundedRect(QRectF(4, 4, 92, 92), 20, 20)
    path = QPainterPath(QPointF(26, 22))
    path.lineTo(26, 52)
    path.arcTo(QRectF(26, 28, 48, 48), 180, 180)
    path.lineTo(74, 22)
    p.setBrush(Qt.BrushStyle.NoBrush)
    p.setPen(QPen(QColor(MAGNET_RED), 16, Qt.PenStyle.SolidLine, Qt.PenCapStyle.FlatCap))
    p.drawPath(path)
    p.setPen(Qt.PenStyle.NoPen)
    p.setBrush(QColor(POLE))
    p.drawRect(QRectF(18, 16, 16, 14))
    p.drawRect(QRectF(66, 16, 16, 14))
    p.setBrush(QColor(SPARK))
    p.drawEllipse(QPointF(50, 30), 6, 6)
    p.end()
    return image


def main() -> int:
    app = QGuiApplication.instance() or QGuiApplication(sys.argv[:1])
    ICONS.mkdir(parents=True, exist_ok=True)
    (ICONS / "magnet.svg").write_text(SVG, encoding="utf-8")
    for size in SIZES:
        if not draw(size).save(str(ICONS / f"magnet-{size}.png")):
            print(f"could not write magnet-{size}.png", file=sys.stderr)
            return 1
    print(f"icons written to {ICONS}")
    del app
    return 0


if __name__ == "__main__":
    sys.exit(main())
