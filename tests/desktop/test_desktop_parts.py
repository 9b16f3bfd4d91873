"""The app's small parts: settings onto the node config, start at login, errors in words."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from desktop import autostart
from desktop.errors import in_words
from desktop.settings import DesktopSettings


def test_settings_round_trip_and_apply_onto_the_node_config(tmp_path: Path) -> None:
    from node.config import Config

    toml = tmp_path / "miner.toml"
    toml.write_text(
        '[miner]\nmax_threads = 1\nautoresearch = false\n\n[p2p]\nlisten_addrs = ["/ip4/127.0.0.1/tcp/0"]\n'
    )
    saved = DesktopSettings(
        network_file="/x/network.json",
        miner_config_file=str(toml),
        max_ram_mb=1024,
        idle_only=True,
        schedule=["mon-fri 22:00-07:00"],
        enabled_kinds=["instruct"],
    )
    saved.save(tmp_path)
    loaded = DesktopSettings.load(tmp_path)
    assert loaded == saved
    config = Config()
    loaded.apply_to(config)
    m = config.miner
    assert m.autostart is False  # the app waits for the Start button
    assert (m.max_threads, m.max_ram_mb, m.autoresearch) == (1, 1024, False)  # 0 keeps the file's threads
    assert m.idle_only and m.schedule == ["mon-fri 22:00-07:00"] and m.enabled_kinds == ["instruct"]
    assert config.node.network == "/x/network.json" and config.p2p.listen_addrs == ["/ip4/127.0.0.1/tcp/0"]


def test_an_unreadable_settings_file_means_a_fresh_start(tmp_path: Path) -> None:
    (tmp_path / "desktop.json").write_text("{not json")
    assert DesktopSettings.load(tmp_path) == DesktopSettings()


@pytest.mark.skipif(not autostart.supported(), reason="XDG autostart is Linux only")
def test_start_at_login_writes_and_removes_an_xdg_autostart_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    path = autostart.set_start_at_login(True)
    assert path == tmp_path / "autostart" / "magnet.desktop" and autostart.starts_at_login()
    text = path.read_text()
    assert "[Desktop Entry]" in text and "Exec=" in text and "node.cli" in text
    autostart.set_start_at_login(False)
    assert not path.exists() and not autostart.starts_at_login()


def test_errors_say_what_happened_and_what_to_do(tmp_path: Path) -> None:
    import errno

    from node.paths import DataDirInUse
    from wallet.errors import WrongPassword

    assert in_words(WrongPassword("MAC mismatch")).startswith("The password is not right. Type it again")
    busy = in_words(DataDirInUse(tmp_path, 4242))
    assert "Another MAGNET is already running" in busy and "4242" in busy
    assert "disk is full" in in_words(OSError(errno.ENOSPC, "No space left on device"))
    assert in_words(ValueError("boom")).startswith("Something went wrong: boom")


def test_secrets_never_reach_an_error_message() -> None:
    key = "0x" + "4c" * 32
    assert key not in in_words(RuntimeError(f"failed with key {key}"))


def test_a_data_folder_chosen_in_settings_is_used_at_the_next_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from desktop.app import parse_options
    from desktop.settings import choose_data_dir

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv("MAGNET_HOME", raising=False)
    choose_data_dir(tmp_path / "chosen")
    assert parse_options([]).data_dir == (tmp_path / "chosen").resolve()
    assert parse_options(["--data-dir", str(tmp_path / "given")]).data_dir == (tmp_path / "given").resolve()
    monkeypatch.setenv("MAGNET_HOME", str(tmp_path / "home"))
    assert parse_options([]).data_dir == (tmp_path / "home").resolve()


class _InstantCore:
    """A core whose calls are already finished when `submit` returns (the race a fast snapshot hits)."""

    running = True

    def submit(self, fn: Any, *args: Any) -> Any:
        import asyncio
        import concurrent.futures

        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        future.set_result(asyncio.run(fn(*args)))
        return future


def test_a_call_finished_before_run_in_core_returns_is_delivered_later_and_never_lost(qtbot: Any) -> None:
    """Regression: `done` ran inside run_in_core(), before the window marked its snapshot as pending,
    so the flag stayed "pending" for ever and the Wallet screen never showed the receipts."""
    from desktop.bridge import CoreBridge

    bridge = CoreBridge()
    bridge.core = _InstantCore()  # type: ignore[assignment]
    got: list[int] = []

    async def answer() -> int:
        return 42

    assert bridge.run_in_core(answer, done=got.append)
    assert got == []  # not re-entrantly, inside the call
    qtbot.waitUntil(lambda: got == [42], timeout=2_000)

    pending = {"flag": False}
    shown: list[int] = []

    def request() -> None:  # the pattern desktop/window.py request_snapshot follows
        if pending["flag"]:
            return
        pending["flag"] = True
        if not bridge.run_in_core(answer, done=lambda v: (shown.append(v), pending.update(flag=False))):
            pending["flag"] = False

    for _ in range(3):
        request()
        qtbot.waitUntil(lambda: not pending["flag"], timeout=2_000)
    assert shown == [42, 42, 42]
