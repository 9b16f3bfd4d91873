"""The data directory: resolution order, private layout, and the one-process lock."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from node.paths import DataDir, DataDirError, DataDirInUse, is_locked, resolve_data_dir


def test_resolution_order(tmp_path: Path) -> None:
    configured = tmp_path / "configured"
    env = {"MAGNET_HOME": str(tmp_path / "env-home")}
    assert resolve_data_dir(str(configured), env) == configured
    assert resolve_data_dir("", env) == tmp_path / "env-home"
    platform_default = resolve_data_dir("", {})
    assert platform_default.name == "magnet" and platform_default.is_absolute()


def test_layout_is_private(tmp_path: Path) -> None:
    root = tmp_path / "home"
    root.mkdir(mode=0o755)
    data = DataDir(root).create()
    for path in (data.root, data.wallet, data.blobs, data.logs, data.p2p, data.tmp):
        assert path.is_dir()
        assert stat.S_IMODE(path.stat().st_mode) == 0o700, path


def test_existing_layout_made_by_others_is_tightened(tmp_path: Path) -> None:
    # A service may create its sub-directory before the node locks the data dir (umask 022).
    root = tmp_path / "home"
    (root / "blobs").mkdir(parents=True, mode=0o755)
    (root / "validator").mkdir(mode=0o755)
    DataDir(root).create()
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    assert stat.S_IMODE((root / "blobs").stat().st_mode) == 0o700


def test_home_and_root_are_refused(tmp_path: Path) -> None:
    for path in (Path.home(), Path("/")):
        with pytest.raises(DataDirError, match="cannot be the data directory"):
            DataDir(path).create()


def test_file_in_the_way_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "home"
    blocker.write_text("not a directory")
    with pytest.raises(DataDirError, match="not a directory"):
        DataDir(blocker).create()


def test_second_lock_in_same_process_is_refused(tmp_path: Path) -> None:
    with DataDir(tmp_path / "home") as first:
        assert first.locked
        with pytest.raises(DataDirInUse) as info:
            DataDir(tmp_path / "home").lock()
        assert info.value.pid == os.getpid()
        assert str(tmp_path / "home") in str(info.value) and "MAGNET_HOME" in str(info.value)
    # Released: a new holder gets it.
    with DataDir(tmp_path / "home") as again:
        assert again.locked
    assert is_locked(tmp_path / "home") is None


def test_lock_held_by_another_process_names_its_pid(tmp_path: Path) -> None:
    root = tmp_path / "home"
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys
            from node.paths import DataDir
            from pathlib import Path
            d = DataDir(Path({str(root)!r})).lock()
            print("locked", flush=True)
            sys.stdin.read()
        """)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        assert is_locked(root) == holder.pid
        with pytest.raises(DataDirInUse) as info:
            DataDir(root).lock()
        assert info.value.pid == holder.pid
        assert f"process {holder.pid}" in str(info.value)
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=10)
        holder.stdout.close()  # type: ignore[union-attr]
    # The holder exited: the kernel dropped its lock.
    with DataDir(root) as data:
        assert data.locked
