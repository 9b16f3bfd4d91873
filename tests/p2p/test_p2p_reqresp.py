"""Direct request/response between real hosts: replies, refusals, caps, timeouts, rate limits."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
from p2p_netutil import connect, make_service, start

from p2p.reqresp import RequestFailed, RequestRefused

pytestmark = pytest.mark.network


def test_request_reply_refusal_caps_timeout_and_rate_limit(tmp_path: Path) -> None:
    async def main() -> None:
        async with trio.open_nursery() as nursery:
            validator = await start(nursery, make_service(tmp_path, "validator", request_rate=0.5,
                                                          request_burst=6))
            miner = await start(nursery, make_service(tmp_path, "miner", request_timeout=1.0))
            seen: list[str] = []

            async def join(peer: str, payload: bytes) -> bytes:
                seen.append(peer)
                if payload == b"bad":
                    raise RequestRefused("task is full")
                if payload == b"slow":
                    await trio.sleep(5)
                return b"assigned:" + payload

            async def receipt(peer: str, payload: bytes) -> bytes:
                seen.append(peer)
                return b"thanks"

            validator.requests.register("join", join, max_request=100)
            miner.requests.register("receipt", receipt)
            # Nothing dials a miner: with dial=False a validator delivers only over the miner's connection.
            with pytest.raises(RequestFailed, match="must connect first"):
                await validator.requests.request(miner.peer_id, "receipt", b"r", dial=False)
            await connect(miner, validator)

            assert await validator.requests.request(miner.peer_id, "receipt", b"r", dial=False) == b"thanks"
            assert seen == [validator.peer_id.to_string()]
            assert await miner.requests.request(validator.peer_id, "join", b"task-1") == b"assigned:task-1"
            assert seen[-1] == miner.peer_id.to_string()
            with pytest.raises(RequestRefused, match="task is full"):
                await miner.requests.request(validator.peer_id, "join", b"bad")
            with pytest.raises(RequestFailed):
                await miner.requests.request(validator.peer_id, "join", b"y" * 200)  # over the 100-byte cap
            with pytest.raises(RequestFailed, match="timeout"):
                await miner.requests.request(validator.peer_id, "join", b"slow", timeout=0.5)
            with pytest.raises(RequestRefused, match="rate limited"):
                for _ in range(5):
                    await miner.requests.request(validator.peer_id, "join", b"z")
            with pytest.raises(RequestFailed):
                await miner.requests.request(validator.peer_id, "no-such-route", b"z")
            nursery.cancel_scope.cancel()

    trio.run(main)
