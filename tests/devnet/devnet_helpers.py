"""Helpers for the devnet tests: `magnet` subprocesses whose output lines are collected as they come."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "correct horse battery staple"


class Proc:
    """A `magnet ...` child; ``lines`` fills from its stdout and stderr in a reader thread."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "node.cli", *args],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, text: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = next((line for line in self.lines if text in line), None)
            if found is not None:
                return found
            if self.proc.poll() is not None and not self._reader.is_alive():
                break
            time.sleep(0.2)
        raise AssertionError(
            f"{text!r} not seen within {timeout:.0f} s; output:\n" + "\n".join(self.lines[-60:])
        )

    def stop(self, sig: int = signal.SIGINT, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        code = self.proc.wait()
        self._reader.join(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return code


def make_wallet(data_dir: Path) -> Path:
    """A miner wallet in ``data_dir`` (via `magnet init`), and the password file that opens it."""
    password_file = data_dir.parent / f"{data_dir.name}.password"
    password_file.write_text(PASSWORD + "\n")
    password_file.chmod(0o600)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "node.cli",
            "init",
            "--data-dir",
            str(data_dir),
            "--password-file",
            str(password_file),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "MAGNET_WALLET__SCRYPT_N": "1024"},
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return password_file
