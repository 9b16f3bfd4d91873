"""``magnet status``: what this data directory holds and whether a node is running on it.

Reads only what needs no password and no running node (the lock, the keystore's public address,
the store's schema versions). Other packages add sections without editing this file: a module named
in ``STATUS_MODULES`` (``validator/status.py``: tasks, miners, ratings, scores) exposes
``status_section(config, data_dir) -> dict`` and must only read (the store may be open in a running
node: open it read-only, as ``schema_versions`` does).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
from typing import Any

from node.cli.common import Subparsers, config_from_args, data_dir_of, keystore_path, out
from node.cli.exitcodes import ExitCode
from node.config import Config
from node.paths import DataDir, is_locked
from node.store import read_only_query

STATUS_MODULES: tuple[str, ...] = ("p2p.status", "wallet.status", "miner.status", "validator.status")


def register(subparsers: Subparsers) -> None:
    if "status" in subparsers.choices:
        return
    sub = subparsers.add_parser("status", help="the data directory, its wallet and whether a node runs")
    sub.add_argument("--json", action="store_true", help="print one JSON object")
    sub.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    data_dir = data_dir_of(config)
    holder = is_locked(data_dir.root) if data_dir.root.is_dir() else None
    report = {
        "data_dir": str(data_dir.root),
        "initialised": data_dir.root.is_dir(),
        "node_running": holder is not None,
        "node_pid": holder or None,
        "wallet_address": wallet_address(keystore_path(config, data_dir)),
        "network_profile": config.node.network or None,
        "schema_versions": schema_versions(data_dir.store),
    }
    for name, section in package_sections(config, data_dir).items():
        report[name] = section
    if args.json:
        print(json.dumps(report, indent=2), flush=True)
    else:
        for key, value in report.items():
            out(f"{key:<16} {'-' if value is None else value}")
    return int(ExitCode.OK)


def package_sections(config: Config, data_dir: DataDir) -> dict[str, Any]:
    """``{package: section}`` from every status module that exists in this build."""
    sections: dict[str, Any] = {}
    for module_name in STATUS_MODULES:
        try:
            if importlib.util.find_spec(module_name) is None:
                continue
        except ModuleNotFoundError:
            continue
        module = importlib.import_module(module_name)
        sections[module_name.split(".")[0]] = module.status_section(config, data_dir)
    return sections


def wallet_address(path: object) -> str | None:
    """The address a keystore declares (public, no password needed); None when absent or unreadable."""
    try:
        with open(str(path), "rb") as f:
            data = json.loads(f.read(65536))
    except (OSError, ValueError):
        return None
    address = data.get("address") if isinstance(data, dict) else None
    if not isinstance(address, str) or len(address) not in (40, 42):
        return None
    return address if address.startswith("0x") else "0x" + address


def schema_versions(path: object) -> dict[str, int]:
    """Read-only look at the store (never creates or migrates it; fine while a node runs)."""
    rows = read_only_query(path, "SELECT component, version FROM schema_version")
    return {str(c): int(v) for c, v in rows or []}
