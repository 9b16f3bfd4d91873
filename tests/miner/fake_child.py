"""A stand-in for `python -m miner.train_child`: speaks its JSON-lines protocol, misbehaves on request.

The job's ``train.hparams.mode``: ``ok`` (progress, then a result), ``stall`` (one progress line,
then silence), ``crash_once`` (the first run dies without a result, the next one succeeds),
``slow_search`` (silent while autoresearch is asked for, fine without it).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def emit(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


def main() -> int:
    spec = json.loads(Path(sys.argv[1]).read_text())
    train = spec["train"]
    mode = train["hparams"]["mode"]
    out = Path(train["output_dir"])
    out.mkdir(parents=True, exist_ok=True)
    emit(event="phase", name="train")
    emit(event="progress", step=1, total_steps=2, percent=50.0, eta_s=1.0, loss=2.0)
    if mode == "stall" or (mode == "slow_search" and spec["autoresearch"]):
        time.sleep(3600)
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
