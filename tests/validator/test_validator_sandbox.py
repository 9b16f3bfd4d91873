"""The evaluation sandbox: network genuinely blocked, memory and CPU-time caps, wall-clock timeout.

Each test runs the real child (``python -m validator.sandbox_child``) from the parent runner.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from validator.config import ValidatorConfig
from validator.sandbox import child_env, selfcheck

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def listener() -> Iterator[int]:
    """A TCP port on 127.0.0.1 that accepts connections in this (unsandboxed) process."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    try:
        yield int(server.getsockname()[1])
    finally:
        server.close()


def test_a_connect_to_loopback_fails_inside_the_worker(tmp_path: Path, listener: int) -> None:
    with socket.create_connection(("127.0.0.1", listener), timeout=2):
        pass  # reachable from here: the failure below is the sandbox's doing
    outcome = selfcheck(tmp_path, ValidatorConfig(), connect=("127.0.0.1", listener))
    assert outcome.isolation in ("namespace", "socket_block")
    assert outcome.checks["connect"]["ok"] is False, outcome


def test_socket_block_fallback_refuses_ip_sockets() -> None:
    code = (
        "from validator.sandbox_child import block_sockets; block_sockets(); import socket\n"
        "try:\n    socket.socket()\nexcept PermissionError as e:\n    print('blocked', e)\n"
        "socket.socket(socket.AF_UNIX).close(); print('unix ok')"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert "blocked network access is blocked" in done.stdout and "unix ok" in done.stdout, done.stderr


def test_an_over_cap_allocation_fails_the_job_not_the_validator(tmp_path: Path) -> None:
    outcome = selfcheck(tmp_path, ValidatorConfig(), allocate_bytes=3 * 1024**3, memory_bytes=1024**3)
    assert outcome.error.startswith("oom"), outcome
    assert "allocate" not in outcome.checks  # the allocation never succeeded
    assert bytearray(64 * 1024**2)  # and this process is untouched


def test_a_job_past_its_wall_clock_limit_is_killed(tmp_path: Path) -> None:
    cfg = ValidatorConfig(eval_timeout_s=0.001)  # far below a Python start (~20 ms): always times out
    from validator.sandbox import run_sandboxed

    outcome = run_sandboxed({"mode": "selfcheck"}, tmp_path, cfg)
    assert "timed out" in outcome.error


def test_the_child_gets_no_secrets_and_the_hub_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAGNET_PASSWORD", "hunter2hunter2")
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    env = child_env()
    assert "MAGNET_PASSWORD" not in env and "HF_TOKEN" not in env
    assert env["HF_HUB_OFFLINE"] == "1" and env["TRANSFORMERS_OFFLINE"] == "1"
