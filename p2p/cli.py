"""``magnet peers`` (the peer book a node last saved) and ``magnet node`` (a plain relay node).

Cheap to import: libp2p, the wallet and the node core are imported inside the handlers.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from node.cli.common import Subparsers, config_from_args, data_dir_of, out
from node.cli.exitcodes import CliError, ExitCode


def register(subparsers: Subparsers) -> None:
    peers = subparsers.add_parser("peers", help="the peer book: peer id, address, payout, roles, last seen")
    peers.add_argument("--json", action="store_true", help="print one JSON object")
    peers.set_defaults(handler=show_peers)
    node = subparsers.add_parser(
        "node", help="run a plain relay node that joins the network (--network FILE) and logs what it sees"
    )
    node.add_argument("--wallet", action="store_true",
                      help="sign the node's Identity with the wallet's key (default: a throwaway key)")
    node.set_defaults(handler=run_node)


def peerbook_file(args: argparse.Namespace) -> Path:
    config = config_from_args(args)
    return data_dir_of(config).root / Path(config.p2p.key_file).parent / "peers.json"


def show_peers(args: argparse.Namespace) -> int:
    path = peerbook_file(args)
    try:
        book = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CliError(ExitCode.NOT_AVAILABLE, f"no peer book at {path}: start a node first "
                       "(`magnet --headless --network FILE` or `magnet node --network FILE`)") from None
    except (OSError, ValueError) as exc:
        raise CliError(ExitCode.ERROR, f"cannot read the peer book {path}: {exc}; delete it, the node "
                       "writes a new one") from None
    if args.json:
        print(json.dumps(book, indent=2), flush=True)
        return int(ExitCode.OK)
    age = time.time() - float(book.get("saved_at", 0))
    out(f"this node {book.get('peer_id')} (peer book saved {age:.0f} s ago)")
    connected = set(book.get("connected", []))
    for peer in book.get("peers", []):
        out(format_peer(peer, peer.get("peer_id") in connected))
    out(f"{len(book.get('peers', []))} peers known, {len(connected)} connected")
    return int(ExitCode.OK)


def format_peer(peer: dict[str, Any], connected: bool) -> str:
    roles = ",".join(peer.get("roles", [])) or "-"
    seen = time.time() - float(peer.get("last_seen", 0))
    hardware = peer.get("hardware", {})
    return (f"{'*' if connected else ' '} {peer.get('peer_id')}  {peer.get('address')}  "
            f"payout {peer.get('payout_address')}  {roles:<16} seen {seen:.0f} s ago  "
            f"{hardware.get('cpu_cores', '?')} cores {hardware.get('ram_mb', '?')} MiB "
            f"{hardware.get('gpu_name') or 'no GPU'}")


def run_node(args: argparse.Namespace) -> int:
    """A node with only the p2p role: joins, relays gossip, serves public blobs, logs events."""
    from node.cli.common import plug_in_roles, unlock_wallet
    from node.core import NodeCore
    from node.logs import setup_logging
    from wallet.signer import LocalSigner

    config = config_from_args(args)
    if not config.node.network:
        raise CliError(ExitCode.USAGE, "`magnet node` needs --network FILE (a network profile)")
    data_dir = data_dir_of(config)
    signer = unlock_wallet(config, data_dir) if args.wallet else LocalSigner.create()
    console = setup_logging(None, config.node.log_level, console=sys.stderr)
    core = NodeCore(config, signer)
    _ = core.profile  # a bad profile fails now, as a CONFIG error
    core.events.subscribe(log_event)
    try:
        plug_in_roles(core, ("p2p",))
        core.start()
        core.run_until_signal(ready=lambda: out(f"p2p node running: {core.identity()}"))
    finally:
        core.stop()
        console.close()
    if core.failure is not None:
        raise CliError(ExitCode.NODE_FAILED, f"the node stopped because a service failed: {core.failure}")
    return int(ExitCode.OK)


def log_event(event: Any) -> None:
    if event.kind.startswith("p2p."):
        fields = " ".join(f"{k}={v}" for k, v in event.fields().items() if k != "at")
        out(f"{event.kind} {fields}", stream=sys.stderr)
