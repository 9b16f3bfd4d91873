"""``magnet mine``: run the miner headless (also what `magnet --headless` runs).

Cheap to import: the node core, p2p, wallet and trainer load inside the handler.
"""

from __future__ import annotations

import argparse
import errno
import sys
import threading
import time
from typing import Any

from node.cli.common import Subparsers, config_from_args, data_dir_of, out, unlock_wallet
from node.cli.exitcodes import CliError, ExitCode

CONNECT_TIMEOUT_S = 30.0


def register(subparsers: Subparsers) -> None:
    if "mine" in subparsers.choices:
        return
    sub = subparsers.add_parser(
        "mine", help="mine: take tasks from the network, train, submit, collect rewards (until Ctrl-C)"
    )
    sub.add_argument(
        "--connect-timeout",
        type=float,
        default=CONNECT_TIMEOUT_S,
        metavar="S",
        help=f"give up when no peer is reachable within S seconds (default {CONNECT_TIMEOUT_S:.0f})",
    )
    sub.add_argument("--listen", metavar="MULTIADDR", help="p2p listen address, e.g. /ip4/0.0.0.0/tcp/4001")
    sub.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Start a node with the miner role; print what it does; stop on SIGINT/SIGTERM."""
    from node.core import NodeCore
    from node.paths import DataDirInUse, is_locked

    config = config_from_args(args)
    if getattr(args, "listen", None):
        config.p2p.listen_addrs = [args.listen]
    _check_ports_free(config.p2p.listen_addrs)
    data_dir = data_dir_of(config)
    holder = is_locked(data_dir.root) if data_dir.root.is_dir() else None
    if holder is not None:
        raise DataDirInUse(data_dir.root, holder or None)
    signer = unlock_wallet(config, data_dir)  # no wallet / wrong password first: the usual newcomer errors
    if not config.node.network:
        raise CliError(
            ExitCode.CONFIG,
            "no network to mine on: pass --network FILE (a network profile; "
            "`magnet devnet --keep-running` writes one and prints its path)",
        )
    core = NodeCore(config, signer)
    _ = core.profile  # a bad profile fails now, with CONFIG, before anything starts
    core.plug_in("miner")
    unsubscribe = core.events.subscribe(_print_event)
    try:
        _start(core)
        _wait_for_peers(core, float(getattr(args, "connect_timeout", CONNECT_TIMEOUT_S)))

        def announce() -> None:
            out(f"mining as {core.address} (data dir {data_dir.root}); stop with Ctrl-C")

        core.run_until_signal(ready=announce)
    finally:
        unsubscribe()
        _stop_quietly(core)
    if core.failure is not None:
        raise CliError(ExitCode.NODE_FAILED, f"the miner stopped because a service failed: {core.failure}")
    return int(ExitCode.OK)


def _check_ports_free(listen_addrs: list[str]) -> None:
    """A fixed TCP port that another program holds: say so now (the libp2p host would not tell)."""
    import socket

    for addr in listen_addrs:
        parts = addr.strip("/").split("/")
        if len(parts) < 4 or parts[0] not in ("ip4", "ip6") or parts[2] != "tcp" or parts[3] == "0":
            continue
        family = socket.AF_INET if parts[0] == "ip4" else socket.AF_INET6
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            try:
                probe.bind((parts[1], int(parts[3])))
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise CliError(
                        ExitCode.NETWORK,
                        f"the p2p port {parts[3]} is in use by another program: "
                        "pick another with --listen /ip4/0.0.0.0/tcp/PORT (or port 0 for any "
                        "free one)",
                    ) from None


def _stop_quietly(core: Any) -> None:
    """Stop the node; a slow stop is logged, never hiding the error that brought us here."""
    from node.core import StopTimeout

    try:
        core.stop()
    except StopTimeout as exc:
        print(f"magnet: warning: {exc}", file=sys.stderr, flush=True)


def _start(core: Any) -> None:
    from node.core import ServiceError

    try:
        core.start()
    except ServiceError as exc:
        cause = exc.__cause__
        while cause is not None and not isinstance(cause, OSError):
            cause = cause.__cause__
        text = str(exc)
        if (isinstance(cause, OSError) and cause.errno == errno.EADDRINUSE) or "in use" in text:
            raise CliError(
                ExitCode.NETWORK,
                "the p2p port is in use by another program: pick another with "
                "--listen /ip4/0.0.0.0/tcp/PORT (or port 0 for any free one)",
            ) from None
        if isinstance(cause, OSError) and cause.errno == errno.ENOSPC:
            raise CliError(
                ExitCode.STORE, f"the disk is full: free space under {core.data_dir.root}"
            ) from None
        raise


def _wait_for_peers(core: Any, timeout: float) -> None:
    svc = core.service("miner")
    deadline = time.monotonic() + timeout
    while not svc.p2p.host.get_network().get_connections():
        if time.monotonic() > deadline:
            raise CliError(
                ExitCode.NETWORK,
                f"no peers reachable within {timeout:.0f} s: check that the "
                "bootstrap peers in the network profile are running and reachable (for a devnet: "
                "is `magnet devnet --keep-running` still up?)",
            )
        time.sleep(0.2)
    out(f"connected to {len(svc.p2p.host.get_network().get_connections())} peer(s)")


_lock = threading.Lock()


def _print_event(event: Any) -> None:
    """One line per miner event worth telling (progress at most every 10 %)."""
    from miner import events as ev

    line = ""
    if isinstance(event, ev.StateChanged):
        line = f"state: {event.state}" + (f" ({event.detail})" if event.detail else "")
    elif isinstance(event, ev.TaskSeen):
        line = f"task {event.task_id[:14]} ({event.task_kind}): {event.reason}"
    elif isinstance(event, ev.Joined):
        line = f"join {event.task_id[:14]}: {'selected' if event.accepted else 'refused: ' + event.reason}"
    elif isinstance(event, ev.Committed):
        line = f"committed {event.task_id[:14]} ({event.seconds_before_deadline:.0f} s before the deadline)"
    elif isinstance(event, ev.Revealed):
        line = f"revealed {event.task_id[:14]}: {event.reason}"
    elif isinstance(event, ev.ReceiptReceived):
        line = (
            f"receipt {event.task_id[:14]}: rank {event.rank}/{event.pool_size}, {event.amount / 1e18:.4f} "
            f"MAG in epoch {event.epoch}"
            if event.verified
            else f"receipt refused: {event.reason}"
        )
    elif isinstance(event, ev.Claimed):
        line = f"claimed {event.amount / 1e18:.4f} MAG for epoch {event.epoch}"
    elif isinstance(event, ev.TaskGivenUp):
        line = f"gave up {event.task_id[:14]}: {event.reason}"
    elif isinstance(event, ev.WatchdogAlert | ev.NewerProtocol):
        line = f"warning: {event.fields()}"
    elif isinstance(event, ev.Progress) and _progress_step(event.percent):
        line = f"{event.phase or 'training'}: {event.percent:.0f}% (eta {event.eta_s:.0f} s)"
    if line:
        with _lock:
            print(line, file=sys.stdout, flush=True)


_last_decile = [-1]


def _progress_step(percent: float) -> bool:
    decile = int(percent // 10)
    if decile != _last_decile[0]:
        _last_decile[0] = decile
        return True
    return False
