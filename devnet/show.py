"""Plain-text progress and results of a devnet run (works without a terminal: no cursor tricks)."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from node.logs import redact

BAR_WIDTH = 20
TOKEN = 10**18


class Printer:
    """Timestamped lines since the start; progress lines at most every ``every_s`` seconds."""

    def __init__(self, stream: TextIO | None = None, every_s: float = 5.0) -> None:
        self.stream = stream or sys.stdout
        self.started = time.monotonic()
        self.every_s = every_s
        self._last_progress = 0.0

    def line(self, text: str) -> None:
        elapsed = time.monotonic() - self.started
        print(redact(f"[{elapsed:6.1f}s] {text}"), file=self.stream, flush=True)

    def phase(self, name: str, detail: str = "") -> None:
        self.line(f"== {name}" + (f": {detail}" if detail else ""))

    def progress(self, text: str, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last_progress >= self.every_s:
            self._last_progress = now
            self.line(text)


def bar(percent: float) -> str:
    filled = max(0, min(BAR_WIDTH, round(percent / 100 * BAR_WIDTH)))
    return "[" + "#" * filled + "-" * (BAR_WIDTH - filled) + f"] {percent:5.1f}%"


def miner_line(index: int, svc: Any) -> str:
    svc.refresh_progress()
    state = svc.state
    if state in ("searching hyperparameters", "training"):
        eta = f" eta {svc.eta_s:.0f}s" if svc.eta_s else ""
        return f"miner-{index + 1}: {state} {bar(svc.progress)}{eta}"
    return f"miner-{index + 1}: {state}"


def tokens(units: int) -> str:
    return f"{units / TOKEN:,.4f}"


def leaderboard(rows: list[dict[str, Any]], names: dict[str, str]) -> list[str]:
    """Ranked results of one task: rank, miner, losses, score, reward."""
    lines = [
        f"{'rank':>4}  {'miner':<10} {'address':<42} {'test loss':>10} {'synth loss':>10} "
        f"{'points':>8} {'amount (e18)':>14}"
    ]
    for r in sorted(rows, key=lambda r: (r["rank"] == 0, r["rank"])):
        rank = str(r["rank"]) if r["rank"] else "-"
        lines.append(
            f"{rank:>4}  {names.get(r['miner'], 'outside'):<10} {r['miner']:<42} {r['test_loss']:>10.4f} "
            f"{r['synthetic_loss']:>10.4f} {r['score']:>8.3f} {tokens(r['amount']):>14}"
        )
    return lines
