"""Anti-gaming: decide, per miner and with a reason, whether a task result may be ranked.

The checks run in this order and a miner gets the first reason that applies:

1. per miner, from intake: ``MISSING`` (no commitment, or never revealed), ``LATE`` (commitment
   received after ``commit_by`` or artifact after ``reveal_by``), ``OVERSIZED`` (artifact larger
   than announced), ``MISMATCHED_HASH`` (artifact hash or salt do not open the commitment),
   ``MALFORMED`` (bundle, manifest or tensors rejected), ``EVALUATION_FAILED`` (no finite loss);
2. ``NOT_FINE_TUNED``: every loss within ``base_model_rel_tol`` (relative) of the base model's loss
   on the same split. Metrics, not a hash compare: the base plus 1e-6 noise is caught too;
3. ``DUPLICATE``: in order of commitment receipt (the validator's own order, ``commit_seq``), a
   result whose artifact hash equals that of an earlier opened commitment (even one rejected for
   another reason), or whose test and synthetic losses both agree with an earlier credited
   result's within ``duplicate_loss_rel_tol``, is a duplicate; the earliest commitment is credited;
4. ``SUSPICIOUS_GAP`` (a model that does much better on the test split than on fresh synthetic data
   has most likely seen the test data). Among the results still accepted that have both losses, with
   at least ``gap_min_pool`` of them: each one's relative gap is ``g = (synthetic - test) /
   synthetic``, the share of its synthetic loss that the test loss beats; ``median_g`` is the median
   over them; ``spread`` is the population standard deviation of their synthetic losses divided by
   the median synthetic loss (fresh data nobody can train on, so the honest spread of quality in the
   pool, in the same relative units). A result is flagged when ``g - median_g > max(gap_std_threshold
   x spread, gap_min_rel)``. Relative, because an honest pool's absolute gap grows with its loss
   level; one-sided, because doing better on fresh data is never penalised; the floor keeps a pool of
   near-identical miners from flagging honest noise.

Input: one ``EvaluationRecord`` per miner; output: one ``Decision`` per miner, in input order.
"""

from __future__ import annotations

import enum
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from validator.config import ValidatorConfig


class Reason(enum.Enum):
    ACCEPTED = "accepted"
    MISSING = "missing"
    LATE = "late"
    OVERSIZED = "oversized"
    MISMATCHED_HASH = "mismatched_hash"
    MALFORMED = "malformed"
    EVALUATION_FAILED = "evaluation_failed"
    NOT_FINE_TUNED = "not_fine_tuned"
    DUPLICATE = "duplicate"
    SUSPICIOUS_GAP = "suspicious_gap"


@dataclass(frozen=True)
class TaskLimits:
    """What the announcement fixed, plus the base model's own losses on the private splits."""

    commit_by: float  # seconds
    reveal_by: float
    max_artifact_bytes: int
    base_test_loss_e9: int | None  # None when the base model was not evaluated
    base_synthetic_loss_e9: int | None


@dataclass(frozen=True)
class EvaluationRecord:
    """One miner's intake and evaluation outcome for one task."""

    miner: str
    commit_seq: int | None  # receive order of its first commitment; None: none received
    committed_at: float | None  # validator receive time of that commitment
    revealed_at: float | None  # when its artifact arrived; None: never revealed
    reveal_matches: bool  # artifact hash and salt open the commitment
    artifact_hash: str  # sha256 hex of the bundle ("" when none)
    artifact_size: int
    malformed: str  # "" when the bundle was well-formed, else what was wrong
    test_loss_e9: int | None  # None when evaluation gave no finite loss
    synthetic_loss_e9: int | None  # None for kinds without a synthetic split


@dataclass(frozen=True)
class Decision:
    miner: str
    reason: Reason
    message: str  # for people: what was wrong, shown in the app and the store
    credited_to: str = ""  # for DUPLICATE: the miner credited with the original

    @property
    def accepted(self) -> bool:
        return self.reason is Reason.ACCEPTED


def _intake_reason(r: EvaluationRecord, limits: TaskLimits) -> tuple[Reason, str] | None:
    if r.commit_seq is None or r.committed_at is None:
        return Reason.MISSING, "no commitment was received before the deadline"
    if r.committed_at > limits.commit_by:
        return Reason.LATE, f"commitment received {r.committed_at - limits.commit_by:.1f} s after commit_by"
    if r.revealed_at is None:
        return Reason.MISSING, "the artifact was never revealed"
    if r.revealed_at > limits.reveal_by:
        return Reason.LATE, f"artifact received {r.revealed_at - limits.reveal_by:.1f} s after reveal_by"
    if r.artifact_size > limits.max_artifact_bytes:
        return Reason.OVERSIZED, (f"artifact is {r.artifact_size} bytes, "
                                  f"the task allows {limits.max_artifact_bytes}")
    if not r.reveal_matches:
        return Reason.MISMATCHED_HASH, "the revealed artifact hash and salt do not open the commitment"
    if r.malformed:
        return Reason.MALFORMED, f"artifact rejected: {r.malformed}"
    if r.test_loss_e9 is None:
        return Reason.EVALUATION_FAILED, "evaluation produced no finite test loss"
    return None


def _close(a: int, b: int, rel_tol: float) -> bool:
    return abs(a - b) <= rel_tol * max(abs(a), abs(b))


def _same_metrics(a_test: int, a_syn: int | None, b_test: int, b_syn: int | None, rel_tol: float) -> bool:
    if not _close(a_test, b_test, rel_tol):
        return False
    if a_syn is None or b_syn is None:
        return a_syn is None and b_syn is None
    return _close(a_syn, b_syn, rel_tol)


def _not_fine_tuned(r: EvaluationRecord, limits: TaskLimits, cfg: ValidatorConfig) -> bool:
    if limits.base_test_loss_e9 is None or r.test_loss_e9 is None:
        return False
    if not _close(r.test_loss_e9, limits.base_test_loss_e9, cfg.base_model_rel_tol):
        return False
    if r.synthetic_loss_e9 is None or limits.base_synthetic_loss_e9 is None:
        return True
    return _close(r.synthetic_loss_e9, limits.base_synthetic_loss_e9, cfg.base_model_rel_tol)


def _first_by_hash(everyone: Sequence[EvaluationRecord]) -> dict[str, EvaluationRecord]:
    """For each artifact hash, the record that committed to it first (among commitments it opened)."""
    first: dict[str, EvaluationRecord] = {}
    opened = [r for r in everyone if r.commit_seq is not None and r.reveal_matches and r.artifact_hash]
    for r in sorted(opened, key=lambda x: (x.commit_seq, x.miner)):
        first.setdefault(r.artifact_hash, r)
    return first


def _duplicates(records: list[EvaluationRecord], everyone: Sequence[EvaluationRecord],
                cfg: ValidatorConfig) -> dict[str, Decision]:
    """Duplicate decisions among ``records`` (all still accepted), earliest commitment credited.

    A hash is compared with every commitment that was opened, even one rejected later (late,
    malformed...), so copying a miner that then failed never earns the copy the credit. Losses are
    compared with the results credited so far.
    """
    first = _first_by_hash(everyone)
    credited: list[EvaluationRecord] = []
    found: dict[str, Decision] = {}
    for r in sorted(records, key=lambda x: (x.commit_seq, x.miner)):
        assert r.test_loss_e9 is not None
        original: EvaluationRecord | None = first.get(r.artifact_hash)
        how = "the same artifact as"
        if original is None or original.miner == r.miner:
            how = "losses equal, within tolerance, to those of"
            original = next((c for c in credited if c.test_loss_e9 is not None and _same_metrics(
                r.test_loss_e9, r.synthetic_loss_e9, c.test_loss_e9, c.synthetic_loss_e9,
                cfg.duplicate_loss_rel_tol)), None)
        if original is None:
            credited.append(r)
            continue
        found[r.miner] = Decision(r.miner, Reason.DUPLICATE,
                                  f"{how} {original.miner}, whose commitment arrived first", original.miner)
    return found


def _suspicious_gaps(records: list[EvaluationRecord], cfg: ValidatorConfig) -> dict[str, Decision]:
    """Gap decisions among ``records`` (module docstring, step 4, for the rule)."""
    pool = [(r.miner, float(r.test_loss_e9), float(r.synthetic_loss_e9)) for r in records
            if r.test_loss_e9 is not None and r.synthetic_loss_e9]
    if len(pool) < max(2, cfg.gap_min_pool):
        return {}
    synth = [s for _, _, s in pool]
    gaps = {miner: (s - t) / s for miner, t, s in pool}
    median_gap = statistics.median(gaps.values())
    spread = statistics.pstdev(synth) / statistics.median(synth)
    threshold = max(cfg.gap_std_threshold * spread, cfg.gap_min_rel)
    found: dict[str, Decision] = {}
    for miner, gap in gaps.items():
        excess = gap - median_gap
        if excess > threshold:
            found[miner] = Decision(
                miner, Reason.SUSPICIOUS_GAP,
                f"test loss beats synthetic loss by {gap:.1%} of it, the pool's median by {median_gap:.1%} "
                f"(allowed excess {threshold:.1%}): the test data may have been trained on")
    return found


def judge(records: Sequence[EvaluationRecord], limits: TaskLimits, cfg: ValidatorConfig) -> list[Decision]:
    """One decision per record, in the same order (module docstring: the checks)."""
    if len({r.miner for r in records}) != len(records):
        raise ValueError("judge: a miner appears twice")
    decided: dict[str, Decision] = {}
    for r in records:
        intake = _intake_reason(r, limits)
        if intake is not None:
            decided[r.miner] = Decision(r.miner, *intake)
        elif _not_fine_tuned(r, limits, cfg):
            decided[r.miner] = Decision(r.miner, Reason.NOT_FINE_TUNED,
                                        "losses equal the base model's within tolerance: not fine-tuned")
    remaining = [r for r in records if r.miner not in decided]
    decided.update(_duplicates(remaining, records, cfg))
    remaining = [r for r in remaining if r.miner not in decided]
    decided.update(_suspicious_gaps(remaining, cfg))
    return [decided.get(r.miner, Decision(r.miner, Reason.ACCEPTED, "accepted")) for r in records]
