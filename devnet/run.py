"""Drive devnet tasks from creation to claimed rewards, printing progress; the results for the report.

Phases of one task as the devnet shows them (and bench/devnet.py times them): announce+join,
train (autoresearch and the final run), reveal, evaluate, receipts, epoch root, proofs, claims.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devnet.network import Devnet
from devnet.show import Printer, miner_line
from protocol.encoding import decode
from protocol.messages import E9, Receipt

# Validator task phase -> the devnet's phase name.
PHASE_NAMES = {
    "created": "announce",
    "joining": "join",
    "training": "train",
    "revealing": "reveal",
    "evaluating": "evaluate",
    "scoring": "receipts",
    "receipts": "receipts",
    "finished": "receipts",
}


class DevnetFailed(RuntimeError):
    """The devnet run did not reach claimed rewards; the message says where it stopped and why."""


@dataclass
class TaskOutcome:
    task_id: str
    epoch: int
    receipts: list[dict[str, Any]]
    phase_s: dict[str, float] = field(default_factory=dict)


def task_data(net: Devnet, index: int) -> Path:
    """``rows`` rows of the bundled data set for task ``index`` (a fresh draw per task)."""
    from validator.tasks import bundled_dataset, sample_rows

    out = net.root / f"task-{index + 1}-{net.settings.kind}.jsonl"
    kind = net.settings.kind
    return sample_rows(bundled_dataset(kind), kind, net.settings.rows, random.Random(index), out)


def create_task(net: Devnet, index: int) -> str:
    engine = net.validator_service.engine
    kind = net.settings.kind
    if kind == "image":  # the tiny diffusers pipeline (assets/image-model: no README to leave out)
        from validator.tasks import bundled_image_model_dir

        model = bundled_image_model_dir()
    else:
        model = base_model_copy(net.root)
    return str(engine.create_task(task_data(net, index), kind, str(model)))


def base_model_copy(root: Path) -> Path:
    """The bundled base model without its README and training log.

    Why: a model bundle admits only .json/.model/.safetensors/.txt files, and the validator packs the
    whole 'bundled' directory (README.md included), which fails; a clean copy works around it.
    """
    import shutil

    from trainer.models import bundled_base_model_dir

    target = root / "base-model"
    if not target.exists():
        staging = root / "base-model.partial"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        for path in bundled_base_model_dir().iterdir():
            if (
                path.suffix in (".json", ".safetensors", ".model", ".txt")
                and path.name != "training_log.json"
            ):
                shutil.copy2(path, staging / path.name)
        staging.rename(target)
    return target


def follow_task(net: Devnet, task_id: str, printer: Printer, timeout_s: float) -> TaskOutcome:
    """Print the task's phases and the miners' progress until it finishes; time each phase."""
    db = net.validator_service.db
    phase_s: dict[str, float] = {}
    current, since = "", time.monotonic()
    deadline = time.monotonic() + timeout_s
    while True:
        task = db.task(task_id)
        name = PHASE_NAMES.get(task.phase, task.phase) if task else "announce"
        if name != current:
            if current:
                phase_s[current] = phase_s.get(current, 0.0) + time.monotonic() - since
            current, since = name, time.monotonic()
            printer.phase(name, _phase_detail(net, task))
        if task is not None and task.phase == "failed":
            raise DevnetFailed(f"the validator failed task {task_id[:14]}: {task.reason}")
        if task is not None and task.phase == "finished":
            break
        if time.monotonic() > deadline:
            raise DevnetFailed(f"task {task_id[:14]} did not finish within {timeout_s:.0f} s (phase {name})")
        if name in ("train", "join", "reveal"):
            printer.progress(" | ".join(miner_line(i, net.miner_service(i)) for i in range(len(net.miners))))
        time.sleep(0.25)
    phase_s[current] = phase_s.get(current, 0.0) + time.monotonic() - since
    receipts = [_receipt_row(r) for r in db.receipts(task_id)]
    epoch = receipts[0]["epoch"] if receipts else 0
    return TaskOutcome(task_id, epoch, receipts, phase_s)


def _phase_detail(net: Devnet, task: Any) -> str:
    if task is None:
        return "the validator announces the task on gossip"
    left = max(
        0.0, (task.commit_by if task.phase in ("joining", "training") else task.reveal_by) - time.time()
    )
    return {
        "joining": f"miners ask to join; the pool is drawn in {max(0.0, task.join_by - time.time()):.0f} s",
        "training": f"autoresearch + final run; commitments due in {left:.0f} s",
        "revealing": "miners push their artifacts and salts to the validator",
        "evaluating": "the validator scores each artifact in a sandbox on private test and synthetic data",
        "scoring": "ranking, anti-gaming checks, signed receipts",
        "receipts": "receipts sent to each miner and gossiped",
    }.get(task.phase, "")


def _receipt_row(row: dict[str, Any]) -> dict[str, Any]:
    receipt = decode(bytes(row["signed"])).message
    assert isinstance(receipt, Receipt)
    return {
        "miner": receipt.miner,
        "rank": receipt.rank,
        "pool_size": receipt.pool_size,
        "test_loss": receipt.test_loss_e9 / E9,
        "synthetic_loss": receipt.synthetic_loss_e9 / E9,
        "score": receipt.score_e9 / E9,
        "amount": receipt.amount,
        "epoch": receipt.epoch,
        "signed": bytes(row["signed"]),
    }


def close_epoch(net: Devnet, epoch: int, printer: Printer, timeout_s: float) -> float:
    """Move the chain into the next epoch and wait for the validator to post the root; seconds taken."""
    started = time.monotonic()
    printer.phase("epoch root", f"chain moved to epoch {epoch + 1}; the validator posts epoch {epoch}'s root")
    net.chain.advance_to_epoch(epoch + 1)
    db = net.validator_service.db
    while True:
        row = db.epoch(epoch)
        if row is not None and row["state"] in ("posted", "empty"):
            printer.line(f"epoch {epoch}: {row['state']} (root 0x{bytes(row['root'] or b'').hex()[:16]}...)")
            return time.monotonic() - started
        if row is not None and row["state"] in ("missed", "conflict"):
            raise DevnetFailed(f"epoch {epoch} was {row['state']}: {row['reason']}")
        if time.monotonic() - started > timeout_s:
            raise DevnetFailed(f"the validator did not post epoch {epoch} within {timeout_s:.0f} s")
        time.sleep(0.25)


def wait_claims(
    net: Devnet, expected: dict[str, int], printer: Printer, timeout_s: float
) -> dict[str, float]:
    """Until every miner with a reward holds a verified proof and claimed it; seconds per phase."""
    started = time.monotonic()
    printer.phase("proofs", "each miner receives its Merkle proof and checks it against the root on chain")
    epochs = {r["epoch"] for i in range(len(net.miners)) for r in net.miner_service(i).receipts()}
    if epochs:  # claims open once the posting window (the next epoch) has closed
        net.chain.advance_to_epoch(max(epochs) + 2)
    proofs_at = 0.0
    while True:
        have_proofs = all(_miner_has(net, addr, claimed=False) for addr in expected)
        if have_proofs and not proofs_at:
            proofs_at = time.monotonic() - started
            printer.phase("claims", "each miner claims its reward on chain")
        if all(_miner_has(net, addr, claimed=True) for addr in expected):
            total = time.monotonic() - started
            return {"proofs": proofs_at or total, "claims": total - (proofs_at or total)}
        if time.monotonic() - started > timeout_s:
            missing = [a for a in expected if not _miner_has(net, a, claimed=True)]
            raise DevnetFailed(
                f"{len(missing)} miner(s) did not claim within {timeout_s:.0f} s: " + ", ".join(missing)
            )
        time.sleep(0.25)


def _miner_has(net: Devnet, address: str, claimed: bool) -> bool:
    for i, core in enumerate(net.miners):
        if core.address == address:
            proofs = net.miner_service(i).db.proofs()
            return bool(proofs) and (not claimed or all(p["claimed"] for p in proofs))
    return False
