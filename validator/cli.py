"""Commands of the validator: ``magnet validator``, ``magnet task ...``, ``magnet audit``, ``magnet status``.

Cheap to import: the node core, p2p, wallet and trainer load inside the handlers. ``task`` talks to
the running validator through its local HTTP API (port and token in ``<data dir>/validator/api.json``);
``status`` adds the validator's tasks, miners, ratings and scores (read-only from the store, fine
while the node runs) to the node's own status.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from node.cli.common import Subparsers, config_from_args, data_dir_of, out
from node.cli.exitcodes import CliError, ExitCode


def register(subparsers: Subparsers) -> None:
    if "validator" not in subparsers.choices:
        sub = subparsers.add_parser("validator", help="run the validator headless (until Ctrl-C / SIGTERM)")
        sub.set_defaults(handler=run_validator)
    if "task" not in subparsers.choices:
        _register_task(subparsers)
    if "audit" not in subparsers.choices:
        sub = subparsers.add_parser("audit", help="recompute weights and amounts from epoch files alone")
        sub.add_argument("epoch_files", nargs="*", type=Path, metavar="EPOCH_FILE")
        sub.add_argument(
            "--api-file",
            type=Path,
            help="fetch every epoch file from a running validator's API (its <data dir>/validator/api.json)",
        )
        sub.add_argument(
            "--no-chain", action="store_true", help="do not compare with the roots posted on chain"
        )
        sub.add_argument("--json", action="store_true", help="print one JSON object")
        sub.set_defaults(handler=run_audit)
    if "status" not in subparsers.choices:
        sub = subparsers.add_parser(
            "status", help="the node, its wallet, and the validator's tasks and scores"
        )
        sub.add_argument("--json", action="store_true", help="print one JSON object")
        sub.set_defaults(handler=run_status)


def _register_task(subparsers: Subparsers) -> None:
    task = subparsers.add_parser("task", help="submit tasks to the local validator and follow them")
    actions = task.add_subparsers(dest="task_action", metavar="ACTION", required=True)
    create = actions.add_parser("create", help="submit an organic task")
    create.add_argument("--kind", default="instruct", help="task kind (default instruct)")
    create.add_argument("--data", required=True, type=Path, help="training data file (.jsonl, .json)")
    create.add_argument("--model", default="bundled", help="base model directory, or 'bundled'")
    create.add_argument("--hours", type=float, default=None, help="training hours (default: from data size)")
    create.add_argument(
        "--rewards",
        default=None,
        help="grpo only: built-in rewards and weights, e.g. 'exact_answer:1.0,format:0.2' "
        "(default: validator.grpo_rewards)",
    )
    create.add_argument(
        "--max-new-tokens",
        type=int,
        default=None,
        metavar="N",
        help="grpo only: the completion length (8..1024 tokens) the task is judged at; its miners "
        "train at it too (default: validator.grpo_max_new_tokens, else 128)",
    )
    create.set_defaults(handler=run_task_create)
    status = actions.add_parser(
        "status", help="state of the validator's tasks (or of one); its winning artifact"
    )
    status.add_argument("task_id", nargs="?", help="0x task id; all tasks when omitted")
    status.add_argument(
        "--artifact", type=Path, metavar="FILE", help="write the task's winning artifact to FILE"
    )
    status.set_defaults(handler=run_task_status)
    for action in (create, status):  # the node adds these to top-level commands only
        for flag in ("--config", "--data-dir", "--password-file", "--network"):
            action.add_argument(flag, default=argparse.SUPPRESS, help=argparse.SUPPRESS)


def run_validator(args: argparse.Namespace) -> int:
    from node.cli import launch

    args.validator = True
    return int(launch.headless(args))


# --- the local API ----------------------------------------------------------------------------------
def _api(args: argparse.Namespace) -> dict[str, Any]:
    path = data_dir_of(config_from_args(args)).root / "validator" / "api.json"
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise CliError(
            ExitCode.NETWORK,
            f"no running validator found ({path} is missing): start one with "
            "`magnet validator` on this data directory",
        ) from None
    if not isinstance(info, dict) or "url" not in info or "token" not in info:
        raise CliError(ExitCode.CONFIG, f"{path} is damaged: restart the validator to rewrite it")
    return info


def _call(args: argparse.Namespace, method: str, path: str, body: dict[str, Any] | None = None) -> bytes:
    info = _api(args)
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(info["url"] + path, data=data, method=method)
    request.add_header("Authorization", f"Bearer {info['token']}")
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=120) as answer:
            return bytes(answer.read())
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read()).get("error", "")
        except ValueError:
            message = ""
        code = ExitCode.USAGE if exc.code == 400 else ExitCode.ERROR
        raise CliError(code, f"the validator refused: {message or exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise CliError(
            ExitCode.NETWORK,
            f"the validator's API at {info['url']} does not answer ({exc}): is "
            "`magnet validator` still running?",
        ) from None


def run_task_create(args: argparse.Namespace) -> int:
    body = {
        "kind": args.kind,
        "data_file": str(args.data.expanduser().resolve()),
        "model": args.model,
        "hours": args.hours,
    }
    params: dict[str, Any] = {}
    if args.rewards is not None:
        params["rewards"] = args.rewards
    if args.max_new_tokens is not None:
        params["max_new_tokens"] = args.max_new_tokens
    if params:
        body["params"] = params
    answer = json.loads(_call(args, "POST", "/v1/tasks", body))
    out(f"task {answer['task_id']} created; follow it with `magnet task status {answer['task_id']}`")
    return int(ExitCode.OK)


def run_task_status(args: argparse.Namespace) -> int:
    if args.artifact is not None:
        if not args.task_id:
            raise CliError(
                ExitCode.USAGE, "--artifact needs the task id: `magnet task status 0x... --artifact F`"
            )
        data = _call(args, "GET", f"/v1/tasks/{args.task_id}/artifact")
        args.artifact.write_bytes(data)
        out(f"winning artifact ({len(data)} bytes) written to {args.artifact}")
        return int(ExitCode.OK)
    path = f"/v1/tasks/{args.task_id}" if args.task_id else "/v1/status"
    print(json.dumps(json.loads(_call(args, "GET", path)), indent=2), flush=True)
    return int(ExitCode.OK)


# --- status -------------------------------------------------------------------------------------
def run_status(args: argparse.Namespace) -> int:
    from node.cli import status_cmd
    from validator.report import full_report, read_only_query

    config = config_from_args(args)
    query = read_only_query(data_dir_of(config).store)
    validator = full_report(query, config.validator) if query is not None else None
    if not args.json:
        code = status_cmd.run(args)
        if validator is not None:
            _print_validator(validator)
        return int(code)
    captured = io.StringIO()
    with contextlib.redirect_stdout(captured):
        code = status_cmd.run(args)
    report = json.loads(captured.getvalue())
    report["validator"] = validator
    print(json.dumps(report, indent=2, default=str), flush=True)
    return int(code)


def _print_validator(report: dict[str, Any]) -> None:
    out("validator tasks:")
    for t in report["tasks"]:
        out(
            f"  {t['id'][:18]} {t['kind']:<9} {t['phase']:<10} joined {t['joined']} selected {t['selected']} "
            f"committed {t['commitments']} revealed {t['reveals']} winner {t['winner'] or '-'} {t['reason']}"
        )
    out("miners (weight, tasks, wins, amount):")
    for m in report["miners"]:
        out(f"  {m['miner']} {m['weight']:.4f} {m['tasks']} {m['wins']} {m['amount']}")
    for kind, rows in report["ratings"].items():
        out(f"ratings ({kind}):")
        for r in rows:
            out(f"  {r['miner']} ordinal {r['ordinal']:.2f} (mu {r['mu']:.2f}, sigma {r['sigma']:.2f})")
    for e in report["epochs"]:
        out(f"epoch {e['epoch']}: {e['state']} total {e['total']} {e['reason']}")


# --- audit --------------------------------------------------------------------------------------
def run_audit(args: argparse.Namespace) -> int:
    from validator.audit import audit_files

    config = config_from_args(args)
    if not config.node.network:
        raise CliError(
            ExitCode.CONFIG,
            "audit needs the network profile (--network FILE): it gives the signing "
            "domain and the chain the roots were posted on",
        )
    from node.profile import NetworkProfile

    profile = NetworkProfile.load(Path(config.node.network).expanduser())
    files = []
    for path in args.epoch_files:
        try:
            files.append(path.read_bytes())
        except OSError as exc:
            raise CliError(ExitCode.USAGE, f"cannot read epoch file {path}: {exc}") from None
    if args.api_file is not None:
        files.extend(_fetch_epoch_files(args.api_file))
    if not files:
        raise CliError(ExitCode.USAGE, "give epoch files, or --api-file to fetch them from a validator")
    chain_post = None if args.no_chain else _chain_post(profile)
    from wallet.epochs import EpochFileError

    try:
        report = audit_files(files, profile.domain(), config.validator, chain_post)
    except EpochFileError as exc:
        raise CliError(
            ExitCode.ERROR, f"an epoch file is refused: {exc}; audit only files this network published"
        ) from None
    if args.json:
        print(json.dumps(report.to_json(), indent=2), flush=True)
    else:
        out(
            f"{report.epochs} epoch files, {report.tasks} tasks, {report.receipts} receipts, "
            f"{report.chain_checked} posts compared with the chain (amounts exact, weights to 1e-12)"
        )
        for line in report.mismatches:
            out(f"MISMATCH {line}")
        out("agrees with what was posted" if report.agrees else "DOES NOT AGREE")
    return int(ExitCode.OK) if report.agrees else int(ExitCode.ERROR)


def _fetch_epoch_files(api_file: Path) -> list[bytes]:
    from protocol import strict_json
    from validator.audit import fetch_epoch_files

    try:
        api_json = strict_json.loads(api_file.read_bytes(), "API file")
        if not isinstance(api_json, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as exc:
        raise CliError(ExitCode.USAGE, f"cannot read the validator's API file {api_file}: {exc}") from None
    try:
        return fetch_epoch_files(api_json)
    except OSError as exc:
        raise CliError(
            ExitCode.NETWORK,
            f"cannot fetch epoch files from {api_json.get('url')}: {exc}; is the validator running?",
        ) from None
    except ValueError as exc:
        raise CliError(ExitCode.ERROR, f"the validator's epoch files were refused: {exc}") from None


def _chain_post(profile: Any) -> Any:
    from wallet.chain import ChainClient
    from wallet.registry import Registry

    try:
        registry = Registry(ChainClient.connect(profile.rpc_url), profile.registry)
    except Exception as exc:
        raise CliError(
            ExitCode.NETWORK,
            f"cannot reach the chain at {profile.rpc_url}: {exc}; use --no-chain to audit the files alone",
        ) from None
    return registry.post
