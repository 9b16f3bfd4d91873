"""Desktop app: cold start to a visible window, and the GUI thread's longest stall while mining.

Prints one JSON object:

- ``cold_start_s``: a fresh ``python`` process opening the app (wallet present, password given, the
  node core starting behind the window) until its window is visible; median of ``--runs`` runs.
  ``baseline_cold_start_s``: the same for a bare ``QMainWindow`` (interpreter + Qt start-up), measured
  in the same run, so the app's own share is the difference. Target: under 2 s.
- ``stall``: the app in this process joins ``magnet devnet --keep-running`` (another process) as a
  miner and mines while a 10 ms QTimer heartbeat measures how late each tick fires (the GUI thread's
  stalls); ``baseline_stall``: the same heartbeat with an idle event loop first (what the machine's
  load alone costs). Target: longest stall under 100 ms.

Usage: QT_QPA_PLATFORM=offscreen python bench/gui_start.py [--runs 3] [--stall-seconds 90] [--no-devnet]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
PASSWORD = "bench password 123"
HEARTBEAT_MS = 10

BARE_WINDOW = """
import sys, time
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QMainWindow
app = QApplication(sys.argv[:1])
w = QMainWindow(); w.resize(1100, 760); w.show()
QTimer.singleShot(0, lambda: (print("visible", w.isVisible(), flush=True), app.quit()))
app.exec()
"""

APP_WINDOW = """
import sys
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication
from desktop.app import DesktopApp, parse_options
app = QApplication(sys.argv[:1])
d = DesktopApp(parse_options(["--data-dir", sys.argv[1], "--password-file", sys.argv[2]]))
d.open()
def shown():
    state = d.bridge.state.replace(" ", "_")
    print("visible", d.window.isVisible(), state, "torch" in sys.modules, flush=True)
    d.shutdown(); app.quit()
QTimer.singleShot(0, shown)
app.exec()
"""


def time_to_visible(code: str, *args: str) -> tuple[float, str]:
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code, *args], cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    elapsed = time.perf_counter() - started
    proc.stdout.close()
    proc.wait(120)
    if not line.startswith("visible True"):
        raise RuntimeError(f"the window did not show: {line!r}")
    return elapsed, line.strip()


def prepared_data_dir(root: Path, profile: Path | None = None, miner_toml: Path | None = None) -> Path:
    """A data folder with a wallet (fast scrypt), settings and a network profile."""
    from desktop.settings import DesktopSettings
    from node.profile import NetworkProfile
    from wallet.walletdir import WalletDir

    data = root / "app-data"
    if not (data / "wallet" / "keystore.json").exists():
        WalletDir(data / "wallet", scrypt_n=1024).create(PASSWORD)
    if profile is None:
        profile = root / "nowhere.json"
        NetworkProfile.new_devnet(1337, "http://127.0.0.1:9", "0x" + "11" * 20, "0x" + "22" * 20).save(
            profile
        )
    DesktopSettings(
        network_file=str(profile),
        miner_config_file=str(miner_toml or ""),
        pause_on_battery=False,
        first_run_done=True,
    ).save(data)
    (root / "password").write_text(PASSWORD + "\n")
    return data


def cold_start(root: Path, runs: int) -> dict[str, Any]:
    data = prepared_data_dir(root)
    bare = [time_to_visible(BARE_WINDOW)[0] for _ in range(runs)]
    app, lines = [], []
    for _ in range(runs):
        seconds, line = time_to_visible(APP_WINDOW, str(data), str(root / "password"))
        app.append(seconds)
        lines.append(line)
    return {
        "cold_start_s": round(statistics.median(app), 3),
        "cold_start_runs_s": [round(s, 3) for s in app],
        "baseline_cold_start_s": round(statistics.median(bare), 3),
        "baseline_runs_s": [round(s, 3) for s in bare],
        "core_state_when_visible": sorted({ln.split()[2] for ln in lines}),
        "torch_imported_when_visible": any(ln.split()[3] == "True" for ln in lines),
        "target_s": 2.0,
    }


class Heartbeat:
    """A QTimer every HEARTBEAT_MS; records how late each tick came (the GUI thread's stalls)."""

    def __init__(self) -> None:
        from PySide6.QtCore import QTimer

        self.lags_ms: list[float] = []
        self.phase = ""  # what was going on (the miner's state), named with each stall over 100 ms
        self.long_stalls: list[tuple[float, str]] = []
        self.last = time.perf_counter()
        self.timer = QTimer()
        self.timer.timeout.connect(self.tick)
        self.timer.start(HEARTBEAT_MS)

    def tick(self) -> None:
        now = time.perf_counter()
        lag = max(0.0, (now - self.last) * 1000 - HEARTBEAT_MS)
        self.lags_ms.append(lag)
        if lag > 100:
            self.long_stalls.append((round(lag, 1), self.phase))
        self.last = now

    def summary(self) -> dict[str, Any]:
        lags = sorted(self.lags_ms) or [0.0]
        return {
            "ticks": len(lags),
            "max_ms": round(lags[-1], 1),
            "p99_ms": round(lags[int(len(lags) * 0.99)], 1),
            "over_100ms": sum(lag > 100 for lag in lags),
            "stalls_over_100ms": [{"ms": ms, "miner_state": phase} for ms, phase in self.long_stalls],
        }


def run_for(app: Any, seconds: float, until: Any = None) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not (until and until()):
        app.processEvents()
        time.sleep(0.001)


def stall(root: Path, seconds: float) -> dict[str, Any]:
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(sys.argv[:1])
    idle = Heartbeat()
    run_for(app, 10)
    idle.timer.stop()
    devnet = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "node.cli",
            "devnet",
            "--keep-running",
            "--miners",
            "1",
            "--extra-miners",
            "1",
            "--train-seconds",
            str(int(seconds)),
            "--rows",
            "80",
            "--no-autoresearch",
            "--data-dir",
            str(root / "devnet"),
        ],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        return _mine_and_measure(app, root, seconds, idle)
    finally:
        devnet.send_signal(signal.SIGINT)
        try:
            devnet.wait(30)
        except subprocess.TimeoutExpired:
            devnet.kill()


def _mine_and_measure(app: Any, root: Path, seconds: float, idle: Heartbeat) -> dict[str, Any]:
    from desktop.app import DesktopApp, parse_options

    profile, toml = root / "devnet" / "network.json", root / "devnet" / "miner.toml"
    run_for(app, 120, lambda: profile.exists() and toml.exists())
    data = prepared_data_dir(root, profile, toml)
    states: list[str] = []
    beat: Heartbeat | None = None

    class Listen:
        def on_event_miner_state_changed(self, event: Any) -> None:
            states.append(event.state)
            if beat is not None:
                beat.phase = event.state

    desktop = DesktopApp(parse_options(["--data-dir", str(data), "--password-file", str(root / "password")]))
    desktop.bridge.register(Listen())
    desktop.open()
    run_for(app, 90, lambda: desktop.bridge.state == "running")
    assert desktop.window is not None
    beat = Heartbeat()  # from here on: the window is up, the core runs, the task is about to come
    beat.phase = "starting to mine"
    desktop.window.start_mining()
    run_for(app, seconds + 30, lambda: "waiting for results" in states)
    beat.timer.stop()
    desktop.shutdown()
    desktop.window.close()
    return {
        "stall": {
            **beat.summary(),
            "seconds": round(len(beat.lags_ms) * HEARTBEAT_MS / 1000, 1),
            "miner_states_seen": list(dict.fromkeys(states)),
        },
        "baseline_stall": {**idle.summary(), "what": "idle event loop, same process, 10 s"},
        "stall_target_ms": 100,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--stall-seconds", type=float, default=90.0, help="the devnet task's training window")
    parser.add_argument("--no-devnet", action="store_true", help="cold start only")
    args = parser.parse_args()
    os.environ.setdefault("MAGNET_CONFIG", str(REPO / "no-such-config.toml"))
    with tempfile.TemporaryDirectory(prefix="magnet-gui-bench-") as tmp:
        root = Path(tmp)
        result: dict[str, Any] = {"cpu_count": os.cpu_count(), "load_average": list(os.getloadavg())}
        result.update(cold_start(root, args.runs))
        if not args.no_devnet:
            result.update(stall(root, args.stall_seconds))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
