"""Interop: a js-libp2p peer (npm libp2p 3, noise, yamux, gossipsub) joins a MAGNET node, receives a
task announcement it decodes per docs/PROTOCOL.md, and fetches a public blob over /magnet/blob/1.0.0."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import trio
from p2p_netutil import DOMAIN, make_service, start, wait_for

from p2p.validation import topic
from protocol.messages import ROLE_VALIDATOR, TaskAnnouncement
from protocol.signing import sign
from wallet.signer import LocalSigner

REPO = Path(__file__).resolve().parents[2]
PEER_SCRIPT = Path(__file__).resolve().parent / "js" / "peer.mjs"
NODE = shutil.which("node")

pytestmark = [
    pytest.mark.network,
    pytest.mark.node_js,
    pytest.mark.skipif(NODE is None, reason="node (Node.js) is not installed: the js-libp2p peer cannot run"),
    pytest.mark.skipif(not (REPO / "node_modules" / "libp2p").is_dir(),
                       reason="node_modules/libp2p is absent: run `make node-deps` (npm ci) first"),
]


def announcement(validator: LocalSigner, base_hash: str, size: int) -> TaskAnnouncement:
    now = int(time.time() * 1000)
    return TaskAnnouncement(
        task_id=b"\x42" * 32, validator=validator.address, kind="instruct", model_ref="tiny-llama",
        base_model_sha256=bytes.fromhex(base_hash), base_model_size=size,
        train_data_sha256=b"\x01" * 32, train_data_size=1000, min_ram_mb=512, min_gpu_mb=0,
        est_tokens=10_000, est_gflop=5, join_by=now + 60_000, commit_by=now + 120_000,
        reveal_by=now + 180_000, eval_metrics=("loss",), test_weight_bps=7000, synthetic_weight_bps=3000,
        max_artifact_bytes=10_000_000, reward_weight_e9=1_000_000_000, test_split_hash=b"\x02" * 32,
        pool_size=4, params_json="{}", issued_at=now,
    )


@pytest.mark.slow
def test_js_libp2p_peer_receives_a_task_and_fetches_a_blob(tmp_path: Path) -> None:
    blob = os.urandom(2_000_000)

    async def main() -> list[dict[str, Any]]:
        validator_key = LocalSigner.create()
        async with trio.open_nursery() as nursery:
            service = make_service(tmp_path, "validator", validators=[validator_key.address],
                                   roles=ROLE_VALIDATOR, signer=validator_key)
            node = await start(nursery, service)
            blob_hash = node.store.put_bytes(blob, public=True)
            proc = subprocess.Popen([str(NODE), str(PEER_SCRIPT), node.addrs()[0], blob_hash, str(len(blob))],
                                    cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            try:
                assert proc.stdout is not None
                lines = [json.loads(await trio.to_thread.run_sync(proc.stdout.readline))]
                assert lines[0]["step"] == "connected", lines
                assert lines[0]["remote"] == node.peer_id.to_string()
                js_peer = lines[0]["self"]
                tasks = topic("tasks")
                await wait_for(lambda: any(p.to_string() == js_peer
                                           for p in node.gossip.pubsub.peer_topics.get(tasks, ())),
                               15, "the js peer's subscription")
                await trio.sleep(2.0)  # a heartbeat or two: the js peer joins our mesh
                signed = sign(announcement(validator_key, blob_hash, len(blob)), DOMAIN, validator_key)
                await node.gossip.publish(signed)
                for _ in range(2):
                    line = await trio.to_thread.run_sync(proc.stdout.readline)
                    assert line, proc.stderr.read() if proc.stderr else "js peer exited"
                    lines.append(json.loads(line))
                lines.append({"expected_body": signed.message.to_json(), "hash": blob_hash,
                              "node": node.peer_id.to_string()})
            finally:
                proc.kill()
                proc.wait()
                for pipe in (proc.stdout, proc.stderr):
                    if pipe is not None:
                        pipe.close()
            nursery.cancel_scope.cancel()
        return lines

    connected, message, fetched, expected = trio.run(main)
    assert connected["encryption"] == "/noise" and connected["muxer"] == "/yamux/1.0.0"
    assert message["step"] == "message" and message["from"] == expected["node"]
    assert message["type"] == "TaskAnnouncement" and message["v"] == 1 and message["sigLength"] == 132
    assert message["body"] == expected["expected_body"]
    assert fetched == {"step": "blob", "size": len(blob), "sha256": expected["hash"]}
