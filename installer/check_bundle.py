"""`make test-installer`: the built bundle answers `--version` (the installed version: the spec copies
the package metadata), opens its window offscreen, refuses a ``--child`` module outside the allow-list,
and trains: ``magnet --child miner.train_child JOB`` fine-tunes the bundled base model for a few steps
on the bundled GSM8K subset and must write an artifact bundle (adapter safetensors + manifest).
``check_bundle.py [BINARY]`` checks another build; ``--python`` runs the training smoke with this Python
(``python -m miner.train_child``) instead, to compare."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BINARY = ROOT / "dist" / "magnet" / "magnet"


def run(*args: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [str(BINARY), *args], capture_output=True, text=True, timeout=180, env={**os.environ, **(env or {})}
    )
    if done.returncode != 0:
        raise SystemExit(f"{BINARY} {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def train_smoke(command: list[str], work: Path, steps: int = 3) -> dict[str, Any]:
    """Train the bundled base model ``steps`` steps through ``command`` (+ job file); the result event."""
    job = {
        "train": {
            "kind": "instruct",
            "base_model_dir": str(ROOT / "assets" / "base-model"),
            "train_file": str(ROOT / "assets" / "datasets" / "gsm8k_subset.jsonl"),
            "output_dir": str(work / "adapter"),
            "hparams": {"max_length": 64, "micro_batch_size": 2},
            "budget_s": 120.0,
            "max_steps": steps,
            "device": "cpu",
            "threads": 2,
        },
        "autoresearch": False,
    }
    job_file = work / "job.json"
    job_file.write_text(json.dumps(job), encoding="utf-8")
    started = time.monotonic()
    done = subprocess.run([*command, str(job_file)], capture_output=True, text=True, timeout=600)
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    results = [e for e in events if e.get("event") == "result"]
    if done.returncode != 0 or not results:
        output = f"{done.stdout}\n{done.stderr}"
        raise SystemExit(f"{command} exited {done.returncode} without a result:\n{output}")
    result = results[-1]
    from protocol.bundle import extract_bundle

    extracted = work / "extracted"
    extract_bundle(result["bundle_path"], extracted)  # checks every file's hash against the manifest
    files = sorted(p.name for p in extracted.rglob("*") if p.is_file())
    assert any(name.endswith(".safetensors") for name in files), files
    assert result["steps"] == steps, result
    return {"seconds": round(time.monotonic() - started, 1), "steps": result["steps"], "files": files,
            "metrics": result.get("metrics")}


def main() -> int:
    global BINARY
    args = sys.argv[1:]
    if args[:1] == ["--python"]:
        with tempfile.TemporaryDirectory() as work:
            print(json.dumps(train_smoke([sys.executable, "-m", "miner.train_child"], Path(work))))
        return 0
    if args:
        BINARY = Path(args[0]).resolve()
    if not BINARY.exists():
        print(f"no bundle at {BINARY}: run `make installer` first", file=sys.stderr)
        return 1
    from importlib.metadata import version as dist_version

    version = run("--version").strip()
    assert version == f"magnet {dist_version('magnet')}", f"{version} (without its metadata: 0+unknown)"
    print(f"ok: {version}")
    with tempfile.TemporaryDirectory() as home:
        out = run(env={"QT_QPA_PLATFORM": "offscreen", "MAGNET_HOME": home, "MAGNET_DESKTOP_SMOKE": "1"})
    assert "magnet: window visible:" in out, out
    print(f"ok: {out.strip().splitlines()[-1]}")
    refused = subprocess.run([str(BINARY), "--child", "os"], capture_output=True, text=True, timeout=180)
    assert refused.returncode == 2 and "not one of them" in refused.stderr, refused
    print("ok: --child refuses a module outside the allow-list")
    with tempfile.TemporaryDirectory() as work:
        trained = train_smoke([str(BINARY), "--child", "miner.train_child"], Path(work))
    print(f"ok: the bundle trained: {json.dumps(trained)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
