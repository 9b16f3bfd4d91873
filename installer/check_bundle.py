"""`make test-installer`: the built bundle answers `--version` (the installed version: the spec copies
the package metadata) and opens its window offscreen. ``check_bundle.py [BINARY]`` checks another build."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BINARY = ROOT / "dist" / "magnet" / "magnet"


def run(*args: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [str(BINARY), *args], capture_output=True, text=True, timeout=180, env={**os.environ, **(env or {})}
    )
    if done.returncode != 0:
        raise SystemExit(f"{BINARY} {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def main() -> int:
    global BINARY
    if len(sys.argv) > 1:
        BINARY = Path(sys.argv[1]).resolve()
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
