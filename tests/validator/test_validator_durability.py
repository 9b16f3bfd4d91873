"""A validator killed with SIGKILL at each phase restarts and finishes the task.

The validator runs in its own process (validator_node.py: NodeCore + create_service, the real
path of `magnet validator`), the chain is the embedded one served over JSON-RPC, the three miners
are scripted in this process. The validator is killed (SIGKILL) and restarted:

1. in the join window, with every join queued;   2. after the commitments are stored;
3. after the reveals are stored;                 4. in the middle of evaluation;
5. after the receipts were signed and sent, before the epoch is posted.

Afterwards: no commitment or artifact lost, one decision and one receipt per miner (the receipts
the miners got are the stored ones, byte for byte, however often they were re-sent), and exactly
one epoch post on chain whose root is the one in the miners' proofs.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import multiaddr
import pytest
import trio
from libp2p.peer.id import ID
from validator_net import Behaviour, Network, ScriptedMiner, train_bundle

from node.profile import NetworkProfile
from p2p.host import load_or_create_peer_key
from p2p.reqresp import RequestFailed, RequestRefused
from validator.tasks import bundled_dataset
from wallet.devnet import start_embedded_chain
from wallet.registry import RegistryParams
from wallet.signer import LocalSigner

pytestmark = [pytest.mark.slow, pytest.mark.network]
HERE = Path(__file__).resolve().parent
BUDGETS = {"best": (16, 4e-3), "middle": (6, 3e-3), "worst": (1, 5e-4)}


class ValidatorProcess:
    def __init__(self, data_dir: Path, profile: Path, port: int, key: bytes) -> None:
        self.args = [sys.executable, str(HERE / "validator_node.py"), str(data_dir), str(profile), str(port)]
        self.env = {**os.environ, "MAGNET_TEST_VALIDATOR_KEY": key.hex()}
        self.data_dir = data_dir
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = (data_dir.parent / "validator-process.log").open("ab")

    def start(self) -> None:
        (self.data_dir / "validator" / "api.json").unlink(missing_ok=True)
        self.proc = subprocess.Popen(self.args, env=self.env, stdout=self.log, stderr=self.log)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.close()

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        try:
            conn = sqlite3.connect(f"file:{self.data_dir / 'store.sqlite'}?mode=ro", uri=True)
            try:
                return conn.execute(sql).fetchall()
            finally:
                conn.close()
        except sqlite3.Error:
            return []

    def count(self, table: str) -> int:
        rows = self.query(f"SELECT COUNT(*) FROM {table}")
        return int(rows[0][0]) if rows else 0

    def phase(self) -> str:
        rows = self.query("SELECT phase FROM val_task")
        return str(rows[0][0]) if rows else ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_until(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await trio.sleep(0.2)


async def until_done(miner: ScriptedMiner, action: Any, *args: Any) -> Any:
    """Retry a request while the validator is down or restarting (a miner's patience)."""
    last: Exception | None = None
    for _ in range(120):
        try:
            return await action(*args)
        except RequestRefused as exc:  # e.g. "queued: ask again after join_by"
            last = exc
            await trio.sleep(0.5)
        except RequestFailed as exc:  # the validator is down, or this is the connection to its dead process
            last = exc
            await trio.sleep(0.5)
            await miner.reconnect(fresh=True)
    raise AssertionError(f"{miner.name}: {action.__name__} never succeeded: {last!r}")


def create_task(data_dir: Path, base: Path) -> str:
    import urllib.request

    info = json.loads((data_dir / "validator" / "api.json").read_text())
    body = json.dumps(
        {"kind": "instruct", "data_file": str(bundled_dataset()), "model": str(base), "hours": 45 / 3600}
    ).encode()
    request = urllib.request.Request(info["url"] + "/v1/tasks", data=body, method="POST")
    request.add_header("Authorization", f"Bearer {info['token']}")
    with urllib.request.urlopen(request, timeout=60) as answer:
        return str(json.loads(answer.read())["task_id"])


def test_validator_killed_at_each_phase_finishes_the_task(tmp_path: Path) -> None:
    from trainer.models import tiny_llama

    base = tiny_llama(tmp_path / "base-model", seed=1)
    signer = LocalSigner.create()
    devnet = start_embedded_chain([signer], params=RegistryParams(epoch_length=3600))
    profile = NetworkProfile.new_devnet(
        devnet.chain_id,
        devnet.rpc_url,
        devnet.deployment.registry,
        devnet.deployment.token,
        validators=[signer.address],
    )
    profile.save(tmp_path / "profile.json")
    data_dir = tmp_path / "validator-home"
    peer = ID.from_pubkey(load_or_create_peer_key(data_dir / "p2p" / "peer_key").public_key)
    port = free_port()
    validator = ValidatorProcess(data_dir, tmp_path / "profile.json", port, signer.export_private_key())
    net = Network(devnet, profile.domain(), signer)
    miners = [
        ScriptedMiner(name, tmp_path, net, Behaviour(steps=s, lr=lr)) for name, (s, lr) in BUDGETS.items()
    ]
    kills: list[str] = []
    result: dict[str, Any] = {}

    def restart(phase: str) -> None:
        validator.kill()
        kills.append(phase)
        validator.start()

    async def scenario() -> None:
        validator.start()
        await wait_until(lambda: (data_dir / "validator" / "api.json").exists(), 60, "the validator to start")
        async with trio.open_nursery() as nursery:
            at = (peer, [multiaddr.Multiaddr(f"/ip4/127.0.0.1/tcp/{port}")])
            for miner in miners:
                await miner.start(nursery, validator_at=at)
            await trio.sleep(2.5)
            task_id = await trio.to_thread.run_sync(create_task, data_dir, base)
            await wait_until(lambda: all(m.announcements for m in miners), 30, "the announcement")
            task = miners[0].announcements[0]
            async with trio.open_nursery() as joins:
                for miner in miners:
                    joins.start_soon(until_done, miner, miner.join, task)
                await wait_until(lambda: validator.count("val_joiner") == 3, 20, "joins queued")
                restart("joining")
            assert all(m.assignment is not None and m.assignment.accepted for m in miners)
            for miner, (steps, lr) in zip(miners, BUDGETS.values(), strict=True):
                base_dir, train_file = await until_done(miner, miner.fetch_task_files, task)
                miner.bundle = await trio.to_thread.run_sync(
                    train_bundle, base_dir, train_file, miner.root / miner.name / "adapter", steps, lr
                )
                await miner.commit(task)
            await wait_until(lambda: validator.count("val_commitment") == 3, 20, "commitments stored")
            restart("training")
            await wait_until(lambda: time.time() * 1000 > task.commit_by + 300, 90, "commit_by")
            for miner in miners:
                await until_done(miner, miner.reveal, task)
            restart("revealing")
            await wait_until(
                lambda: validator.count("val_evaluation") >= 1 or validator.phase() == "scoring",
                120,
                "the first evaluation",
            )
            restart("evaluating")
            await wait_until(lambda: validator.phase() == "finished", 180, "the task to finish")
            restart("receipts")
            await wait_until(lambda: (data_dir / "validator" / "api.json").exists(), 60, "the restart")
            for miner in miners:
                await miner.reconnect(fresh=True)
            await wait_until(lambda: all(m.receipts for m in miners), 60, "receipts at the miners")
            epoch = validator.query("SELECT epoch FROM val_task")[0][0]
            devnet.advance_to_epoch(epoch + 1)
            await wait_until(lambda: all(m.proofs for m in miners), 60, "proofs at the miners")
            result["stored_receipts"] = {
                r[0]: bytes(r[1]) for r in validator.query("SELECT miner, signed FROM val_receipt")
            }
            result["decisions"] = validator.query("SELECT miner, reason, rank FROM val_decision")
            result["artifacts"] = validator.query("SELECT miner, path FROM val_reveal")
            result["epoch"] = epoch
            result["task_id"] = task_id
            for miner in miners:
                assert miner.p2p is not None
                miner.p2p.stop()

    try:
        trio.run(scenario)
    finally:
        validator.stop()
    assert kills == ["joining", "training", "revealing", "evaluating", "receipts"]
    assert len(result["stored_receipts"]) == 3 and len(result["decisions"]) == 3
    for miner in miners:
        assert set(miner.receipt_bytes) == {
            result["stored_receipts"][miner.address]
        }  # re-sent, never re-signed
    assert all(Path(path).is_file() for _, path in result["artifacts"]) and len(result["artifacts"]) == 3
    ranks = {m: rank for m, _, rank in result["decisions"]}
    assert [ranks[m.address] for m in miners] == [1, 2, 3]
    posts = devnet.registry().epoch_posts()
    assert len(posts) == 1 and bytes(posts[0]["root"]) == miners[0].proofs[0].root
    devnet.close()
