"""Run by test_desktop_start.py in a fresh process: open the app, report what happened as JSON.

argv: data dir, password file. Prints one JSON line: seconds to a visible window, the core's state
at that moment, whether torch was imported then and once the core ran, and the core's final state.
"""

from __future__ import annotations

import json
import sys
import time

STARTED = time.perf_counter()

from PySide6.QtCore import QTimer  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from desktop.app import DesktopApp, parse_options  # noqa: E402


def main() -> None:
    app = QApplication(sys.argv[:1])
    desktop = DesktopApp(parse_options(["--data-dir", sys.argv[1], "--password-file", sys.argv[2]]))
    report: dict[str, object] = {}
    desktop.open()
    window = desktop.window
    assert window is not None

    def shown() -> None:
        report.update(
            visible_s=time.perf_counter() - STARTED,
            visible=window.isVisible(),
            core_state_when_visible=desktop.bridge.state,
            torch_when_visible="torch" in sys.modules,
        )

    def finish() -> None:
        if desktop.bridge.state in ("starting", "not started") and time.perf_counter() - STARTED < 90:
            QTimer.singleShot(200, finish)
            return
        report.update(
            core_state=desktop.bridge.state,
            torch_after_core="torch" in sys.modules,
            heavy_modules=sorted(m for m in ("torch", "transformers", "peft") if m in sys.modules),
        )
        desktop.shutdown()
        app.quit()

    QTimer.singleShot(0, shown)
    QTimer.singleShot(200, finish)
    app.exec()
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
