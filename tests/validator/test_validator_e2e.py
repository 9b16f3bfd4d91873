"""End to end on loopback: a validator and three scripted miners of different training quality.

Real libp2p hosts on 127.0.0.1, the embedded EVM chain with the registry, real LoRA training of a
tiny model and real sandboxed evaluation. The ranking must follow the training budget, and the
receipts, the posted epoch root and the on-chain claims must follow the ranking.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import trio

from validator_net import (
    Behaviour,
    ScriptedMiner,
    make_validator,
    start_network,
    train_bundle,
    validator_config,
)
from validator.tasks import bundled_dataset
from wallet.epochs import check_proof

pytestmark = [pytest.mark.slow, pytest.mark.network]


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from trainer.models import tiny_llama

    return tiny_llama(tmp_path_factory.mktemp("base") / "model", seed=1)


async def wait_until(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await trio.sleep(0.2)


def api_get(root: Path, path: str, token: str | None = None) -> tuple[int, bytes]:
    info = json.loads((root / "api.json").read_text())
    request = urllib.request.Request(info["url"] + path)
    request.add_header("Authorization", f"Bearer {token if token is not None else info['token']}")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_three_miners_ranked_by_quality_and_paid_on_chain(tmp_path: Path, tiny_base: Path) -> None:
    net = start_network()
    service, core = make_validator(tmp_path / "validator", net, validator_config())
    budgets = {"best": (24, 4e-3), "middle": (8, 3e-3), "worst": (2, 5e-4)}
    miners = [ScriptedMiner(name, tmp_path, net, Behaviour(steps=s, lr=lr)) for name, (s, lr) in budgets.items()]
    outcome: dict[str, Any] = {}

    async def scenario() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(service.run, core)
            for miner in miners:
                await miner.start(nursery, service.p2p)
            await trio.sleep(2.5)  # let the gossip mesh form
            assert service.engine is not None and service.db is not None
            task_id = await trio.to_thread.run_sync(service.engine.create_task, bundled_dataset(), "instruct",
                                                    str(tiny_base), 40 / 3600)
            await wait_until(lambda: all(m.announcements for m in miners), 20, "the announcement on gossip")
            task = miners[0].announcements[0]
            async with trio.open_nursery() as joins:
                for miner in miners:
                    joins.start_soon(miner.join, task)
            assert all(m.assignment is not None and m.assignment.accepted for m in miners)
            for miner in miners:
                base_dir, train_file = await miner.fetch_task_files(task)
                miner.bundle = await trio.to_thread.run_sync(
                    train_bundle, base_dir, train_file, miner.root / miner.name / "adapter",
                    miner.behaviour.steps, miner.behaviour.lr)
                await miner.commit(task)
            await wait_until(lambda: time.time() * 1000 > task.commit_by + 200, 90, "commit_by")
            for miner in miners:
                assert await miner.reveal(task) == "revealed"
            db = service.db
            await wait_until(lambda: db.task(task_id).phase == "finished", 150, "the task to finish")
            await wait_until(lambda: all(m.receipts for m in miners), 20, "receipts at the miners")
            registry = net.chain.registry()
            epoch = db.task(task_id).epoch
            net.chain.advance_to_epoch(epoch + 1)
            await wait_until(lambda: all(m.proofs for m in miners), 30, "proofs at the miners")
            outcome["decisions"] = db.decisions(task_id)
            outcome["post"] = registry.post(epoch, net.validator_signer.address)
            outcome["status"] = await trio.to_thread.run_sync(api_get, service.root, "/v1/status")
            outcome["unauthorised"] = await trio.to_thread.run_sync(api_get, service.root, "/v1/status", "wrong")
            outcome["artifact"] = await trio.to_thread.run_sync(api_get, service.root,
                                                                f"/v1/tasks/{task_id}/artifact")
            await service.stop()
            for miner in miners:
                assert miner.p2p is not None
                miner.p2p.stop()

    try:
        trio.run(scenario)
    finally:
        core.store.close()

    ranks = {d["miner"]: d["rank"] for d in outcome["decisions"]}
    best, middle, worst = miners
    assert [ranks[best.address], ranks[middle.address], ranks[worst.address]] == [1, 2, 3], outcome["decisions"]
    receipts = {m.name: m.receipts[0] for m in miners}
    assert receipts["best"].amount > receipts["middle"].amount > receipts["worst"].amount > 0
    assert receipts["best"].test_loss_e9 < receipts["middle"].test_loss_e9 < receipts["worst"].test_loss_e9
    post = outcome["post"]
    assert post is not None and post.total == sum(r.amount for r in receipts.values())
    net.chain.advance_to_epoch(post_epoch := miners[0].proofs[0].epoch + 2)  # claims open after the window
    assert net.chain.registry().current_epoch() == post_epoch
    registry = net.chain.registry(net.chain.governance)
    balances = {}
    for miner in miners:
        proof = miner.proofs[0]
        check_proof(proof, post.root)  # the proof leads to the root posted on chain
        registry.claim(proof.epoch, proof.validator, proof.receipt_hash, proof.payout, proof.amount, proof.proof)
        balances[miner.name] = registry.token_balance(miner.address)
    assert balances["best"] > balances["middle"] > balances["worst"] > 0
    status, body = outcome["status"]
    assert status == 200 and json.loads(body)["tasks"][0]["phase"] == "finished"
    assert outcome["unauthorised"][0] == 401
    assert outcome["artifact"] == (200, best.bundle.read_bytes())  # type: ignore[union-attr]
