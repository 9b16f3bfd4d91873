"""NodeCore: lifecycle, services, calls from other threads, and a clean stop (no leaks)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import trio
from node_services import RecordingService

from node.config import Config
from node.core import (
    ROLE_MODULES,
    CallTimeout,
    CoreError,
    CoreNotRunning,
    NodeCore,
    RoleNotAvailable,
    ServiceError,
    role_available,
)
from node.events import Event, NodeStarted, NodeStopped, ServiceFailed
from node.paths import DataDirInUse, is_locked
from node.service import CoreContext, TaskStatus
from wallet.signer import LocalSigner

LeakCheck = Callable[[], Callable[[], list[str]]]  # tests/conftest.py thread_leak_check


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def test_start_call_stop_and_events(node_config: Config) -> None:
    signer = LocalSigner.create()
    core = NodeCore(node_config, signer)
    seen: list[Event] = []
    core.events.subscribe(seen.append)
    core.start()
    try:
        assert core.running and is_locked(core.data_dir.root) == os.getpid()

        async def add(a: int, b: int) -> int:
            await trio.sleep(0)
            assert threading.current_thread().name == "magnet-core"
            return a + b

        assert core.call(add, 2, 3) == 5
        assert core.submit(add, 1, 1).result(5) == 2

        async def boom() -> None:
            raise KeyError("no such task")

        with pytest.raises(KeyError, match="no such task"):
            core.call(boom)
        assert core.store.query("SELECT value FROM node_meta WHERE key = 'address'") == [(signer.address,)]
        assert core.identity()["address"] == signer.address
    finally:
        core.stop()
    assert not core.running and is_locked(core.data_dir.root) is None
    assert isinstance(seen[0], NodeStarted) and seen[0].address == signer.address
    assert isinstance(seen[-1], NodeStopped) and seen[-1].clean
    with pytest.raises(CoreNotRunning):
        core.call(trio.sleep, 0)
    core.stop()  # twice is fine


def test_call_timeout_cancels_inside_the_core(node_config: Config) -> None:
    core = NodeCore(node_config)
    core.start()
    finished: list[str] = []
    try:

        async def slow() -> None:
            try:
                await trio.sleep(30)
            finally:
                finished.append("cleaned up")

        t0 = time.monotonic()
        with pytest.raises(CallTimeout, match="slow did not finish"):
            core.call(slow, timeout=0.2)
        assert time.monotonic() - t0 < 2
        deadline = time.monotonic() + 2
        while not finished and time.monotonic() < deadline:
            time.sleep(0.01)
        assert finished == ["cleaned up"]

        async def reenter() -> None:
            core.call(trio.sleep, 0)

        with pytest.raises(CoreError, match="would deadlock"):
            core.call(reenter)
    finally:
        core.stop()


def test_services_start_in_order_stop_in_reverse(node_config: Config) -> None:
    journal: list[str] = []
    core = NodeCore(node_config)
    core.add_service(RecordingService("p2p", journal))
    core.add_service(RecordingService("miner", journal))
    with pytest.raises(CoreError, match="already attached"):
        core.add_service(RecordingService("p2p", journal))
    core.start()
    late = RecordingService("validator", journal)
    core.add_service(late)  # attached while running: starts now
    assert core.identity()["validator_id"] == "id-of-validator"
    core.stop()
    assert journal[:3] == ["start p2p", "start miner", "start validator"]
    assert journal[3:6] == ["stop validator", "stop miner", "stop p2p"]
    assert sorted(journal[6:]) == ["cancelled miner", "cancelled p2p", "cancelled validator"]


def test_service_failing_to_start_while_running_is_not_kept(node_config: Config) -> None:
    journal: list[str] = []
    core = NodeCore(node_config)
    core.start()
    try:
        with pytest.raises(ServiceError, match="miner failed to start"):
            core.add_service(RecordingService("miner", journal, fail_at_start=True))
        assert core.services() == () and core.running
    finally:
        core.stop()


def test_service_failing_at_start_releases_everything(
    node_config: Config, thread_leak_check: LeakCheck
) -> None:
    journal: list[str] = []
    leaked = thread_leak_check()
    core = NodeCore(node_config)
    core.add_service(RecordingService("p2p", journal))
    core.add_service(RecordingService("miner", journal, fail_at_start=True))
    with pytest.raises(ServiceError, match="miner failed to start: miner cannot bind its port"):
        core.start()
    assert journal == ["start p2p", "stop p2p", "cancelled p2p"]
    assert is_locked(core.data_dir.root) is None and leaked() == []


class NeverReady:
    """Never calls task_status.started(): the start deadline must still hold."""

    name = "never-ready"

    def __init__(self) -> None:
        self.cancelled = False

    async def run(self, core: CoreContext, task_status: TaskStatus[None]) -> None:
        try:
            await trio.sleep_forever()
        finally:
            self.cancelled = True

    async def stop(self) -> None:
        pass


def test_a_service_that_never_starts_hits_the_start_timeout(
    node_config: Config, thread_leak_check: LeakCheck
) -> None:
    leaked = thread_leak_check()
    node_config.node.start_timeout = 0.5
    core = NodeCore(node_config)
    hung = NeverReady()
    core.add_service(hung)
    t0 = time.monotonic()
    with pytest.raises(ServiceError, match=r"did not start within 0\.5 s"):
        core.start()
    assert time.monotonic() - t0 < 3
    assert hung.cancelled and leaked() == []
    assert is_locked(core.data_dir.root) is None


def test_service_crash_stops_the_node_with_a_reason(node_config: Config) -> None:
    journal: list[str] = []
    crashing = RecordingService("p2p", journal)
    core = NodeCore(node_config)
    core.add_service(crashing)
    failures: list[Event] = []
    core.events.subscribe(failures.append, [ServiceFailed])
    core.start()
    core.call(_set, crashing.crash)
    assert core.wait(timeout=5)
    assert isinstance(core.failure, RuntimeError) and "lost its socket" in str(core.failure)
    assert [f.fields()["error"] for f in failures] == ["p2p lost its socket"]
    core.stop()
    assert is_locked(core.data_dir.root) is None


async def _set(ev: trio.Event) -> None:
    ev.set()


def test_second_core_on_same_data_dir_is_refused(node_config: Config) -> None:
    core = NodeCore(node_config)
    core.start()
    try:
        with pytest.raises(DataDirInUse, match=str(os.getpid())):
            NodeCore(node_config).start()
    finally:
        core.stop()


def test_roles_plug_in_by_module_and_missing_ones_are_reported(
    node_config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(ROLE_MODULES, "miner", "node_services")  # tests/node/node_services.py
    monkeypatch.setitem(ROLE_MODULES, "validator", "validator.no_such_service_module")
    core = NodeCore(node_config)
    assert role_available("miner") and not role_available("validator")
    service = core.plug_in("miner")
    assert service.name == "plugged" and core.services() == ("plugged",)
    with pytest.raises(RoleNotAvailable, match="validator role is not available yet"):
        core.plug_in("validator")
    with pytest.raises(CoreError, match="unknown role"):
        core.plug_in("teapot")


class SocketService:
    """Holds a real listening socket and a file, the things a leak would leave open."""

    name = "sockets"

    def __init__(self, path: Path) -> None:
        self.path = path

    async def run(self, core: CoreContext, task_status: TaskStatus[None]) -> None:
        listener = trio.socket.socket()
        await listener.bind(("127.0.0.1", 0))
        listener.listen()
        with listener, open(self.path, "a", encoding="utf-8") as f:
            f.write("held\n")
            client = socket.create_connection(listener.getsockname())
            try:
                task_status.started()
                await trio.sleep_forever()
            finally:
                client.close()

    async def stop(self) -> None:
        pass


def test_stop_leaks_no_threads_or_fds(
    node_config: Config, tmp_path: Path, thread_leak_check: LeakCheck
) -> None:
    # Warm-up run: first use loads modules and caches that keep fds (e.g. the wordlist) for good.
    warm = NodeCore(node_config)
    warm.start()
    warm.stop()
    leaked, fds = thread_leak_check(), open_fds()
    for _ in range(3):
        core = NodeCore(node_config, LocalSigner.create())
        core.add_service(SocketService(tmp_path / "held.txt"))
        core.start()
        assert len(open_fds()) > len(fds)
        core.stop()
    assert leaked() == []
    assert open_fds() == fds


SIGTERM_NODE = textwrap.dedent("""
    import sys, trio
    from node.config import load_config
    from node.core import NodeCore

    class Stubborn:
        # A service whose graceful stop never returns: the deadline must still hold.
        name = "stubborn"
        async def run(self, core, task_status):
            task_status.started()
            await trio.sleep_forever()
        async def stop(self):
            await trio.sleep(3600)

    config = load_config(env={{}})
    config.node.data_dir = {home!r}
    config.node.stop_timeout = 1.0
    core = NodeCore(config)
    core.add_service(Stubborn())
    core.start()
    signum = core.run_until_signal(ready=lambda: print("ready", flush=True))
    print("stopped on", signum, flush=True)
""")


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGINT"])
def test_process_stops_on_signal_within_the_timeout(tmp_path: Path, signame: str) -> None:
    import signal

    proc = subprocess.Popen(
        [sys.executable, "-c", SIGTERM_NODE.format(home=str(tmp_path / "home"))],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    assert proc.stdout is not None
    try:
        assert proc.stdout.readline().strip() == "ready"
        t0 = time.monotonic()
        proc.send_signal(getattr(signal, signame))
        assert proc.wait(timeout=10) == 0
        elapsed = time.monotonic() - t0
        assert elapsed < 1.0 + 1.5, elapsed  # stop_timeout plus process exit
        assert proc.stdout.read().strip() == f"stopped on {int(getattr(signal, signame))}"
    finally:
        proc.kill() if proc.poll() is None else None
        proc.stdout.close()


def test_calls_pending_at_stop_fail_instead_of_hanging(node_config: Config) -> None:
    core = NodeCore(node_config)
    core.start()
    futures = [core.submit(trio.sleep, 60) for _ in range(20)]
    core.stop()
    for future in futures:
        assert isinstance(future.exception(timeout=5), CoreNotRunning)
