"""A stand-in for `python -m miner.train_child`: speaks its JSON-lines protocol, misbehaves on request.

The job's ``train.hparams.mode`` (or the environment's FAKE_CHILD_MODE): ``ok`` (progress, then a
result), ``stall`` (one progress line, then silence), ``crash_once`` (the first run dies without a
result, the next one succeeds), ``slow_search`` (silent while autoresearch is asked for, fine
without it), ``budget`` (trains, sleeping, for its whole budget). Like the real child it sends
``ready`` with its budget (deadline - now, times the budget fraction) first, after
FAKE_CHILD_STARTUP_S seconds of pretended library loading.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path


def emit(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


def main() -> int:
    spec = json.loads(Path(sys.argv[1]).read_text())
    train = spec["train"]
    mode = train["hparams"].get("mode") or os.environ.get("FAKE_CHILD_MODE", "ok")
    time.sleep(float(os.environ.get("FAKE_CHILD_STARTUP_S", "0")))
    budget = train.get("budget_s", 0.0)
    if spec.get("deadline"):
        budget = max(3.0, (spec["deadline"] - time.time()) * spec.get("budget_fraction", 1.0))
    emit(event="ready", budget_s=budget)
    out = Path(train["output_dir"])
    out.mkdir(parents=True, exist_ok=True)
    emit(event="phase", name="train")
    emit(event="progress", step=1, total_steps=2, percent=50.0, eta_s=1.0, loss=2.0)
    if mode == "stall" or (mode == "slow_search" and spec["autoresearch"]):
        time.sleep(3600)
    if mode == "budget":  # train for the whole budget, as the real loop does
        time.sleep(budget)
    marker = out / "crashed-once"
    if mode == "crash_once" and not marker.exists():
        marker.write_text("x")
        return 1
    bundle = out / "artifact.bundle"
    bundle.write_bytes(b"bundle")
    emit(event="result", type="train", bundle_path=str(bundle), resumed=marker.exists())
    return 0


if __name__ == "__main__":
    sys.exit(main())
