"""Errors a newcomer meets with `magnet mine` and `magnet devnet`: each a clear message and its exit code."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from node.cli import main
from node.cli.exitcodes import ExitCode
from node.paths import DataDir
from node.profile import NetworkProfile

PASSWORD = "correct horse battery staple"


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    home = tmp_path / "home"
    monkeypatch.setenv("MAGNET_HOME", str(home))
    monkeypatch.setenv("MAGNET_CONFIG", str(tmp_path / "no-config.toml"))
    monkeypatch.setenv("MAGNET_WALLET__SCRYPT_N", "1024")
    (tmp_path / "pw.txt").write_text(PASSWORD + "\n")
    (tmp_path / "wrong.txt").write_text("not the password\n")
    return {"home": home, "pw": tmp_path / "pw.txt", "wrong": tmp_path / "wrong.txt", "tmp": tmp_path}


def dead_profile(path: Path) -> Path:
    """A profile whose only bootstrap peer listens nowhere (a closed port on 127.0.0.1)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    peer = "12D3KooWLqrnHfxnQVWoz4oy7Yv9WowJyUhZ63VBBHYT8hvQtoRM"
    profile = NetworkProfile.new_devnet(
        1337,
        "http://127.0.0.1:1",
        "0x" + "11" * 20,
        "0x" + "22" * 20,
        bootstrap_peers=[f"/ip4/127.0.0.1/tcp/{port}/p2p/{peer}"],
    )
    import json

    path.write_text(json.dumps(profile.to_json()))
    return path


def test_mine_without_a_wallet_says_run_init(
    env: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["mine", "--password-file", str(env["pw"])]) == ExitCode.WALLET_MISSING
    assert "magnet init" in capsys.readouterr().err


def test_mine_with_the_wrong_password(env: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["init", "--password-file", str(env["pw"])]) == ExitCode.OK
    assert main(["mine", "--password-file", str(env["wrong"])]) == ExitCode.WRONG_PASSWORD
    assert "wrong password" in capsys.readouterr().err


def test_mine_without_a_network_names_the_option(
    env: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["init", "--password-file", str(env["pw"])]) == ExitCode.OK
    assert main(["mine", "--password-file", str(env["pw"])]) == ExitCode.CONFIG
    assert "--network FILE" in capsys.readouterr().err


def test_mine_on_a_data_dir_in_use(env: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["init", "--password-file", str(env["pw"])]) == ExitCode.OK
    with DataDir(env["home"]):
        assert main(["mine", "--password-file", str(env["pw"])]) == ExitCode.DATA_DIR_IN_USE
    assert "in use by process" in capsys.readouterr().err


@pytest.mark.network
def test_mine_with_no_peer_reachable_says_what_to_check(
    env: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["init", "--password-file", str(env["pw"])]) == ExitCode.OK
    profile = dead_profile(env["tmp"] / "net.json")
    code = main(
        [
            "mine",
            "--password-file",
            str(env["pw"]),
            "--network",
            str(profile),
            "--connect-timeout",
            "2",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
        ]
    )
    assert code == ExitCode.NETWORK
    assert "no peers reachable" in capsys.readouterr().err


@pytest.mark.network
def test_mine_on_a_port_in_use(env: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["init", "--password-file", str(env["pw"])]) == ExitCode.OK
    profile = dead_profile(env["tmp"] / "net.json")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = main(
            [
                "mine",
                "--password-file",
                str(env["pw"]),
                "--network",
                str(profile),
                "--listen",
                f"/ip4/127.0.0.1/tcp/{port}",
            ]
        )
    assert code == ExitCode.NETWORK
    assert f"p2p port {port} is in use" in capsys.readouterr().err


@pytest.mark.network
def test_devnet_on_a_port_in_use(env: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = main(["devnet", "--rpc-port", str(port), "--data-dir", str(env["tmp"] / "dn")])
    assert code == ExitCode.NETWORK
    assert f"port {port} is in use" in capsys.readouterr().err
