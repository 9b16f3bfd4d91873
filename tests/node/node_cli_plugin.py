"""A command module as another package would write one: it takes `mine` over from the placeholder."""

from __future__ import annotations

import argparse

CALLS: list[str] = []


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    sub = subparsers.add_parser("mine", help="mine (test plug-in)")
    sub.add_argument("--network", required=True)
    sub.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    CALLS.append(args.network)
    return 0


def main() -> int:
    """Stands in for desktop.app.main in the launcher test."""
    CALLS.append("desktop opened")
    return 0
