"""``magnet audit``: recompute every weight and amount from published epoch files alone.

Input: epoch files (each fully re-verified by wallet.epochs: every receipt's EIP-712 signature, the
Merkle root and the total), the network's signing domain, the scoring parameters (the validator's
published ``[validator]`` config), and optionally the chain to compare roots and totals with what
was posted. For each validator and each task (its receipts share one ``issued_at``), in time order:

* the task's reward weight ``w`` (x 10^9) = ``round(score_e9 / place_scores[0])`` of its rank-1
  receipt (exact whenever ``place_scores[0] >= 1``; a task nobody ranked hands out nothing);
* the miners' weights = ``scoring.miner_weights`` over every receipt of that validator issued at or
  before the task (the same floats the validator computed, bit for bit);
* the amounts = ``scoring.epoch_amounts`` of ``w x 10^9`` over the task's miners by those weights.

DiLoCo round receipts (the groups an epoch file lists under ``rounds``, whose task id must be
``keccak("magnet-diloco" || run || round)``, so task receipts cannot be listed as a round) follow the
round rule instead: the round's emission (the sum of its amounts) split by their signed scores; in
the task history they weigh 0, as in the validator's own settling.

Tolerance: amounts must agree exactly (integers); weights are reported to 1e-12. A mismatch is
listed with the receipt it concerns. Receipts older than the earliest file given are not known to
the audit: give it every epoch file of the last seven days before the first task audited.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Callable, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any

from protocol.messages import Receipt
from protocol.signing import Domain
from validator.config import ValidatorConfig
from validator.scoring import E9, TaskScore, epoch_amounts, miner_weights
from wallet.epochs import EpochFile, load_epoch_file

WEIGHT_TOLERANCE = 1e-12


@dataclass
class AuditReport:
    epochs: int = 0
    tasks: int = 0
    rounds: int = 0  # DiLoCo round groups among the tasks
    receipts: int = 0
    mismatches: list[str] = field(default_factory=list)
    chain_checked: int = 0
    weights: dict[str, dict[str, float]] = field(default_factory=dict)  # task id -> miner -> weight

    @property
    def agrees(self) -> bool:
        return not self.mismatches

    def to_json(self) -> dict[str, Any]:
        return {
            "agrees": self.agrees,
            "epochs": self.epochs,
            "tasks": self.tasks,
            "rounds": self.rounds,
            "receipts": self.receipts,
            "chain_checked": self.chain_checked,
            "mismatches": self.mismatches,
            "amount_tolerance": 0,
            "weight_tolerance": WEIGHT_TOLERANCE,
            "weights": self.weights,
        }


def task_weight_e9(receipts: Sequence[Receipt], cfg: ValidatorConfig) -> int:
    top = next((r for r in receipts if r.rank == 1), None)
    if top is None or not cfg.place_scores or cfg.place_scores[0] <= 0:
        return 0
    return round(top.score_e9 / cfg.place_scores[0])


def audit_files(
    files: Sequence[bytes],
    domain: Domain,
    cfg: ValidatorConfig,
    chain_post: Callable[[int, str], Any] | None = None,
) -> AuditReport:
    report = AuditReport()
    loaded = [load_epoch_file(data, domain) for data in files]
    report.epochs = len(loaded)
    by_validator: dict[str, list[Receipt]] = defaultdict(list)
    rounds: dict[str, set[bytes]] = defaultdict(set)
    for epoch_file in loaded:
        by_validator[epoch_file.validator].extend(_receipts(epoch_file))
        rounds[epoch_file.validator].update(epoch_file.round_task_ids)
        if chain_post is not None:
            _check_post(epoch_file, chain_post(epoch_file.epoch, epoch_file.validator), report)
    for validator, receipts in by_validator.items():
        _audit_validator(receipts, cfg, report, rounds[validator])
    return report


def _receipts(epoch_file: EpochFile) -> list[Receipt]:
    out = []
    for signed in epoch_file.receipts:
        assert isinstance(signed.message, Receipt)
        out.append(signed.message)
    return out


def _check_post(epoch_file: EpochFile, post: Any, report: AuditReport) -> None:
    report.chain_checked += 1
    where = f"epoch {epoch_file.epoch} of {epoch_file.validator}"
    if epoch_file.total == 0:
        if post is not None:
            report.mismatches.append(f"{where}: an empty epoch file, but a root was posted")
        return
    if post is None:
        report.mismatches.append(f"{where}: no root posted on chain")
    elif post.root != epoch_file.root or post.total != epoch_file.total:
        report.mismatches.append(f"{where}: the posted root or total differs from the file's")


def _audit_validator(
    receipts: list[Receipt],
    cfg: ValidatorConfig,
    report: AuditReport,
    rounds: AbstractSet[bytes] = frozenset(),
) -> None:
    by_task: dict[bytes, list[Receipt]] = defaultdict(list)
    for r in receipts:
        by_task[r.task_id].append(r)
    # A DiLoCo round's receipts weigh nothing in the task history (the validator's settling finds
    # no task row for them) and are checked by the round rule.
    weights_e9 = {task: 0 if task in rounds else task_weight_e9(rs, cfg) for task, rs in by_task.items()}
    scores = [
        TaskScore(
            r.miner, r.task_id.hex(), r.issued_at / 1000.0, r.rank, r.pool_size, weights_e9[r.task_id] / E9
        )
        for r in receipts
    ]
    for task, task_receipts in sorted(by_task.items(), key=lambda kv: kv[1][0].issued_at):
        report.tasks += 1
        report.receipts += len(task_receipts)
        issued = {r.issued_at for r in task_receipts}
        if len(issued) != 1:
            report.mismatches.append(f"task 0x{task.hex()}: its receipts carry different issued_at times")
            continue
        now_ms = issued.pop()
        if task in rounds:
            report.rounds += 1
            _audit_round(task, task_receipts, report)
            continue
        history = [s for s, r in zip(scores, receipts, strict=True) if r.issued_at <= now_ms]
        weights = miner_weights(history, now_ms / 1000.0, cfg)
        report.weights["0x" + task.hex()] = {r.miner: weights.get(r.miner, 0.0) for r in task_receipts}
        expected = epoch_amounts(
            {r.miner: weights.get(r.miner, 0.0) for r in task_receipts}, weights_e9[task] * E9
        )
        for r in task_receipts:
            if r.amount != expected[r.miner]:
                report.mismatches.append(
                    f"task 0x{task.hex()[:12]} miner {r.miner}: receipt amount {r.amount}, "
                    f"recomputed {expected[r.miner]}"
                )


def _audit_round(task: bytes, receipts: list[Receipt], report: AuditReport) -> None:
    """The round rule (validator/diloco/receipts.py): the round's emission (the sum of its amounts)
    split by the signed scores (``score_e9``) with ``epoch_amounts``; ranks follow the scores;
    ``pool_size`` is the number of receipts."""
    where = f"DiLoCo round 0x{task.hex()[:12]}"
    emission = sum(r.amount for r in receipts)
    expected = epoch_amounts({r.miner: float(r.score_e9) for r in receipts}, emission)
    for r in receipts:
        if r.amount != expected[r.miner]:
            report.mismatches.append(
                f"{where} miner {r.miner}: receipt amount {r.amount}, recomputed {expected[r.miner]}"
            )
    by_rank = sorted(receipts, key=lambda r: r.rank)
    if [r.rank for r in by_rank] != list(range(1, len(receipts) + 1)) or any(
        r.pool_size != len(receipts) for r in receipts
    ):
        report.mismatches.append(f"{where}: ranks are not 1..{len(receipts)} or a pool size differs")
    elif any(a.score_e9 < b.score_e9 for a, b in itertools.pairwise(by_rank)):
        report.mismatches.append(f"{where}: a lower score is ranked above a higher one")


MAX_EPOCH_FILE = 64 * 1024 * 1024


def fetch_epoch_files(api_json: dict[str, Any], timeout: float = 30.0) -> list[bytes]:
    """Every epoch file a running validator publishes, through its local API (``GET /v1/epochs``).

    ``api_json`` is the validator's ``api.json`` (its ``url`` and ``token``). The files are not
    trusted because of where they came from: ``audit_files`` re-verifies each one (signatures, root,
    total) and compares it with the chain. Each file's sha256 is checked against the listing.
    """
    import hashlib
    import urllib.parse
    import urllib.request

    from protocol import strict_json

    url, token = api_json.get("url"), api_json.get("token")
    if not isinstance(url, str) or not isinstance(token, str):
        raise ValueError("the API file has no url and token: give the validator's api.json")

    def get(path: str) -> bytes:
        request = urllib.request.Request(url.rstrip("/") + path, headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            data: bytes = response.read(MAX_EPOCH_FILE + 1)
        if len(data) > MAX_EPOCH_FILE:
            raise ValueError(f"{path} is larger than {MAX_EPOCH_FILE} bytes: refused")
        return data

    listing = strict_json.loads(get("/v1/epochs"), "epoch listing")
    if not isinstance(listing, list):
        raise ValueError("the validator's epoch listing is not a list")
    files = []
    for entry in listing:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise ValueError(f"bad entry in the validator's epoch listing: {entry!r:.200}")
        data = get("/v1/epochs/" + urllib.parse.quote(entry["name"]))
        if hashlib.sha256(data).hexdigest() != entry.get("sha256"):
            raise ValueError(f"epoch file {entry['name']} does not match the sha256 in the listing")
        files.append(data)
    return files
