"""Start at login: an XDG autostart entry on Linux (``~/.config/autostart/magnet.desktop``).

Other platforms need their own mechanism (a LaunchAgent plist on macOS, a Run registry key on
Windows); ``supported()`` says False there and the Settings screen greys the box out.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

ENTRY_NAME = "magnet.desktop"


def supported() -> bool:
    return sys.platform.startswith("linux")


def autostart_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "autostart"


def launch_command() -> list[str]:
    """The command that opens the app: the bundle's binary, or this Python running the CLI."""
    if getattr(sys, "frozen", False):
        return [sys.executable]
    return [sys.executable, "-m", "node.cli"]


def entry_text(command: list[str]) -> str:
    return (
        "[Desktop Entry]\nType=Application\nName=MAGNET\nComment=Fine-tune models, earn rewards\n"
        f"Exec={shlex.join(command)}\nIcon=magnet\nTerminal=false\nX-GNOME-Autostart-enabled=true\n"
    )


def set_start_at_login(enabled: bool) -> Path:
    path = autostart_dir() / ENTRY_NAME
    if enabled:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(entry_text(launch_command()), encoding="utf-8")
    elif path.exists():
        path.unlink()
    return path


def starts_at_login() -> bool:
    return (autostart_dir() / ENTRY_NAME).exists()
