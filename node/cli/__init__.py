"""``magnet``: the command line, a thin client of the node core.

``magnet`` alone opens the desktop app; ``magnet --headless`` runs the miner and ``magnet --headless
--validator`` the validator without a window; subcommands do the rest (docs/CLI.md lists them all).

Commands come from modules listed in ``COMMAND_MODULES``; each exposes ``register(subparsers)``
and sets ``handler=fn(args) -> int`` on its parser. Other packages add theirs by providing the
module named here (``wallet/cli.py``, ``miner/cli.py``...): a module that does not exist yet is
skipped, and the commands it will provide answer "not available yet" (``PLANNED``). Command
modules must be cheap to import (no torch, no web3, no libp2p): heavy imports go inside handlers.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import cast

from node.cli.common import Subparsers
from node.cli.exitcodes import CliError, ExitCode
from node.logs import redact

# Packages' command modules first: a package that implements a command takes it over from the
# node's interim version (node.cli.devnet_cmd is the stand-in `devnet` until miner/ has the real one).
COMMAND_MODULES: tuple[str, ...] = (
    "wallet.cli",
    "p2p.cli",
    "miner.cli",
    "validator.cli",
    "wallet.cli_validator",  # `magnet validator register|stake|...` unless validator.cli took `validator`
    "node.cli.init_cmd",
    "node.cli.config_cmd",
    "node.cli.status_cmd",
    "node.cli.devnet_cmd",
)

# Commands a later issue implements -> who provides them. Until then they exit NOT_AVAILABLE.
PLANNED: dict[str, str] = {
    "wallet": "the wallet (issue 3, wallet/cli.py)",
    "mine": "the miner (issue 7, miner/cli.py)",
    "validator": "the validator (issue 6, validator/cli.py)",
    "task": "the validator (issue 6, validator/cli.py)",
    "audit": "the validator (issue 6, validator/cli.py)",
    "peers": "the p2p layer (issue 4, p2p/cli.py)",
    "node": "the p2p layer (issue 4, p2p/cli.py)",
}

Handler = Callable[[argparse.Namespace], int]


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("magnet")
    except PackageNotFoundError:
        return "0+unknown (not installed: run `make install`)"


class Parser(argparse.ArgumentParser):
    """argparse with usage errors as ``CliError`` (so ``main`` returns instead of exiting)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise CliError(ExitCode.USAGE, f"{message}\n{self.format_usage().strip()}")


def build_parser(modules: Sequence[str] | None = None) -> argparse.ArgumentParser:
    parser = Parser(
        prog="magnet",
        description="MAGNET: fine-tune models for a peer-to-peer network and earn rewards. "
        "With no command, opens the desktop app.",
        epilog="Every command and exit code: docs/CLI.md.",
    )
    parser.add_argument("--version", action="version", version=f"magnet {version()}")
    parser.add_argument("--headless", action="store_true", help="run without a window (the miner role)")
    parser.add_argument("--validator", action="store_true", help="with --headless: run the validator role")
    add_common_options(parser, argparse.SUPPRESS)
    parser.set_defaults(config=None, data_dir=None, password_file=None, network=None)
    subparsers = cast(
        Subparsers,
        parser.add_subparsers(title="commands", dest="command", metavar="COMMAND", parser_class=Parser),
    )
    for name in COMMAND_MODULES if modules is None else modules:
        register_module(subparsers, name)
    for sub in set(subparsers.choices.values()):
        add_common_options(sub, argparse.SUPPRESS)
    for command, provider in PLANNED.items():
        if command not in subparsers.choices:
            add_planned(subparsers, command, provider)
    return parser


def add_common_options(parser: argparse.ArgumentParser, default: str | None) -> None:
    """Options every command takes, before or after its name (unless it defines its own)."""
    options = (
        ("--config", "FILE", "config file (default: MAGNET_CONFIG or the platform's)"),
        ("--data-dir", "DIR", "data directory (default: MAGNET_HOME or the platform's)"),
        ("--password-file", "FILE", "read the wallet password from FILE's first line"),
        ("--network", "FILE", "network profile to join (JSON)"),
    )
    for flag, metavar, text in options:
        if flag not in parser._option_string_actions:
            parser.add_argument(flag, metavar=metavar, help=text, default=default)


def register_module(subparsers: Subparsers, name: str) -> None:
    """Import ``name`` if it exists and let it register its commands."""
    try:
        if importlib.util.find_spec(name) is None:
            return
    except ModuleNotFoundError:
        return
    module = importlib.import_module(name)
    module.register(subparsers)


def add_planned(
    subparsers: Subparsers, command: str, provider: str
) -> None:
    # A prefix no argument uses: every word after the command (options included) is accepted, so
    # `magnet mine --network F` reports "not available" rather than a usage error.
    sub = subparsers.add_parser(
        command, help=f"(not available yet: {provider})", add_help=False, prefix_chars="\x01"
    )
    sub.add_argument("rest", nargs="*")

    def not_available(args: argparse.Namespace) -> int:
        raise CliError(
            ExitCode.NOT_AVAILABLE,
            f"`magnet {command}` is not available yet: {provider} provides it. "
            "`magnet --headless` runs the node core meanwhile.",
        )

    sub.set_defaults(handler=not_available)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``magnet`` console script. Returns the exit code."""
    args_in = list(sys.argv[1:] if argv is None else argv)
    if args_in[:1] == ["--child"]:  # hidden: a frozen executable starting its own child (node/child.py)
        from node.child import run_child

        return run_child(args_in[1:])
    try:
        try:
            args = build_parser().parse_args(argv)
        except SystemExit as done:  # --help and --version print, then "exit": return instead
            return int(done.code or 0) if isinstance(done.code, int | None) else int(ExitCode.USAGE)
        handler: Handler | None = getattr(args, "handler", None)
        if handler is not None:
            return int(handler(args))
        from node.cli import launch

        if args.headless:
            return launch.headless(args)
        if args.validator:
            raise CliError(ExitCode.USAGE, "--validator needs --headless (the validator has no window)")
        return launch.desktop(args)
    except CliError as exc:
        print(f"magnet: {redact(str(exc))}", file=sys.stderr, flush=True)
        return int(exc.code)
    except BrokenPipeError:
        # `magnet config show | head`: the reader left; that is not an error of ours.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return int(ExitCode.OK)
    except KeyboardInterrupt:
        print("magnet: interrupted", file=sys.stderr, flush=True)
        return int(ExitCode.INTERRUPTED)
    except Exception as exc:
        code = known_error_code(exc)
        if code is None:
            if logging.getLogger().handlers:  # a node's log file is open: keep the trace there too
                logging.getLogger("magnet.cli").error("unexpected error", exc_info=True)
            print(redact(traceback.format_exc()), file=sys.stderr, flush=True)
            message = f"unexpected error: {redact(repr(exc))}. Please report it with the log file."
            print(f"magnet: {message}", file=sys.stderr, flush=True)
            return int(ExitCode.ERROR)
        print(f"magnet: {redact(str(exc))}", file=sys.stderr, flush=True)
        return int(code)


def known_error_code(exc: BaseException) -> ExitCode | None:
    """The exit code for the errors the node's parts raise, by class (imports nothing new)."""
    table = (
        ("node.config", "ConfigError", ExitCode.CONFIG),
        ("node.profile", "ProfileError", ExitCode.CONFIG),
        ("node.paths", "DataDirInUse", ExitCode.DATA_DIR_IN_USE),
        ("node.paths", "DataDirError", ExitCode.CONFIG),
        ("node.store", "StoreError", ExitCode.STORE),
        ("node.core", "RoleNotAvailable", ExitCode.NOT_AVAILABLE),
        ("node.core", "RoleConfigError", ExitCode.CONFIG),
        ("node.core", "ServiceError", ExitCode.NODE_FAILED),
        ("node.core", "StopTimeout", ExitCode.NODE_FAILED),
        ("wallet.errors", "WrongPassword", ExitCode.WRONG_PASSWORD),
        ("wallet.errors", "NoPassword", ExitCode.NO_PASSWORD),
        ("wallet.walletdir", "WalletExists", ExitCode.WALLET_EXISTS),
        ("wallet.walletdir", "NoWallet", ExitCode.WALLET_MISSING),
    )
    for module_name, class_name, code in table:
        module = sys.modules.get(module_name)  # not imported: its errors cannot have been raised
        cls = getattr(module, class_name, None) if module else None
        if isinstance(cls, type) and isinstance(exc, cls):
            return code
    return None
