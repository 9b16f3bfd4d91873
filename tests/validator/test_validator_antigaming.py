"""Anti-gaming: each attack caught with the right reason, and no honest miner penalised."""

from __future__ import annotations

import dataclasses
import itertools

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from validator.antigaming import Decision, EvaluationRecord, Reason, TaskLimits, judge
from validator.config import ValidatorConfig
from validator.scoring import EvaluatedResult, rank_results, to_e9

CFG = ValidatorConfig()
LIMITS = TaskLimits(commit_by=1000.0, reveal_by=1100.0, max_artifact_bytes=5_000_000,
                    base_test_loss_e9=to_e9(2.40), base_synthetic_loss_e9=to_e9(2.55))

# Honest miners of different quality: test loss below the base's, synthetic about 6 % above test.
HONEST_LOSSES = [(1.52, 1.61), (1.60, 1.70), (1.71, 1.81), (1.85, 1.97), (1.93, 2.04), (2.10, 2.22)]


def record(miner: str, seq: int, test: float | None, synth: float | None, **kw) -> EvaluationRecord:
    base = dict(miner=miner, commit_seq=seq, committed_at=500.0 + seq, revealed_at=1050.0,
                reveal_matches=True, artifact_hash=f"{seq:064x}", artifact_size=1_000_000, malformed="",
                test_loss_e9=None if test is None else to_e9(test),
                synthetic_loss_e9=None if synth is None else to_e9(synth))
    base.update(kw)
    return EvaluationRecord(**base)  # type: ignore[arg-type]


def honest_pool() -> list[EvaluationRecord]:
    return [record(f"honest{i}", i, t, s) for i, (t, s) in enumerate(HONEST_LOSSES)]


def decide(records: list[EvaluationRecord]) -> dict[str, Decision]:
    return {d.miner: d for d in judge(records, LIMITS, CFG)}


def assert_honest_untouched(decisions: dict[str, Decision]) -> None:
    for miner, d in decisions.items():
        if miner.startswith("honest"):
            assert d.accepted, f"{miner} penalised: {d.reason} {d.message}"


def test_an_honest_pool_is_all_accepted() -> None:
    decisions = judge(honest_pool(), LIMITS, CFG)
    assert [d.reason for d in decisions] == [Reason.ACCEPTED] * len(HONEST_LOSSES)


def test_copier_of_the_artifact_is_a_duplicate_and_the_earliest_commitment_is_credited() -> None:
    pool = honest_pool()
    victim = pool[0]
    copier = dataclasses.replace(victim, miner="copier", commit_seq=50, committed_at=900.0)
    decisions = decide([copier, *pool])  # listed first, committed later: receive order decides
    assert decisions["copier"].reason is Reason.DUPLICATE
    assert decisions["copier"].credited_to == "honest0"
    assert "same artifact" in decisions["copier"].message
    assert_honest_untouched(decisions)


def test_copier_with_a_rehashed_artifact_is_caught_by_equal_losses() -> None:
    pool = honest_pool()
    victim = pool[2]
    assert victim.test_loss_e9 is not None and victim.synthetic_loss_e9 is not None
    copier = dataclasses.replace(victim, miner="copier", commit_seq=60, artifact_hash="f" * 64,
                                 test_loss_e9=victim.test_loss_e9 + 1,
                                 synthetic_loss_e9=victim.synthetic_loss_e9 - 1)
    decisions = decide([*pool, copier])
    assert decisions["copier"].reason is Reason.DUPLICATE
    assert decisions["copier"].credited_to == "honest2"
    assert "losses equal" in decisions["copier"].message
    assert_honest_untouched(decisions)


def test_close_but_distinct_honest_losses_are_not_duplicates() -> None:
    pool = [record("honest_a", 0, 1.500000, 1.600000), record("honest_b", 1, 1.500100, 1.600000),
            record("honest_c", 2, 1.700000, 1.800000)]
    assert_honest_untouched(decide(pool))


def test_untouched_base_model_is_not_fine_tuned() -> None:
    decisions = decide([*honest_pool(), record("lazy", 40, 2.40, 2.55, artifact_hash="b" * 64)])
    assert decisions["lazy"].reason is Reason.NOT_FINE_TUNED
    assert_honest_untouched(decisions)


def test_base_model_plus_tiny_noise_is_not_fine_tuned() -> None:
    # Weights + 1e-6 noise: a different hash, losses within 1e-7 relative of the base's.
    noisy = record("noisy", 41, 2.40 * (1 + 1e-7), 2.55 * (1 - 2e-7), artifact_hash="c" * 64)
    twin = record("noisy_twin", 42, 2.40 * (1 - 1e-7), 2.55, artifact_hash="d" * 64)
    decisions = decide([*honest_pool(), noisy, twin])
    assert decisions["noisy"].reason is Reason.NOT_FINE_TUNED
    assert decisions["noisy_twin"].reason is Reason.NOT_FINE_TUNED  # not credited as an "original"
    assert_honest_untouched(decisions)


def test_late_commitment_and_late_reveal() -> None:
    decisions = decide([*honest_pool(), record("late_commit", 43, 1.55, 1.65, committed_at=1000.5),
                        record("late_reveal", 44, 1.56, 1.66, revealed_at=1100.1)])
    assert decisions["late_commit"].reason is Reason.LATE
    assert decisions["late_reveal"].reason is Reason.LATE
    assert "after commit_by" in decisions["late_commit"].message
    assert_honest_untouched(decisions)


def test_mismatched_reveal_oversized_malformed_missing_and_failed() -> None:
    attackers = [
        record("mismatch", 45, 1.50, 1.60, reveal_matches=False),
        record("oversized", 46, 1.50, 1.60, artifact_size=LIMITS.max_artifact_bytes + 1),
        record("pickle", 47, None, None, malformed="model.bin is not safetensors"),
        record("never_revealed", 48, None, None, revealed_at=None, artifact_hash="", artifact_size=0),
        record("never_committed", 0, None, None, commit_seq=None, committed_at=None, revealed_at=None),
        record("crashed", 49, None, None),
    ]
    decisions = decide([*honest_pool(), *attackers])
    assert decisions["mismatch"].reason is Reason.MISMATCHED_HASH
    assert decisions["oversized"].reason is Reason.OVERSIZED
    assert decisions["pickle"].reason is Reason.MALFORMED and "safetensors" in decisions["pickle"].message
    assert decisions["never_revealed"].reason is Reason.MISSING
    assert decisions["never_committed"].reason is Reason.MISSING
    assert decisions["crashed"].reason is Reason.EVALUATION_FAILED
    assert_honest_untouched(decisions)


def test_training_on_the_test_split_is_a_suspicious_gap() -> None:
    # Memorised the test data: best test loss by far, but fresh synthetic data shows its real level.
    cheat = record("cheat", 30, 0.40, 1.90)
    partial = record("partial", 31, 1.45, 1.95)  # 26 % gap where the pool's median is about 6 %
    decisions = decide([*honest_pool(), cheat, partial])
    assert decisions["cheat"].reason is Reason.SUSPICIOUS_GAP
    assert decisions["partial"].reason is Reason.SUSPICIOUS_GAP
    assert_honest_untouched(decisions)
    accepted = [d.miner for d in decisions.values() if d.accepted]
    assert len(accepted) == len(HONEST_LOSSES)


def test_gap_check_needs_a_pool() -> None:
    pool = [record("honest0", 0, 1.5, 1.6), record("alone", 1, 0.4, 1.9)]
    assert all(d.accepted for d in judge(pool, LIMITS, CFG))  # 2 < gap_min_pool: no judgement


def test_doing_better_on_synthetic_data_is_never_penalised() -> None:
    decisions = decide([*honest_pool(), record("honest_generalist", 33, 1.80, 1.50)])
    assert_honest_untouched(decisions)


def test_no_base_metrics_skips_the_fine_tune_check() -> None:
    limits = dataclasses.replace(LIMITS, base_test_loss_e9=None, base_synthetic_loss_e9=None)
    assert all(d.accepted for d in judge([record("a", 0, 2.40, 2.55)], limits, CFG))


def test_a_miner_twice_is_an_error() -> None:
    with pytest.raises(ValueError):
        judge([record("a", 0, 1.0, 1.1), record("a", 1, 1.2, 1.3)], LIMITS, CFG)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(0.5, 2.3), min_size=3, max_size=15, unique=True),
    st.floats(0.0, 0.3), st.lists(st.floats(-0.02, 0.02), min_size=15, max_size=15),
)
def test_honest_pools_are_never_penalised(tests: list[float], shift: float, noise: list[float]) -> None:
    """Losses below the base's, distinct by 1e-4 or more, a shared distribution shift plus 2 % noise."""
    tests = sorted(tests)
    assume(all(b - a >= 1e-4 for a, b in itertools.pairwise(tests)))
    pool = [record(f"honest{i}", i, t, t * (1 + shift + n))
            for i, (t, n) in enumerate(zip(tests, noise, strict=False))]
    assert_honest_untouched(decide(pool))


def test_scoring_consumes_only_accepted_decisions() -> None:
    records = [*honest_pool(), record("lazy", 40, 2.40, 2.55), record("cheat", 30, 0.40, 1.90)]
    decisions = judge(records, LIMITS, CFG)
    accepted = [EvaluatedResult(r.miner, r.test_loss_e9, r.synthetic_loss_e9, r.commit_seq or 0)
                for r, d in zip(records, decisions, strict=True) if d.accepted and r.test_loss_e9 is not None]
    ranked = rank_results(accepted, CFG)
    assert [r.miner for r in ranked] == [f"honest{i}" for i in range(len(HONEST_LOSSES))]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([1.5, 1.6, 1.7, 2.4, 0.4]), st.sampled_from([1.6, 1.8, 2.55, 1.9]),
                          st.sampled_from(["a", "b", "c"]), st.booleans()), min_size=1, max_size=12),
       st.randoms(use_true_random=False))
def test_decisions_do_not_depend_on_listing_order(rows, rnd) -> None:
    """Duplicates, base copies and gaps included: each miner's decision follows it when permuted."""
    records = [record(f"m{i}", (i * 5) % 13, t, s, artifact_hash=h * 64, reveal_matches=ok)
               for i, (t, s, h, ok) in enumerate(rows)]
    shuffled = list(records)
    rnd.shuffle(shuffled)
    assert decide(shuffled) == decide(records)


def test_copying_a_miner_that_later_failed_earns_no_credit() -> None:
    late_original = record("late_original", 3, 1.52, 1.61, revealed_at=1200.0, artifact_hash="e" * 64)
    copier = record("copier", 70, 1.52, 1.61, artifact_hash="e" * 64)
    decisions = decide([*honest_pool()[1:], late_original, copier])
    assert decisions["late_original"].reason is Reason.LATE
    assert decisions["copier"].reason is Reason.DUPLICATE
    assert decisions["copier"].credited_to == "late_original"
    assert_honest_untouched(decisions)


def test_a_replayed_commitment_cannot_be_opened_by_the_copier() -> None:
    # The copier saw only the victim's commitment; its reveal cannot open it (the salt is secret).
    copier = record("copier", 71, None, None, reveal_matches=False, artifact_hash="0" * 64)
    decisions = decide([*honest_pool(), copier])
    assert decisions["copier"].reason is Reason.MISMATCHED_HASH
    assert_honest_untouched(decisions)
