"""Devnet benchmark: wall time of each phase of one devnet task, and how the total grows with the
number of miners (1, 3 and 6 by default). Prints one JSON object.

    python bench/devnet.py [--miners 1,3,6] [--train-seconds 90]

Each run is a full `magnet devnet` run (chain, validator, miners, one instruct task to claimed
rewards) in a fresh temporary directory. CPU-heavy: every miner trains in its own process.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devnet.main import run_devnet, summary
from devnet.network import DevnetSettings


def one_run(miners: int, train_s: float) -> dict[str, object]:
    settings = DevnetSettings(miners=miners, train_s=train_s)
    with tempfile.TemporaryDirectory(prefix="magnet-bench-devnet-") as tmp:
        started = time.monotonic()
        result = run_devnet(Path(tmp), settings, stream=io.StringIO())
        wall = time.monotonic() - started
    report = summary(result)
    report["miners"] = miners
    report["wall_s"] = round(wall, 1)
    report["rewarded_miners"] = len(result.expected)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--miners", default="1,3,6", help="comma-separated miner counts (default 1,3,6)")
    parser.add_argument("--train-seconds", type=float, default=90.0)
    args = parser.parse_args()
    runs = [one_run(int(n), args.train_seconds) for n in args.miners.split(",")]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    print(
        json.dumps(
            {
                "machine": {"cpus": os.cpu_count(), "load_1min_at_end": load},
                "train_seconds": args.train_seconds,
                "runs": runs,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
