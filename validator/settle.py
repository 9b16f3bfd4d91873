"""Settling a task: anti-gaming decisions, ranking, amounts and the signed receipts, in one step.

The amount rule (``magnet audit`` recomputes it from receipts alone, see validator.audit):

* a task's receipts all carry the same ``issued_at`` T, later than every earlier receipt of this
  validator; its reward weight ``w`` (x 10^9) is recoverable from the rank-1 receipt as
  ``score_e9 / place_scores[0]`` (``score_e9 = round(max(0, rank score) x w)``);
* the miners' weights W are ``scoring.miner_weights`` over every receipt of this validator with
  ``issued_at <= T`` (1 / 3 / 7 day windows ending at T);
* the task hands out ``w x 10^9`` units among its participants in proportion to W
  (``scoring.epoch_amounts``: exact integers, largest remainder). The registry then scales a
  validator's epoch so that its leaf amounts share that validator's part of the emission.

Everything (decisions, receipts, ratings, the phase change) is written in one transaction, so a
crash leaves either no receipt or all of them, and a restart never signs a second set.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from protocol.encoding import encode
from protocol.messages import Receipt
from protocol.signing import Domain, SignerLike, sign
from validator.antigaming import Decision, EvaluationRecord, TaskLimits, judge
from validator.config import ValidatorConfig
from validator.db import TaskRow, ValidatorDB
from validator.ratings import RatingBook
from validator.scoring import (
    E9,
    EvaluatedResult,
    RankedResult,
    TaskScore,
    epoch_amounts,
    miner_weights,
    rank_results,
    rank_score,
)


@dataclass(frozen=True)
class Outcome:
    decision: Decision
    ranked: RankedResult | None


def evaluation_records(task: TaskRow, db: ValidatorDB) -> list[EvaluationRecord]:
    """One record per miner selected into the pool, from what intake and evaluation stored."""
    commitments, reveals, evaluations = db.commitments(task.id), db.reveals(task.id), db.evaluations(task.id)
    records = []
    for joiner in db.joiners(task.id, "selected"):
        miner = joiner["miner"]
        c, r, e = commitments.get(miner), reveals.get(miner), evaluations.get(miner, {})
        records.append(
            EvaluationRecord(
                miner=miner,
                commit_seq=c["seq"] if c else None,
                committed_at=c["received_at"] if c else None,
                revealed_at=r["revealed_at"] if r else None,
                reveal_matches=bool(r and r["matches"]),
                artifact_hash=r["artifact_hash"] if r else "",
                artifact_size=r["artifact_size"] if r else 0,
                malformed=e.get("malformed", ""),
                test_loss_e9=e.get("test_e9"),
                synthetic_loss_e9=e.get("syn_e9"),
            )
        )
    return records


def decide(task: TaskRow, records: Sequence[EvaluationRecord], cfg: ValidatorConfig) -> list[Outcome]:
    limits = TaskLimits(
        task.commit_by, task.reveal_by, task.max_artifact_bytes, task.base_test_e9, task.base_syn_e9
    )
    decisions = judge(records, limits, cfg)
    by_miner = {r.miner: r for r in records}
    accepted = [
        EvaluatedResult(
            d.miner,
            by_miner[d.miner].test_loss_e9 or 0,
            by_miner[d.miner].synthetic_loss_e9,
            by_miner[d.miner].commit_seq or 0,
        )
        for d in decisions
        if d.accepted
    ]
    ranked = {r.miner: r for r in rank_results(accepted, cfg)}
    return [Outcome(d, ranked.get(d.miner)) for d in decisions]


def history_scores(db: ValidatorDB, up_to_ms: int) -> list[TaskScore]:
    """Every earlier receipt of this validator as a TaskScore (task weight from its task row)."""
    weights = {t.id: t.reward_weight_e9 for t in db.tasks()}
    return [
        TaskScore(
            r["miner"],
            r["task_id"],
            r["issued_at"] / 1000.0,
            r["rank"],
            r["pool_size"],
            weights.get(r["task_id"], 0) / E9,
        )
        for r in db.receipts()
        if r["issued_at"] <= up_to_ms
    ]


def receipt_time(db: ValidatorDB, now_ms: int) -> int:
    """``now_ms``, moved past the latest receipt so tasks are strictly ordered in time."""
    latest = db.store.query_one("SELECT MAX(issued_at) FROM val_receipt")
    return max(now_ms, int(latest[0]) + 1) if latest and latest[0] is not None else now_ms


def task_amounts(
    task: TaskRow, outcomes: Sequence[Outcome], db: ValidatorDB, issued_at: int, cfg: ValidatorConfig
) -> dict[str, int]:
    ranked_count = sum(1 for o in outcomes if o.ranked is not None)
    own = [
        TaskScore(
            o.decision.miner,
            task.id,
            issued_at / 1000.0,
            o.ranked.rank if o.ranked else 0,
            ranked_count,
            task.reward_weight_e9 / E9,
        )
        for o in outcomes
    ]
    weights = miner_weights([*history_scores(db, issued_at), *own], issued_at / 1000.0, cfg)
    return epoch_amounts(
        {o.decision.miner: weights.get(o.decision.miner, 0.0) for o in outcomes}, task.reward_weight_e9 * E9
    )


def settle(
    task: TaskRow,
    db: ValidatorDB,
    cfg: ValidatorConfig,
    epoch: int,
    domain: Domain,
    signer: SignerLike,
    payouts: dict[str, str],
    now_ms: int,
) -> int:
    """Decide, rank, sign and store every receipt of ``task``; returns how many were issued."""
    outcomes = decide(task, evaluation_records(task, db), cfg)
    issued_at = receipt_time(db, now_ms)
    amounts = task_amounts(task, outcomes, db, issued_at, cfg)
    ranked_count = sum(1 for o in outcomes if o.ranked is not None)
    evaluations = db.evaluations(task.id)
    with db.store.transaction() as conn:
        for o in outcomes:
            miner, rank = o.decision.miner, o.ranked.rank if o.ranked else 0
            score = rank_score(rank, ranked_count, cfg)
            nonce = db.next_counter("receipt_nonce")
            e = evaluations.get(miner, {})
            receipt = Receipt(
                task_id=task.task_id,
                miner=miner,
                payout=payouts.get(miner) or miner,
                validator=signer.address,
                rank=rank,
                pool_size=ranked_count,
                test_loss_e9=e.get("test_e9") or 0,
                synthetic_loss_e9=e.get("syn_e9") or 0,
                score_e9=round(max(0.0, score) * task.reward_weight_e9),
                amount=amounts[miner],
                epoch=epoch,
                nonce=nonce,
                issued_at=issued_at,
            )
            conn.execute(
                "INSERT INTO val_decision VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    task.id,
                    miner,
                    o.decision.reason.value,
                    o.decision.message,
                    o.decision.credited_to,
                    rank,
                    score,
                ),
            )
            conn.execute(
                "INSERT INTO val_receipt (task_id, miner, epoch, nonce, issued_at, rank, pool_size, "
                "amount, signed) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    task.id,
                    miner,
                    epoch,
                    nonce,
                    issued_at,
                    rank,
                    ranked_count,
                    str(receipt.amount),
                    encode(sign(receipt, domain, signer)),
                ),
            )
        update_ratings(db, task.kind, outcomes)
        winner = next((o.decision.miner for o in outcomes if o.ranked and o.ranked.rank == 1), None)
        db.update_task(task.id, phase="receipts", epoch=epoch, winner=winner)
    return len(outcomes)


def update_ratings(db: ValidatorDB, kind: str, outcomes: Sequence[Outcome]) -> None:
    book = RatingBook.from_dict(db.meta("ratings", {"version": 1, "ratings": []}))
    ranked = [
        o.decision.miner for o in sorted(outcomes, key=lambda o: o.ranked.rank if o.ranked else 0) if o.ranked
    ]
    book.update(kind, ranked, [o.decision.miner for o in outcomes if not o.ranked])
    db.set_meta("ratings", book.to_dict())
