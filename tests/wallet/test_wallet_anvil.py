"""Against a real JSON-RPC node: anvil (npm @foundry-rs/anvil) on 127.0.0.1.

Deploy, register a validator, post an epoch, verify a miner's proof against the root on chain, and
claim through a relayer (one claim, then the rest in one claimMany), all over HTTP JSON-RPC.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from wallet_fixtures import make_domain, make_receipt

from wallet.chain import ChainClient
from wallet.chainerrors import RevertError
from wallet.epochs import EpochFile, check_proof
from wallet.receipts import sign_receipt
from wallet.registry import Registry, RegistryParams, deploy
from wallet.rewards import claim_proofs
from wallet.signer import LocalSigner

ANVIL = Path(__file__).resolve().parents[2] / "node_modules" / ".bin" / "anvil"
# anvil's first development account (public test key of the "test ... junk" mnemonic).
ANVIL_KEY0 = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
ETHER = 10**18

pytestmark = [pytest.mark.node_js, pytest.mark.slow, pytest.mark.network]


@pytest.fixture(scope="module")
def anvil_url() -> Iterator[str]:
    if shutil.which("node") is None:
        pytest.skip("node is not installed: the anvil integration test needs node and npm")
    if not ANVIL.exists():
        pytest.skip(f"{ANVIL} is absent: run `make node-deps` (npm install) to get @foundry-rs/anvil")
    proc = subprocess.Popen(
        [str(ANVIL), "--host", "127.0.0.1", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        url = _listening_url(proc)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        assert proc.stdout is not None
        proc.stdout.close()


def _listening_url(proc: subprocess.Popen[str]) -> str:
    deadline = time.monotonic() + 30
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            raise RuntimeError(f"anvil exited with {proc.returncode} before listening")
        match = re.search(r"Listening on (127\.0\.0\.1:\d+)", line)
        if match:
            return f"http://{match.group(1)}"
    raise RuntimeError("anvil did not report its port within 30 s")


def test_deploy_register_post_and_claim_on_anvil(anvil_url: str) -> None:
    owner = LocalSigner(ANVIL_KEY0)
    client = ChainClient.connect(anvil_url, owner, expected_chain_id=31337, receipt_timeout=30)
    deployment = deploy(client, RegistryParams(epoch_length=3600, emission_per_epoch=1000 * ETHER))
    registry = Registry(client, deployment.registry)
    registry.register(5 * ETHER)
    assert registry.validator(owner.address).registered

    miners = [LocalSigner.create().address for _ in range(3)]
    domain = make_domain(chain_id=31337, registry=deployment.registry)
    receipts = [
        sign_receipt(make_receipt(owner.address, m, 100 * ETHER, nonce=i), domain, owner)
        for i, m in enumerate(miners)
    ]
    built = EpochFile.build(0, owner.address, domain, receipts)

    client.advance_time(3601)
    registry.post_epoch(0, built.root, built.file_hash, built.total)
    with pytest.raises(RevertError) as replay:
        registry.post_epoch(0, built.root, built.file_hash, built.total)
    assert replay.value.name == "AlreadyPosted"
    client.advance_time(3600)

    relayer = LocalSigner.create()
    client.send_value(relayer.address, ETHER)
    relayed = Registry(ChainClient.connect(anvil_url, relayer, expected_chain_id=31337), deployment.registry)
    post = relayed.post(0, owner.address)
    assert post is not None
    proofs = built.proofs(issued_at=1)
    first = proofs[0]
    check_proof(first, post.root)
    relayed.claim(0, owner.address, first.index, first.receipt_hash, first.payout, first.amount, first.proof)
    # The other two in one claimMany transaction; the first is skipped (already claimed).
    outcomes = claim_proofs(relayed, proofs)
    assert sorted(o.status for o in outcomes) == ["claimed", "claimed", "skipped"]
    assert len({o.result.tx_hash for o in outcomes if o.result is not None}) == 1
    for proof in proofs:
        # Alone in the epoch, the validator's share is the whole emission, split pro rata to amounts.
        assert relayed.token_balance(proof.payout) == proof.amount * 1000 * ETHER // built.total
    with pytest.raises(RevertError) as double:
        proof = built.proofs(issued_at=1)[0]
        relayed.claim(
            0, owner.address, proof.index, proof.receipt_hash, proof.payout, proof.amount, proof.proof
        )
    assert double.value.name == "AlreadyClaimed"
