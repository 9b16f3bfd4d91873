"""`magnet devnet --keep-running` in another process, its output collected line by line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


class DevnetProcess:
    def __init__(self, root: Path, *options: str) -> None:
        self.root = root
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "node.cli", "devnet", "--keep-running", "--data-dir", str(root), *options],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def output(self) -> str:
        return "\n".join(self.lines[-60:])

    def wait_for_files(self, timeout: float) -> tuple[Path, Path]:
        profile, miner_toml = self.root / "network.json", self.root / "miner.toml"
        deadline = time.monotonic() + timeout
        while not (profile.exists() and miner_toml.exists()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the devnet wrote no profile; output:\n{self.output()}")
            time.sleep(0.2)
        return profile, miner_toml

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
