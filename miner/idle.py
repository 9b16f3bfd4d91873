"""How long the user has been away from keyboard and mouse, where the platform can tell.

``IdleSource.idle_seconds()`` returns None when it cannot tell; the policy then refuses idle-only
mining with a reason rather than guessing. The real source asks X11 through ``xprintidle`` when
that program and a DISPLAY exist; other platforms (Wayland, macOS, Windows) have none here yet.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import Protocol


class IdleSource(Protocol):
    def idle_seconds(self) -> float | None: ...

    def describe(self) -> str: ...


class FakeIdleSource:
    """For tests and the devnet: idle time set by hand."""

    def __init__(self, idle_s: float | None = None) -> None:
        self.idle_s = idle_s

    def idle_seconds(self) -> float | None:
        return self.idle_s

    def describe(self) -> str:
        return "fake idle source"


class NoIdleSource:
    def idle_seconds(self) -> float | None:
        return None

    def describe(self) -> str:
        return "none: this platform cannot tell when the user is idle (X11 with xprintidle can)"


class XprintidleSource:
    """X11 idle time from the ``xprintidle`` program (milliseconds on stdout)."""

    def __init__(self, program: str) -> None:
        self.program = program

    def idle_seconds(self) -> float | None:
        try:
            done = subprocess.run([self.program], capture_output=True, text=True, timeout=2, check=True)
            return int(done.stdout.strip()) / 1000.0
        except (OSError, subprocess.SubprocessError, ValueError):
            return None

    def describe(self) -> str:
        return f"X11 idle time via {self.program}"


def system_idle_source() -> IdleSource:
    """The best idle source this machine offers (X11 + xprintidle), else one that cannot tell."""
    program = shutil.which("xprintidle")
    if program and os.environ.get("DISPLAY"):
        return XprintidleSource(program)
    return NoIdleSource()
