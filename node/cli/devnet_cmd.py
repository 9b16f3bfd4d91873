"""``magnet devnet`` (interim): a node core with a throwaway wallet in a temporary data directory.

The real devnet (chain, contracts, validator, miners, a real task: issue 7) replaces this module by
registering ``devnet`` from ``miner/cli.py``. Until then this proves the core starts from nothing:
no ``magnet init``, no MAGNET_HOME, nothing left behind.
"""

from __future__ import annotations

import argparse
import tempfile

from node.cli.common import Subparsers, config_from_args, out, plug_in_roles
from node.cli.exitcodes import ExitCode


def register(subparsers: Subparsers) -> None:
    if "devnet" in subparsers.choices:
        return
    sub = subparsers.add_parser(
        "devnet",
        help="start a node with a throwaway wallet and print its identity (the full devnet: issue 7)",
    )
    sub.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from node.core import NodeCore
    from wallet.signer import LocalSigner

    config = config_from_args(args)
    with tempfile.TemporaryDirectory(prefix="magnet-devnet-") as tmp:
        config.node.data_dir = tmp
        core = NodeCore(config, LocalSigner.create())
        plug_in_roles(core, ("p2p",), best_effort=True)
        core.start()
        try:
            out("devnet node started (interim: the full devnet with chain, validator and miners is issue 7)")
            for key, value in core.identity().items():
                out(f"  {key}: {value}")
        finally:
            core.stop()
    out("devnet node stopped; its throwaway wallet and data directory are gone")
    return int(ExitCode.OK)
