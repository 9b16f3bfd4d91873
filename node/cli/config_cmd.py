"""``magnet config show``: every configuration key with its value and help (or as TOML)."""

from __future__ import annotations

import argparse
from pathlib import Path

from node.cli.common import Subparsers, config_from_args, out
from node.cli.exitcodes import CliError, ExitCode
from node.config import default_config_path, describe, to_toml


def register(subparsers: Subparsers) -> None:
    if "config" in subparsers.choices:
        return
    sub = subparsers.add_parser("config", help="show the configuration")
    actions = sub.add_subparsers(dest="config_action", metavar="ACTION")
    show = actions.add_parser("show", help="every key with its value and help")
    show.add_argument("--toml", action="store_true", help="print as a TOML file you can edit and load")
    show.set_defaults(handler=run_show)
    sub.set_defaults(handler=missing_action)


def missing_action(args: argparse.Namespace) -> int:
    raise CliError(ExitCode.USAGE, "say what to do: `magnet config show` (or `magnet config show --toml`)")


def run_show(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    if args.toml:
        print(to_toml(config), end="", flush=True)
        return int(ExitCode.OK)
    path = Path(args.config) if args.config else default_config_path()
    out(f"# config file: {path}{'' if path.exists() else ' (absent: defaults and environment only)'}")
    rows = describe(config)
    width = max(len(f"{section}.{key}") for section, key, _, _ in rows)
    for section, key, value, help_text in rows:
        out(f"{section + '.' + key:<{width}}  = {value!r:<24}  # {help_text}")
    out("\nOverride any key with MAGNET_<SECTION>__<KEY>=value, e.g. MAGNET_NODE__LOG_LEVEL=DEBUG.")
    return int(ExitCode.OK)
