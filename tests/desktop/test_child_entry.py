"""The hidden child entry point (`magnet --child MODULE ARGS`) and the child commands built from it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from miner.jobs import JobDriver
from node.child import CHILD_MODULES, child_command, run_child
from node.cli import main

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("module", sorted(CHILD_MODULES))
def test_child_command_in_both_modes(module: str) -> None:
    assert child_command(module, frozen=False) == [sys.executable, "-m", module]
    assert child_command(module, frozen=True) == [sys.executable, "--child", module]


def test_child_command_follows_sys_frozen(monkeypatch: pytest.MonkeyPatch) -> None:
    assert child_command("miner.train_child")[1] == "-m"
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    assert child_command("miner.train_child") == [sys.executable, "--child", "miner.train_child"]
    assert JobDriver(Path("."), 10.0, 0).command == [sys.executable, "--child", "miner.train_child"]


def test_child_command_refuses_other_modules() -> None:
    with pytest.raises(ValueError, match="not one of MAGNET's child modules"):
        child_command("os")


def test_sandbox_starts_its_child_through_child_command(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from validator import sandbox
    from validator.config import ValidatorConfig

    seen: list[list[str]] = []

    class Stop(Exception):
        pass

    def popen(cmd: list[str], **_kw: object) -> None:
        seen.append(cmd)
        raise Stop

    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sandbox.subprocess, "Popen", popen)
    with pytest.raises(Stop):
        sandbox.run_sandboxed({}, tmp_path, ValidatorConfig())
    assert seen[0][:3] == [sys.executable, "--child", "validator.sandbox_child"]


@pytest.mark.parametrize("argv", [["os"], ["miner.train_child.x"], ["runpy"], []])
def test_dispatch_refuses_anything_else(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--child", *argv]) == 2
    err = capsys.readouterr().err
    assert "--child is for MAGNET's own child processes" in err
    assert "miner.train_child" in err  # names what it accepts


def test_dispatch_runs_the_real_child_module(capsys: pytest.CaptureFixture[str]) -> None:
    # argparse in the child prints its usage and exits 0: the module really ran, with our arguments.
    assert run_child(["miner.train_child", "--help"]) == 0
    assert "usage: python -m miner.train_child" in capsys.readouterr().out
    assert run_child(["validator.sandbox_child"]) == 2  # its own argparse: the job file is missing


def test_dispatch_end_to_end_in_a_process(tmp_path: Path) -> None:
    """`magnet --child` in a fresh process: a bad job file gets the child's own error, not the CLI's."""
    job = tmp_path / "job.json"
    job.write_text("{}", encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-c", "import sys; from node.cli import main; sys.exit(main())",
         "--child", "miner.train_child", str(job)],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )
    assert done.returncode != 0
    assert '"event": "error"' in done.stdout, (done.stdout, done.stderr)


def test_the_miners_speed_probe_runs_as_a_child_too() -> None:
    """The miner measures its training speed once in `trainer.hardware` as a child (the node never
    imports torch); through `magnet --child` it works from a frozen app as well."""
    done = subprocess.run(
        [sys.executable, "-c", "import sys; from node.cli import main; sys.exit(main())",
         "--child", "trainer.hardware", "--seconds", "0.2"],
        capture_output=True, text=True, timeout=180, cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert float(done.stdout.strip().splitlines()[-1]) > 0
