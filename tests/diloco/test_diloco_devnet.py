"""`magnet devnet --kind diloco`: rounds over real libp2p hosts on 127.0.0.1, losses, verdicts, ratings."""

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
    rounds = [i for i, ln in enumerate(lines) if ln.startswith("round ")]
    figures = [lines[i].split("loss ")[1].split(" (")[0] for i in rounds]
    losses = [tuple(float(x) for x in f.split(" -> ")) for f in figures]
    assert all(after < before for before, after in losses), losses  # every round's merge helped
    blocks = [lines[i + 1 : i + 7] for i in rounds]
    for n, block in enumerate(blocks):
        verdicts = {ln.split()[0]: ln.split(None, 1)[1] for ln in block}
        assert verdicts["noise"].startswith("excluded: no_improvement"), block
        assert verdicts["liar"].startswith("excluded: wrong_shard (claims shard"), block  # at the notice
        for honest in ("honest-1", "honest-2", "honest-3"):
            assert verdicts[honest].startswith("accepted"), block  # each came over the network
        assert verdicts["quitter"].startswith("accepted" if n == 0 else "excluded: missing"), block
    start = lines.index("receipts per miner (count, total MAG):") + 1
    held = {ln.split()[0]: (int(ln.split()[1]), float(ln.split()[2])) for ln in lines[start : start + 6]}
    # each miner holds one receipt per accepted contribution (delivered over its host, verified)
    want = {"honest-1": 3, "honest-2": 3, "honest-3": 3, "noise": 0, "liar": 0, "quitter": 1}
    assert {n: c for n, (c, _) in held.items()} == want
    assert sum(total for _, total in held.values()) == pytest.approx(3.0, abs=1e-3)  # 1 MAG a round
    # the ordinary epoch path: one root posted over the 10 round receipts, proofs to the miners' books,
    # each miner's own claim (wallet.rewards.claim_proofs); the balances on chain are the receipts'
    assert any(ln.startswith("epoch 0: 10 round receipts, posted") for ln in lines), lines
    start = lines.index("claimed per miner (proofs, MAG on chain):") + 1
    claimed = {ln.split()[0]: (int(ln.split()[1]), float(ln.split()[2])) for ln in lines[start : start + 6]}
    assert {n: c for n, (c, _) in claimed.items()} == want
    for name, (_, balance) in claimed.items():
        assert balance == pytest.approx(held[name][1], abs=1e-3), (name, balance, held[name])
    ratings = lines[lines.index("ratings (OpenSkill ordinal, best first):") + 1 :]
    assert {r.split()[0] for r in ratings[-2:]} == {"noise", "liar"}
    assert {r.split()[0] for r in ratings[:3]} == {"honest-1", "honest-2", "honest-3"}
