"""`python -m trainer.diloco.child SETUP.json`: a DiLoCo miner's inner loop in its own process.

The miner service's node process runs the event loop, the P2P host and the chain client; the inner
AdamW steps of a round (seconds of full CPU) run here instead, as the other training jobs run in
``miner.train_child``: under the miner's thread cap and niceness, with no GIL shared with the host,
and a crash costs this process only. It lives for the whole run, because the miner's AdamW moments
and its compression residual carry from round to round (``DilocoMiner``); a restarted child starts
them fresh, as a miner that has just joined does.

Setup file: ``{"diloco": {"base_model", "datasets", "texts"}, "folder": path, "address": "0x..",
"threads": n | null}``; the child builds the run's world there (``trainer.diloco.world.run_world``:
the same texts, tokenizer and shards as the validator's) and answers ``{"event": "ready", "window":
tokens per row, "shards": n}``.

Then one JSON request per line on stdin, answered by one JSON event per line on stdout:
``{"op": "round", "spec": <spec_to_json>, "model_file": path, "out_file": path}`` ->
``{"event": "done", "round", "bytes", "seconds"}`` once the encoded contribution is in ``out_file``,
or ``{"event": "error", "message"}``. The model file came from the network: its sha256 must be the
round's and ``params_from_bytes`` refuses other names, shapes, dtypes and non-finite values. End of
stdin ends the child.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import IO, Any


def _emit(out: IO[str], event: str, **fields: Any) -> None:
    out.write(json.dumps({"event": event, **fields}) + "\n")
    out.flush()


def serve(setup: dict[str, Any], requests: IO[str], out: IO[str]) -> int:
    from trainer.config import DilocoConfig
    from trainer.diloco.miner import DilocoMiner
    from trainer.diloco.params import params_from_bytes
    from trainer.diloco.spec import spec_from_json
    from trainer.diloco.world import run_world
    from trainer.worker import apply_thread_cap

    apply_thread_cap(setup.get("threads"))
    raw = setup["diloco"]
    cfg = DilocoConfig(base_model=raw["base_model"], datasets=raw["datasets"], texts=int(raw["texts"]))
    world = run_world(cfg, Path(setup["folder"]))
    worker = DilocoMiner(str(setup["address"]), world.model, world.shards)
    template = dict(world.params)
    window = int(world.shards.shards[0].shape[1]) if world.shards.shards else 0
    _emit(out, "ready", window=window, shards=len(world.shards.shards))
    for line in requests:
        if not line.strip():
            continue
        try:
            request = json.loads(line)
            if request.get("op") != "round":
                raise ValueError(f"unknown request {request.get('op')!r}; this child runs rounds only")
            spec = spec_from_json(request["spec"])
            data = Path(request["model_file"]).read_bytes()
            if hashlib.sha256(data).hexdigest() != spec.base_model_sha256:
                raise ValueError("the global model file does not match the round's sha256")
            started = time.monotonic()
            blob = worker.contribute(spec, params_from_bytes(data, template))
            target = Path(request["out_file"])
            partial = target.with_name(target.name + ".part")
            partial.write_bytes(blob)
            os.replace(partial, target)
            _emit(out, "done", round=spec.round, bytes=len(blob), seconds=time.monotonic() - started)
        except Exception as exc:  # one bad round must not end the run: the next brings its own model
            _emit(out, "error", message=f"{type(exc).__name__}: {exc}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer.diloco.child")
    parser.add_argument("setup", type=Path)
    args = parser.parse_args(argv)
    out = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)  # libraries print to fd 1: keep the event stream clean
    sys.stdout = sys.stderr
    try:
        setup = json.loads(args.setup.read_text(encoding="utf-8"))
        return serve(setup, sys.stdin, out)
    except Exception as exc:
        _emit(out, "error", message=f"{type(exc).__name__}: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
