"""The `magnet` CLI: exit codes (each documented), the important paths, and no secret in its output."""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

import node.cli.launch
from node.cli import COMMAND_MODULES, PLANNED, build_parser, main
from node.cli.exitcodes import ExitCode
from node.config import describe, load_config, to_dict
from node.paths import DataDir

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "pw-for-tests-9f3c"


@pytest.fixture
def cli_env(magnet_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """MAGNET_HOME in tmp, cheap scrypt, and a password file."""
    monkeypatch.setenv("MAGNET_WALLET__SCRYPT_N", "1024")
    (tmp_path / "pw.txt").write_text(PASSWORD + "\n")
    return {"home": str(magnet_home), "pw": str(tmp_path / "pw.txt")}


def subprocess_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """A child environment with its own HOME and no MAGNET_HOME, so nothing touches the real home."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAGNET_")}
    env.update(HOME=str(tmp_path / "user-home"), XDG_DATA_HOME="", XDG_CONFIG_HOME="",
               MAGNET_CONFIG=str(tmp_path / "no-config.toml"), MAGNET_WALLET__SCRYPT_N="1024")
    env.update(extra)
    return env


def magnet(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "node.cli", *args], capture_output=True, text=True, timeout=60,
        stdin=subprocess.DEVNULL, env=subprocess_env(tmp_path, **env), cwd=tmp_path,
    )


def test_every_exit_code_has_a_doc_entry() -> None:
    doc = (REPO / "docs" / "CLI.md").read_text(encoding="utf-8")
    rows = dict(re.findall(r"^\| (\d+) \| `([A-Z_]+)` \|", doc, flags=re.MULTILINE))
    assert rows == {str(int(code)): code.name for code in ExitCode}


def test_every_command_has_a_doc_row() -> None:
    doc = (REPO / "docs" / "CLI.md").read_text(encoding="utf-8")
    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    assert commands
    for name, sub in commands.items():
        assert f"`magnet {name}" in doc, name
        # Every action of a command group (wallet create, validator stake...) is named in a row's first cell.
        rows = [line for line in doc.splitlines() if line.startswith(f"| `magnet {name} ")]
        first_cells = [row.split(" | ")[0] for row in rows]
        for action in subcommands(sub):
            named = [cell for cell in first_cells if re.search(rf"\b{re.escape(action)}\b", cell)]
            assert named, f"docs/CLI.md has no row for `magnet {name} {action}`"


def subcommands(parser: argparse.ArgumentParser) -> list[str]:
    groups = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return [name for group in groups for name in group.choices]


def test_init_twice_and_wallet_errors(cli_env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--headless", "--password-file", cli_env["pw"]]) == ExitCode.WALLET_MISSING
    assert "magnet init" in capsys.readouterr().err
    assert main(["init", "--password-file", cli_env["pw"]]) == ExitCode.OK
    out = capsys.readouterr().out
    address = re.search(r"wallet address: (0x[0-9a-fA-F]{40})", out)
    assert address and "not printed: no terminal" in out
    keystore = json.loads((Path(cli_env["home"]) / "wallet" / "keystore.json").read_text())
    assert keystore["address"].lower() == address.group(1)[2:].lower()
    assert (Path(cli_env["home"]) / "wallet" / "mnemonic.json").exists()
    assert main(["init", "--password-file", cli_env["pw"]]) == ExitCode.WALLET_EXISTS
    wrong = Path(cli_env["pw"]).with_name("wrong.txt")
    wrong.write_text("not-the-password\n")
    assert main(["--headless", "--password-file", str(wrong)]) == ExitCode.WRONG_PASSWORD
    assert main(["--headless"]) == ExitCode.NO_PASSWORD  # pytest's stdin is not a terminal
    assert "--password-file" in capsys.readouterr().err
    status = main(["status", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert status == ExitCode.OK and report["wallet_address"].lower() == address.group(1).lower()
    assert report["node_running"] is False


def test_password_file_problems(
    cli_env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty, short = tmp_path / "empty.txt", tmp_path / "short.txt"
    empty.write_text("\n")
    short.write_text("abc\n")
    assert main(["init", "--password-file", str(empty)]) == ExitCode.NO_PASSWORD
    assert main(["init", "--password-file", str(short)]) == ExitCode.USAGE
    assert main(["init", "--password-file", str(tmp_path / "absent")]) == ExitCode.NO_PASSWORD
    err = capsys.readouterr().err
    assert "is empty" in err and "at least 8" in err and "cannot read password file" in err
    assert not (Path(cli_env["home"]) / "wallet" / "keystore.json").exists()


def test_data_dir_in_use(cli_env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    with DataDir(Path(cli_env["home"])):
        assert main(["init", "--password-file", cli_env["pw"]]) == ExitCode.DATA_DIR_IN_USE
        assert main(["--headless", "--password-file", cli_env["pw"]]) == ExitCode.DATA_DIR_IN_USE
    err = capsys.readouterr().err
    assert f"in use by process {os.getpid()}" in err and "MAGNET_HOME" in err


def test_help_and_version_return_ok(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == ExitCode.OK
    assert main(["--version"]) == ExitCode.OK
    assert main(["init", "--help"]) == ExitCode.OK
    out = capsys.readouterr().out
    assert "docs/CLI.md" in out and re.search(r"^magnet \d+\.\d+", out, flags=re.MULTILINE)


def test_usage_config_and_not_available(
    cli_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["no-such-command"]) == ExitCode.USAGE
    assert main(["--validator"]) == ExitCode.USAGE
    assert main(["config"]) == ExitCode.USAGE
    # Only the node's own modules: every planned command is then a placeholder, whatever has landed.
    with monkeypatch.context() as patch:
        patch.setattr("node.cli.COMMAND_MODULES", tuple(m for m in COMMAND_MODULES if m.startswith("node.")))
        for command in PLANNED:
            assert main([command, "--network", "x.json"]) == ExitCode.NOT_AVAILABLE, command
    monkeypatch.setattr(node.cli.launch, "DESKTOP_MODULE", "desktop.no_such_app")
    assert main([]) == ExitCode.NOT_AVAILABLE
    assert "desktop app is not part of this build" in capsys.readouterr().err
    monkeypatch.setenv("MAGNET_NODE__STOP_TIMEOUT", "soon")
    assert main(["config", "show"]) == ExitCode.CONFIG
    assert "node.stop_timeout" in capsys.readouterr().err


def test_config_show_lists_every_key_and_toml_round_trips(
    cli_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["config", "show"]) == ExitCode.OK
    text = capsys.readouterr().out
    config = load_config()
    for section, key, _, help_text in describe(config):
        assert re.search(rf"^{section}\.{key} .*# {re.escape(help_text)}$", text, flags=re.MULTILINE), key
    assert main(["config", "show", "--toml"]) == ExitCode.OK
    assert tomllib.loads(capsys.readouterr().out) == to_dict(config)


def test_a_package_module_takes_over_a_planned_command(monkeypatch: pytest.MonkeyPatch) -> None:
    import node_cli_plugin

    monkeypatch.setattr("node.cli.COMMAND_MODULES", ("node_cli_plugin", *COMMAND_MODULES))
    assert main(["mine", "--network", "net.json"]) == ExitCode.OK
    assert node_cli_plugin.CALLS == ["net.json"]


def test_command_modules_import_nothing_heavy(tmp_path: Path) -> None:
    probe = (
        "import sys, node.cli; node.cli.build_parser(); "
        "heavy = ('torch', 'transformers', 'web3', 'libp2p', 'trio', 'PySide6', 'eth_account'); "
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60,
                            env=subprocess_env(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def interim_devnet() -> bool:
    """True while `magnet devnet` is still the node's interim one (a core with a throwaway wallet)."""
    source = (REPO / "node" / "cli" / "devnet_cmd.py").read_text(encoding="utf-8")
    return "devnet node started (interim" in source


@pytest.mark.slow
@pytest.mark.skipif(
    not interim_devnet(), reason="the full devnet (issue 7) replaced the interim one: tests/devnet covers it"
)
def test_devnet_without_init_or_magnet_home(tmp_path: Path) -> None:
    result = magnet(tmp_path, "devnet")
    assert result.returncode == 0, result.stderr
    assert re.search(r"address: 0x[0-9a-fA-F]{40}", result.stdout)
    data_dir = re.search(r"data_dir: (\S+)", result.stdout)
    assert data_dir and not Path(data_dir.group(1)).exists()  # the throwaway directory is gone
    assert not (tmp_path / "user-home").exists()  # nothing written to the user's home


# `magnet` itself, with every role's module made absent: this test is about the core and the CLI
# (no terminal, SIGTERM, exit 0), not about roles that need a network profile once they land.
HEADLESS_WITHOUT_ROLES = (
    "import sys; import node.core as core; "
    "core.ROLE_MODULES = {r: r + '.no_such_service_module' for r in core.ROLE_MODULES}; "
    "from node.cli import main; sys.exit(main(sys.argv[1:]))"
)


@pytest.mark.slow
def test_init_then_headless_without_a_terminal_stops_on_sigterm(tmp_path: Path) -> None:
    (tmp_path / "pw.txt").write_text(PASSWORD + "\n")
    home = tmp_path / "magnet-home"
    init = magnet(tmp_path, "init", "--password-file", str(tmp_path / "pw.txt"), MAGNET_HOME=str(home))
    assert init.returncode == 0, init.stderr
    assert PASSWORD not in init.stdout + init.stderr
    proc = subprocess.Popen(
        [sys.executable, "-c", HEADLESS_WITHOUT_ROLES, "--headless",
         "--password-file", str(tmp_path / "pw.txt")],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True, cwd=tmp_path,
        env=subprocess_env(tmp_path, MAGNET_HOME=str(home), MAGNET_NODE__STOP_TIMEOUT="3"),
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("node running as miner: address 0x"), line + proc.stderr.read()  # type: ignore[union-attr]
        status = magnet(tmp_path, "status", "--json", MAGNET_HOME=str(home))
        report = json.loads(status.stdout)
        assert report["node_running"] is True and report["node_pid"] == proc.pid
        assert report["schema_versions"] == {"node": 1}
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
        assert proc.returncode == ExitCode.OK, err
        assert time.monotonic() - t0 < 3 + 1.5
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    log = (home / "logs" / "magnet.log").read_text()
    assert "node stopping: signal SIGTERM" in log and "node stopped" in log
    assert PASSWORD not in log + out + err


def test_no_arguments_launch_the_desktop_module(monkeypatch: pytest.MonkeyPatch) -> None:
    import node_cli_plugin

    monkeypatch.setattr(node.cli.launch, "DESKTOP_MODULE", "node_cli_plugin")
    assert main([]) == ExitCode.OK
    assert node_cli_plugin.CALLS[-1] == "desktop opened"


def test_headless_validator_runs_until_sigterm_in_process(
    cli_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import threading

    assert main(["init", "--password-file", cli_env["pw"]]) == ExitCode.OK
    printed: list[str] = []
    real_out = node.cli.launch.out

    def out(text: str = "", stream: object = None) -> None:
        printed.append(text)
        real_out(text)  # type: ignore[arg-type]
        if text.startswith("node running"):  # printed once the signal handlers are in place
            threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGTERM)).start()

    monkeypatch.setattr(node.cli.launch, "out", out)
    absent_roles(monkeypatch)
    handler_before = signal.getsignal(signal.SIGTERM)
    monkeypatch.setenv("MAGNET_NODE__STOP_TIMEOUT", "2")
    assert main(["--headless", "--validator", "--password-file", cli_env["pw"]]) == ExitCode.OK
    assert any(line.startswith("node running as validator: address 0x") for line in printed)
    assert "validator role is not available yet" in capsys.readouterr().err  # (absent_roles)
    assert signal.getsignal(signal.SIGTERM) == handler_before  # the node put the old handler back


def run_in_terminal(argv: list[str], env: dict[str, str], answers: list[str], timeout: float = 30) -> str:
    """Run ``argv`` with a pseudo-terminal as its controlling terminal; answer each prompt in turn."""
    import pty
    import select

    pid, fd = pty.fork()
    if pid == 0:  # the child: its stdin/stdout/stderr and /dev/tty are the pty
        os.execve(argv[0], argv, env)
    output, pending = b"", list(answers)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if not ready:
                continue
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            output += chunk
            if pending and output.rstrip().endswith(b":"):
                time.sleep(0.3)  # let getpass finish switching echo off and block in its read
                os.write(fd, pending.pop(0).encode() + b"\n")
    finally:
        os.close(fd)
        _, status = os.waitpid(pid, 0)
    text = output.decode(errors="replace")
    return f"exit={os.waitstatus_to_exitcode(status)}\n{text}"


@pytest.mark.slow
def test_interactive_init_asks_twice_and_shows_the_mnemonic_once(tmp_path: Path) -> None:
    from node.logs import bip39_words

    env = subprocess_env(tmp_path, MAGNET_HOME=str(tmp_path / "home"))
    argv = [sys.executable, "-m", "node.cli", "init", "--words", "24"]
    mismatch = run_in_terminal(argv, env, [PASSWORD, PASSWORD + "x"])
    assert mismatch.startswith(f"exit={int(ExitCode.NO_PASSWORD)}") and "differ" in mismatch
    result = run_in_terminal(argv, env, [PASSWORD, PASSWORD])
    assert result.startswith("exit=0"), result
    assert PASSWORD not in result  # getpass does not echo
    words = bip39_words()
    lines = [line.split() for line in result.splitlines()]
    phrase_lines = [line for line in lines if line and set(line) <= words]
    assert [len(p) for p in phrase_lines] == [24]


def absent_roles(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every role 'not available': the test is about the core and CLI, whatever roles have landed."""
    from node.core import ROLE_MODULES

    for role in list(ROLE_MODULES):
        monkeypatch.setitem(ROLE_MODULES, role, f"{role}.no_such_service_module")  # type: ignore[index]


def test_a_role_missing_its_config_is_a_config_error(
    cli_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from node.core import ROLE_MODULES

    assert main(["init", "--password-file", cli_env["pw"]]) == ExitCode.OK
    absent_roles(monkeypatch)
    monkeypatch.setitem(ROLE_MODULES, "validator", "node_unconfigured_role")  # type: ignore[index]
    assert main(["--headless", "--validator", "--password-file", cli_env["pw"]]) == ExitCode.CONFIG
    err = capsys.readouterr().err
    assert "the validator role cannot start: the teapot role needs a network profile" in err
    assert not is_locked_now(Path(cli_env["home"]))


def is_locked_now(home: Path) -> bool:
    from node.paths import is_locked

    return is_locked(home) is not None


def test_headless_exits_node_failed_when_a_service_fails(
    cli_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from node.core import ROLE_MODULES

    assert main(["init", "--password-file", cli_env["pw"]]) == ExitCode.OK
    absent_roles(monkeypatch)
    monkeypatch.setitem(ROLE_MODULES, "miner", "node_crashing_role")  # tests/node/node_crashing_role.py
    monkeypatch.setenv("MAGNET_NODE__STOP_TIMEOUT", "2")
    assert main(["--headless", "--password-file", cli_env["pw"]]) == ExitCode.NODE_FAILED
    assert "the GPU fell off the bus" in capsys.readouterr().err
    log = (Path(cli_env["home"]) / "logs" / "magnet.log").read_text()
    assert "service crashing failed" in log and "node stopped" in log


def test_headless_with_a_bad_network_profile_is_a_config_error(
    cli_env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["init", "--password-file", cli_env["pw"]]) == ExitCode.OK
    bad = tmp_path / "net.json"
    bad.write_text('{"format": "magnet-network-profile", "version": 1}')
    assert main(["--headless", "--password-file", cli_env["pw"], "--network", str(bad)]) == ExitCode.CONFIG
    assert "missing field" in capsys.readouterr().err


def test_status_gathers_sections_from_packages(
    cli_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import node.cli.status_cmd

    monkeypatch.setattr(node.cli.status_cmd, "STATUS_MODULES", ("node_status_section", "absent.status"))
    assert main(["status", "--json"]) == ExitCode.OK
    report = json.loads(capsys.readouterr().out)
    assert report["node_status_section"] == {
        "tasks_running": 2, "store": str(Path(cli_env["home"]) / "store.sqlite")
    }
    assert report["initialised"] is True and report["node_running"] is False


def test_the_core_imports_no_chain_or_ml_library(tmp_path: Path) -> None:
    """The GUI imports node.core on its start path: it must not pull eth_account, web3, torch or libp2p."""
    probe = (
        "import sys, node.core; "
        "heavy = ('torch', 'transformers', 'web3', 'libp2p', 'eth_account', 'eth_abi', 'PySide6'); "
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60,
                            env=subprocess_env(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
