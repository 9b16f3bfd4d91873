"""``magnet devnet``: the whole system on this machine in one command (docs/DEVNET.md).

An embedded chain with the contracts, a registered validator and N miners on 127.0.0.1 with throwaway
wallets, and real tasks from the bundled data and base model, run to claimed rewards. Cheap to import:
the devnet package (chain, libp2p, the roles) loads inside the handler.
"""

from __future__ import annotations

import argparse
import errno
import json
import tempfile
import threading
from pathlib import Path

from node.cli.common import Subparsers, out
from node.cli.exitcodes import CliError, ExitCode


def register(subparsers: Subparsers) -> None:
    if "devnet" in subparsers.choices:
        return
    sub = subparsers.add_parser(
        "devnet", help="run the whole network on this machine: chain, validator, miners, a real task"
    )
    sub.add_argument("--miners", type=int, default=3, help="miners to start (default 3)")
    sub.add_argument("--kind", default="instruct", help="task kind (default instruct)")
    sub.add_argument("--tasks", type=int, default=1, help="tasks to run one after another (default 1)")
    sub.add_argument(
        "--train-seconds",
        type=float,
        default=90.0,
        metavar="S",
        help="training window of a task, seconds (default 90)",
    )
    sub.add_argument("--rows", type=int, default=240, help="rows of the bundled data per task (default 240)")
    sub.add_argument("--no-autoresearch", action="store_true", help="miners train with default settings")
    sub.add_argument("--rpc-port", type=int, default=0, help="port of the chain's JSON-RPC (default: any)")
    sub.add_argument(
        "--keep-running",
        action="store_true",
        help="stay up after the results, serving JSON-RPC and the network profile for "
        "`magnet mine --network FILE` in other processes",
    )
    sub.add_argument(
        "--extra-miners",
        type=int,
        default=0,
        metavar="N",
        help="with --keep-running: wait for N miners from other processes before the first task",
    )
    sub.add_argument("--json", action="store_true", help="also print a JSON summary at the end")
    sub.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from devnet.network import DevnetSettings

    if args.kind == "diloco":  # DiLoCo rounds over libp2p hosts (devnet/diloco.py, docs/DILOCO.md)
        from devnet.diloco import main as diloco_main

        return diloco_main([])
    if not 1 <= args.miners <= 32:
        raise CliError(ExitCode.USAGE, "--miners must be 1..32")
    if args.tasks < 1 or args.train_seconds < 10 or args.rows < 20:
        raise CliError(ExitCode.USAGE, "--tasks must be >= 1, --train-seconds >= 10, --rows >= 20")
    settings = DevnetSettings(
        miners=args.miners,
        kind=args.kind,
        tasks=args.tasks,
        train_s=args.train_seconds,
        rows=args.rows,
        autoresearch=not args.no_autoresearch,
        rpc_port=args.rpc_port,
        extra_miners=args.extra_miners,
    )
    if getattr(args, "data_dir", None):
        root = Path(args.data_dir).expanduser().resolve()
        return _run(root, settings, args)
    with tempfile.TemporaryDirectory(prefix="magnet-devnet-") as tmp:
        return _run(Path(tmp), settings, args)


def _run(root: Path, settings: object, args: argparse.Namespace) -> int:
    from devnet.main import run_devnet, summary
    from devnet.network import DevnetSettings
    from validator.tasks import TaskInputError

    assert isinstance(settings, DevnetSettings)
    stop = threading.Event() if args.keep_running else None
    try:
        result = run_devnet(root, settings, keep_running=stop)
    except KeyboardInterrupt:
        out("devnet stopped")
        return int(ExitCode.OK if args.keep_running else ExitCode.INTERRUPTED)
    except TaskInputError as exc:
        raise CliError(
            ExitCode.USAGE, f"cannot build a {settings.kind} task from the bundled data: {exc}"
        ) from None
    except OSError as exc:
        raise _os_error(exc, settings.rpc_port) from None
    if args.json:
        out(json.dumps(summary(result)))
    if not result.ok:
        raise CliError(ExitCode.NODE_FAILED, "the devnet did not complete: " + "; ".join(result.problems))
    return int(ExitCode.OK)


def _os_error(exc: OSError, port: int) -> CliError:
    if exc.errno == errno.EADDRINUSE:
        return CliError(
            ExitCode.NETWORK,
            f"port {port} is in use by another program: pick another with "
            "--rpc-port, or leave it out to use any free port",
        )
    if exc.errno == errno.ENOSPC:
        return CliError(
            ExitCode.STORE,
            "the disk is full: free some space (the devnet needs ~200 MB) or "
            "point --data-dir at another disk",
        )
    return CliError(ExitCode.ERROR, f"devnet: {exc}")
