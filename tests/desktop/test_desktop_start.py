"""The start path: no torch in the GUI process, the window up before the core, the bridge's threads."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from desktop_helpers import PASSWORD, env_with

from desktop.bridge import CORE_RUNNING, CORE_STOPPED, CoreBridge
from desktop.settings import DesktopSettings

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


def test_importing_the_app_imports_no_torch() -> None:
    code = "import desktop.app, sys; assert 'torch' not in sys.modules, 'torch imported'; print('ok')"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, env=env_with(), timeout=120
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def network_profile(path: Path) -> Path:
    from node.profile import NetworkProfile

    NetworkProfile.new_devnet(
        chain_id=1337, rpc_url="http://127.0.0.1:9", registry="0x" + "11" * 20, token="0x" + "22" * 20
    ).save(path)
    return path


@pytest.mark.gui
@pytest.mark.slow
def test_the_window_shows_before_the_core_started_and_torch_stays_out(
    wallet_data_dir: Path, tmp_path: Path
) -> None:
    DesktopSettings(network_file=str(network_profile(tmp_path / "network.json")), first_run_done=True).save(
        wallet_data_dir
    )
    password_file = tmp_path / "password"
    password_file.write_text(PASSWORD + "\n")
    done = subprocess.run(
        [sys.executable, str(HERE / "start_app.py"), str(wallet_data_dir), str(password_file)],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=env_with(MAGNET_P2P__LISTEN_ADDRS="/ip4/127.0.0.1/tcp/0"),
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["visible"] and report["core_state_when_visible"] in ("not started", "starting"), report
    assert report["core_state"] == CORE_RUNNING, (report, done.stderr[-3000:])
    assert not report["torch_when_visible"] and report["heavy_modules"] == [], report
    print(f"window visible after {report['visible_s']:.2f} s (the core was still starting)")


class Listener:
    def __init__(self) -> None:
        self.threads: list[threading.Thread] = []

    def on_event_node_service_started(self, event: Any) -> None:
        self.threads.append(threading.current_thread())


@pytest.mark.gui
def test_the_bridge_delivers_core_events_and_results_on_the_gui_thread(qtbot: Any, tmp_path: Path) -> None:
    """A real NodeCore (no role): its events and a submitted call come back on the GUI thread."""
    from node.config import Config
    from node.core import NodeCore

    class Quiet:
        name = "quiet"

        async def run(self, core: Any, task_status: Any) -> None:
            import trio

            task_status.started()
            await trio.sleep_forever()

        async def stop(self) -> None:
            return None

    def build() -> NodeCore:
        config = Config()
        config.node.data_dir = str(tmp_path / "node")
        core = NodeCore(config, log_to_file=False)
        core.add_service(Quiet())
        return core

    bridge = CoreBridge()
    listener = Listener()
    bridge.register(listener)
    with qtbot.waitSignal(bridge.core_state, timeout=30_000, check_params_cb=lambda s, _t: s == CORE_RUNNING):
        bridge.start_core(build)
    qtbot.waitUntil(lambda: bool(listener.threads), timeout=5_000)
    assert listener.threads == [threading.main_thread()]  # emitted on the trio thread, handled here

    async def where() -> str:
        return threading.current_thread().name

    results: list[tuple[str, threading.Thread]] = []
    assert bridge.run_in_core(where, done=lambda name: results.append((name, threading.current_thread())))
    qtbot.waitUntil(lambda: bool(results), timeout=5_000)
    assert results == [("magnet-core", threading.main_thread())]

    errors: list[BaseException] = []
    bridge.run_in_thread(lambda: 1 / 0, failed=errors.append)
    qtbot.waitUntil(lambda: bool(errors), timeout=5_000)
    assert isinstance(errors[0], ZeroDivisionError)

    with qtbot.waitSignal(bridge.core_state, timeout=30_000, check_params_cb=lambda s, _t: s == CORE_STOPPED):
        bridge.stop_core()
    assert bridge.core is None and not bridge.run_in_core(where)
