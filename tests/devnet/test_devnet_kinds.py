"""`magnet devnet --kind K` end to end for the kinds other than instruct (tests/devnet covers instruct).

Each run is the real thing on 127.0.0.1: embedded chain, validator, one miner, the bundled base model
and the kind's bundled open data (HH-RLHF for dpo), through training, commit,
reveal, sandboxed evaluation, receipts, the epoch root, proofs and a claim. The devnet itself exits
non-zero when a receipt does not verify, a balance differs from the epoch amounts or a miner earned
nothing, so its exit code and summary are the assertions.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slow, pytest.mark.network]


# bitnet failed twice under load ~7 on 2026-11-22 (no commitment by the deadline; "not fine-tuned": the
# warm-up of a 10**6-step plan left the weights as they were); since the measured start-up and its pins
# (lr 3e-3, no warm-up) it passed 3 runs in a row at load 7-8.5 on 2026-11-23, 78-84 s. grpo earned in only
# 3 of 5 runs (2026-11-23: judged at 128 tokens, where the base model already states a number in ~97 % of
# its samples, artifacts often scored exactly the base's shortfall, "not fine-tuned"); since its task fixes
# 24 tokens (max_new_tokens), its miners take 8-sample steps and a grpo trial diverges only on a
# non-finite loss, 9 runs in a row earned (2026-11-23): 1 miner 70-79 s, 2 miners 76 s, 3 devnets at
# once 91-92 s, this test 76 s (load 1-2.7); base test loss ~0.62-0.67 -> 0.25-0.42 (docs/DEVNET.md).
@pytest.mark.parametrize("kind", ["dpo", "image", "bitnet", "grpo"])
def test_devnet_runs_a_task_of_this_kind_to_a_claimed_reward(kind: str, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "MAGNET_HOME": str(tmp_path / "home")}
    done = subprocess.run(
        [sys.executable, "-m", "node.cli", "devnet", "--kind", kind, "--miners", "1",
         "--train-seconds", "45", "--json"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=420,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    last_json = [line for line in done.stdout.splitlines() if line.startswith('{"ok"')]
    assert last_json, out[-4000:]
    summary = json.loads(last_json[-1])
    assert summary.get("ok") is True and summary.get("problems") == [], out[-4000:]
    assert summary["startup_s"]["miner-1"] > 0  # the real training child said "ready" and was timed
    assert f"{kind} on the bundled base model" in out
    assert "verified, signed by 0x" in out and "MAG (ok)" in out
