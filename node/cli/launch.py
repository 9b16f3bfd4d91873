"""``magnet`` with no command (the desktop app) and ``magnet --headless [--validator]``."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from pathlib import Path

from node.cli.common import config_from_args, data_dir_of, out, plug_in_roles, unlock_wallet
from node.cli.exitcodes import CliError, ExitCode
from node.paths import is_locked

DESKTOP_MODULE = "desktop.app"


def desktop(args: argparse.Namespace) -> int:
    """Open the desktop app (imported only now: it pulls in Qt)."""
    if importlib.util.find_spec(DESKTOP_MODULE) is None:
        raise CliError(
            ExitCode.NOT_AVAILABLE,
            "the desktop app is not part of this build yet. Run `magnet --headless` to mine without a "
            "window, or `magnet devnet` to try the whole system on this machine.",
        )
    app = importlib.import_module(DESKTOP_MODULE)
    result = app.main()
    return int(result) if isinstance(result, int) else int(ExitCode.OK)


def headless(args: argparse.Namespace) -> int:
    """Start the node core with the configured wallet and its role; run until SIGINT/SIGTERM."""
    from node.core import NodeCore
    from node.logs import setup_logging

    if not args.validator and args.network and importlib.util.find_spec("miner.cli") is not None:
        return int(importlib.import_module("miner.cli").run(args))  # = `magnet mine` (issue 7)
    config = config_from_args(args)
    data_dir = data_dir_of(config)
    holder = is_locked(data_dir.root)
    if holder is not None:
        from node.paths import DataDirInUse

        raise DataDirInUse(data_dir.root, holder or None)
    if config.node.network:  # a bad --network file fails now (CONFIG), before the password prompt
        from node.profile import NetworkProfile

        NetworkProfile.load(Path(config.node.network).expanduser())
    signer = unlock_wallet(config, data_dir)
    role = "validator" if args.validator else "miner"
    console = setup_logging(None, config.node.log_level, console=sys.stderr)
    core = NodeCore(config, signer)
    try:
        plug_in_roles(core, ("p2p", role))
        core.start()

        def announce() -> None:
            out(f"node running as {role}: address {core.address}, data dir {data_dir.root}")
            out("stop it with Ctrl-C or SIGTERM")

        core.run_until_signal(ready=announce)
    finally:
        core.stop()
        console.close()
    if core.failure is not None:
        raise CliError(ExitCode.NODE_FAILED, f"the node stopped because a service failed: {core.failure}")
    return int(ExitCode.OK)
