"""The miner service's own decisions without a network: pausing (idle-only, battery), the newer-protocol
notice, a task the validator failed, and the state the desktop app shows."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import trio

from miner import events as ev
from miner.config import MinerConfig
from miner.db import MinerDB
from miner.idle import FakeIdleSource
from miner.service import MinerService
from node.store import Store
from p2p.config import P2PConfig
from protocol.signing import Domain
from wallet.signer import LocalSigner

DOMAIN = Domain(chain_id=1337, verifying_contract="0x" + "11" * 20, salt=b"\x01" * 32)


class FakeCore:
    def __init__(self) -> None:
        self.events: list[Any] = []

    def emit(self, event: Any) -> None:
        self.events.append(event)


def service(tmp_path: Path, cfg: MinerConfig, **kwargs: Any) -> tuple[MinerService, FakeCore]:
    svc = MinerService(
        cfg, SimpleNamespace(config=P2PConfig()), DOMAIN, LocalSigner.create(), tmp_path, **kwargs
    )
    core = FakeCore()
    svc.core = core  # type: ignore[assignment]
    svc.db = MinerDB(Store(tmp_path / "store.sqlite"))
    return svc, core


def test_idle_only_mining_pauses_until_the_user_is_away(tmp_path: Path) -> None:
    idle = FakeIdleSource(5.0)
    svc, core = service(
        tmp_path,
        MinerConfig(idle_only=True, idle_after_s=60, poll_s=0.05, pause_on_battery=False),
        idle_source=idle,
    )

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(svc.wait_until_allowed)
            await trio.sleep(0.3)
            assert svc.state == ev.PAUSED and "in use" in svc.state_detail
            idle.idle_s = 120.0
            await trio.sleep(0.3)
            assert not nursery.child_tasks  # wait_until_allowed returned: mining may go on

    trio.run(main)
    assert any(isinstance(e, ev.StateChanged) and e.state == ev.PAUSED for e in core.events)


def test_battery_pause_and_stop_are_states_with_reasons(tmp_path: Path) -> None:
    on_battery = [True]
    svc, _ = service(tmp_path, MinerConfig(poll_s=0.05), on_battery=lambda: on_battery[0])

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(svc.wait_until_allowed)
            await trio.sleep(0.3)
            assert (svc.state, svc.state_detail) == (ev.PAUSED, "on battery (miner.pause_on_battery)")
            svc.stop_mining()
            await trio.sleep(0.3)
            assert svc.state == ev.STOPPED
            on_battery[0] = False
            svc.start_mining()
            await trio.sleep(0.3)
            assert not nursery.child_tasks

    trio.run(main)


def test_a_newer_protocol_is_noticed_once_per_peer(tmp_path: Path) -> None:
    svc, core = service(tmp_path, MinerConfig())
    newer = SimpleNamespace(signed=SimpleNamespace(message=SimpleNamespace(protocol_version=2)))
    same = SimpleNamespace(signed=SimpleNamespace(message=SimpleNamespace(protocol_version=1)))
    svc._on_identity(same, "peer-a")
    svc._on_identity(newer, "peer-b")
    svc._on_identity(newer, "peer-b")
    notices = [e for e in core.events if isinstance(e, ev.NewerProtocol)]
    assert [(n.peer_id, n.version, n.ours) for n in notices] == [("peer-b", 2, 1)]


@pytest.mark.parametrize(
    ("status", "gives_up"), [("failed", True), ("cancelled", True), ("evaluating", False)]
)
def test_a_task_the_validator_ends_is_given_up_with_its_reason(
    tmp_path: Path, status: str, gives_up: bool
) -> None:
    svc, core = service(tmp_path, MinerConfig())
    assert svc.db is not None
    validator = LocalSigner.create().address
    task_id = "0x" + "ab" * 32
    svc.db.add_task(task_id, validator, "peer", "instruct", b"", True, "fits", 1.0, 2.0, 3.0)
    svc.db.update(task_id, phase="training")
    msg = SimpleNamespace(
        task_id=bytes.fromhex("ab" * 32),
        validator=validator,
        status=status,
        reason="too few miners joined",
        next_deadline=0,
    )
    svc._on_task_status(SimpleNamespace(signed=SimpleNamespace(message=msg)), "peer")
    task = svc.db.task(task_id)
    assert task is not None
    given_up = [e for e in core.events if isinstance(e, ev.TaskGivenUp)]
    if gives_up:
        assert task.phase == "given_up" and "too few miners joined" in given_up[0].reason
    else:
        assert task.phase == "training" and not given_up
