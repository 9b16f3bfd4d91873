"""`magnet devnet --kind diloco` runs rounds end to end (in process) and exits 0 with losses and ratings."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent.parent


@pytest.mark.slow
def test_magnet_devnet_kind_diloco_runs_rounds() -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, node.cli; sys.exit(node.cli.main())",
            "devnet",
            "--kind",
            "diloco",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.splitlines()
    assert [ln.split(":")[0] for ln in lines if ln.startswith("round ")] == ["round 1", "round 2", "round 3"]
    assert "  noise     excluded: no_improvement" in lines
    assert "  leaver    excluded: left" in lines
    ratings = lines[lines.index("ratings (OpenSkill ordinal, best first):") + 1 :]
    assert ratings[-1].split()[0] == "noise"
