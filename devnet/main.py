"""``run_devnet``: the whole devnet run behind `magnet devnet` and bench/devnet.py."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from devnet.network import Devnet, DevnetSettings, start_devnet, wait_connected, wait_extra_miners
from devnet.run import DevnetFailed, TaskOutcome, close_epoch, create_task, follow_task, wait_claims
from devnet.show import Printer, leaderboard, tokens

SPEED_PROBE = (
    "from trainer.hardware import benchmark; t = benchmark(seconds=1.0); "
    "print(t.matmul_gflops * max(t.train_efficiency, 1e-3))"
)


@dataclass
class DevnetResult:
    ok: bool
    outcomes: list[TaskOutcome] = field(default_factory=list)
    balances: dict[str, int] = field(default_factory=dict)
    expected: dict[str, int] = field(default_factory=dict)
    phase_s: dict[str, float] = field(default_factory=dict)
    total_s: float = 0.0
    problems: list[str] = field(default_factory=list)
    startup_s: dict[str, float] = field(default_factory=dict)  # miner -> training child spawn-to-ready


def measure_speed() -> float:
    """Training speed of this machine (GFLOP/s), measured once in a child process; 0 when it fails."""
    try:
        done = subprocess.run(
            [sys.executable, "-c", SPEED_PROBE], capture_output=True, text=True, timeout=120, check=True
        )
        return float(done.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return 0.0


def run_devnet(
    root: Path,
    settings: DevnetSettings,
    stream: TextIO | None = None,
    keep_running: threading.Event | None = None,
) -> DevnetResult:
    """Start everything, run ``settings.tasks`` tasks to claimed rewards, print the results, stop.

    With ``keep_running`` the devnet stays up after the results until that event is set.
    """
    from node.logs import setup_logging

    printer = Printer(stream)
    started = time.monotonic()
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    logs = setup_logging(root / "devnet.log", "INFO")  # every node's log in one file, not on the console
    printer.phase(
        "start", f"embedded chain, contracts, 1 validator and {settings.miners} miners on 127.0.0.1"
    )
    net = start_devnet(root, settings)
    result = DevnetResult(ok=False)
    try:
        wait_connected(net)
        result.phase_s["start"] = time.monotonic() - started
        printer.line(f"network profile: {net.profile_file}  (JSON-RPC {net.chain.rpc_url})")
        joiner_config = write_joiner_config(net)
        if settings.extra_miners:
            printer.phase(
                "waiting",
                f"for {settings.extra_miners} miner(s) from other processes: magnet mine "
                f"--network {net.profile_file} --config {joiner_config} --data-dir DIR",
            )
            wait_extra_miners(net, settings.extra_miners, timeout=300.0)
        for index in range(settings.tasks):
            _run_one(net, index, printer, result)
        _check_balances(net, result, printer)
        _show_startup(net, result, printer)
        result.total_s = time.monotonic() - started
        result.ok = not result.problems
        printer.phase(
            "done" if result.ok else "FAILED",
            f"{result.total_s:.0f} s in all" + ("" if result.ok else ": " + "; ".join(result.problems)),
        )
        if keep_running is not None:
            _serve(net, printer, keep_running)
    except (DevnetFailed, TimeoutError) as exc:
        result.problems.append(str(exc))
        result.total_s = time.monotonic() - started
        printer.phase("FAILED", str(exc))
    finally:
        net.stop()
        logs.close()
    return result


def _run_one(net: Devnet, index: int, printer: Printer, result: DevnetResult) -> None:
    task_id = create_task(net, index)
    printer.phase(
        f"task {index + 1} of {net.settings.tasks}",
        f"{net.settings.kind} on the bundled base model, {net.settings.rows} rows ({task_id[:14]}...)",
    )
    budget = net.settings.train_s * 3 + 240
    outcome = follow_task(net, task_id, printer, timeout_s=budget)
    names = {core.address: f"miner-{i + 1}" for i, core in enumerate(net.miners)}
    for line in leaderboard(outcome.receipts, names):
        printer.line(line)
    net.fund_newcomers()  # miners from other processes need gas to claim
    outcome.phase_s["epoch root"] = close_epoch(net, outcome.epoch, printer, timeout_s=60)
    ours = {core.address for core in net.miners}  # miners from other processes report for themselves
    owed = {r["miner"]: r["amount"] for r in outcome.receipts if r["amount"] > 0 and r["miner"] in ours}
    for r in outcome.receipts:
        if r["amount"] == 0 and r["miner"] in ours:
            why = net.validator_service.db.decisions(task_id)
            reasons = (
                "; ".join(d["message"] for d in why if d["miner"] == r["miner"]) or "ranked without reward"
            )
            result.problems.append(f"{names.get(r['miner'], r['miner'])} earned nothing: {reasons}")
    outcome.phase_s.update(wait_claims(net, owed, printer, timeout_s=90))
    for name, seconds in outcome.phase_s.items():
        result.phase_s[name] = result.phase_s.get(name, 0.0) + seconds
    for miner, amount in owed.items():
        result.expected[miner] = result.expected.get(miner, 0) + amount
    result.outcomes.append(outcome)
    _show_receipts(net, outcome, printer, result)


def _show_receipts(net: Devnet, outcome: TaskOutcome, printer: Printer, result: DevnetResult) -> None:
    from protocol.encoding import decode
    from wallet.receipts import verify_receipt

    printer.line("receipts (EIP-712, signed by the validator; checked here and by each miner):")
    domain = net.profile.domain()
    for r in outcome.receipts:
        try:
            signer = verify_receipt(decode(r["signed"]), domain)
            status = f"verified, signed by {signer}"
        except Exception as exc:
            status = f"NOT VERIFIED: {exc}"
            result.problems.append(f"receipt of {r['miner']} does not verify: {exc}")
        printer.line(
            f"  {r['miner']} rank {r['rank'] or '-'}/{r['pool_size']} epoch {r['epoch']} "
            f"amount {tokens(r['amount'])} (x1e18, validator units): {status}"
        )
        held = {
            m["task_id"]
            for i in range(len(net.miners))
            for m in net.miner_service(i).receipts()
            if net.miners[i].address == r["miner"]
        }
        if outcome.task_id not in held and any(core.address == r["miner"] for core in net.miners):
            result.problems.append(f"{r['miner']} holds no verified receipt for the task")


def _check_balances(net: Devnet, result: DevnetResult, printer: Printer) -> None:
    """Each miner's balance = the tokens its claims minted = its receipts' share of the epoch emission.

    A receipt's ``amount`` is in the validator's points; a claim mints
    amount x emission x stake / (posted stake x epoch total) tokens (MagnetRegistry.claim).
    """
    registry = net.chain.registry()
    validator = net.validator.address
    printer.line("token balances on chain (each miner claimed its share of the epoch emission):")
    for i, core in enumerate(net.miners):
        owed = 0
        for r in net.miner_service(i).receipts():
            post = registry.post(r["epoch"], validator)
            if r["amount"] and post is not None and post.total:
                owed += r["amount"] * registry.validator_share(r["epoch"], validator) // post.total
        balance = registry.token_balance(core.address)
        minted = sum(int(c["tokens"]) for c in registry.claims(payout=core.address))
        result.balances[core.address] = balance
        close = abs(balance - owed) <= len(net.miner_service(i).receipts())  # integer division per claim
        verdict = (
            "ok"
            if balance == minted and close
            else f"MISMATCH: claims minted {tokens(minted)}, the epoch amounts give {tokens(owed)}"
        )
        printer.line(f"  miner-{i + 1} {core.address}: {tokens(balance)} MAG ({verdict})")
        if verdict != "ok":
            result.problems.append(
                f"miner-{i + 1} holds {balance} units; claims minted {minted}, epoch amounts give {owed}"
            )


def _show_startup(net: Devnet, result: DevnetResult, printer: Printer) -> None:
    """Each miner's measured start-up of its training child (what it plans its next budgets with).
    A miner that was paid trained, so its child must have reported ready: a missing figure is a fault."""
    kind = net.settings.kind
    for i in range(len(net.miners)):
        service = net.miner_service(i)
        seconds = service.steps.startup_estimate(kind)
        if seconds is not None:
            result.startup_s[f"miner-{i + 1}"] = round(seconds, 1)
        elif any(r["amount"] for r in service.receipts()):
            result.problems.append(f"miner-{i + 1} trained but never timed its training child's start-up")
    if result.startup_s:
        figures = ", ".join(f"{name} {s:.1f} s" for name, s in result.startup_s.items())
        printer.line(f"training child start-up (spawn to ready, the miners' estimate): {figures}")


def write_joiner_config(net: Devnet) -> Path:
    """``miner.toml``: the devnet's miner settings for `magnet mine --config` in another process."""
    from devnet.network import miner_config

    m = miner_config(net.root, net.profile_file, net.settings).miner
    pinned = ", ".join(f"{k} = {float(v)}" for k, v in m.pinned_hparams.items())
    text = (
        f"# Written by `magnet devnet`: settings for miners joining it from other processes.\n"
        f"[miner]\nenabled_kinds = {json.dumps(m.enabled_kinds)}\nspeed_gflops = {m.speed_gflops}\n"
        f"autoresearch = {str(m.autoresearch).lower()}\npause_on_battery = false\n"
        f"budget_fraction = {m.budget_fraction}\nsearch_max_trials = {m.search_max_trials}\n"
        f"search_final_fraction = {m.search_final_fraction}\ncommit_margin_s = {m.commit_margin_s}\n"
        f"checkpoint_interval_s = {m.checkpoint_interval_s}\nmax_threads = {m.max_threads}\nnice = {m.nice}\n"
        f'pinned_hparams = {{{pinned}}}\n\n[p2p]\nlisten_addrs = ["/ip4/127.0.0.1/tcp/0"]\n'
    )
    path = net.root / "miner.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _serve(net: Devnet, printer: Printer, stop: threading.Event) -> None:
    printer.phase("running", "the devnet stays up; Ctrl-C stops it")
    printer.line(
        f"join it from another process:  magnet mine --network {net.profile_file} "
        f"--config {net.root / 'miner.toml'} --data-dir DIR"
    )
    printer.line(f"chain JSON-RPC: {net.chain.rpc_url}")
    printer.line("new tasks are announced as miners join (one every time the last one finished)")
    index = net.settings.tasks
    while not stop.is_set():
        for address in net.fund_newcomers():
            printer.line(f"funded {address} (a miner from another process) with gas for its claims")
        task_id = create_task(net, index)
        printer.phase(f"task {index + 1}", f"announced ({task_id[:14]}...)")
        try:
            outcome = follow_task(net, task_id, printer, timeout_s=net.settings.train_s * 3 + 240)
            close_epoch(net, outcome.epoch, printer, timeout_s=60)
            net.chain.advance_to_epoch(outcome.epoch + 2)  # claims open after the posting window
        except (DevnetFailed, TimeoutError) as exc:
            printer.line(f"task {index + 1}: {exc}")
        index += 1
        stop.wait(2.0)


def summary(result: DevnetResult) -> dict[str, Any]:
    return {
        "ok": result.ok,
        "total_s": round(result.total_s, 1),
        "phase_s": {k: round(v, 1) for k, v in result.phase_s.items()},
        "startup_s": result.startup_s,
        "problems": result.problems,
    }
