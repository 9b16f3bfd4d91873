"""The vetted reward registry: names only, pure functions, GSM8K-style answers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trainer.rewards import (
    UnknownReward,
    check_reward_spec,
    combined_reward,
    extract_answer,
    get_reward,
    reward_names,
)

GSM8K_ANSWER = (
    "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nAltogether 48+24 = <<48+24=72>>72 clips.\n#### 72"
)


def test_registry_lists_the_built_in_rewards() -> None:
    assert {"exact_answer", "format", "numeric_answer", "length_penalty", "no_repetition"} <= set(
        reward_names()
    )
    with pytest.raises(UnknownReward, match="built-in rewards"):
        get_reward("__import__('os').system")


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        ("She sold 72 clips.\n#### 72", 1.0),
        ("#### 72.0", 1.0),
        ("The total is 72", 1.0),  # no marker: the last number counts
        ("#### 72 and later 5", 1.0),  # the marked answer wins over later numbers
        ("#### 71", 0.0),
        ("I do not know", 0.0),
    ],
)
def test_exact_answer_against_a_gsm8k_reference(completion: str, expected: float) -> None:
    assert get_reward("exact_answer").fn(completion, GSM8K_ANSWER) == expected


def test_numbers_are_normalised() -> None:
    assert extract_answer("#### 1,234") == "1234"
    assert extract_answer("It costs $18.50.") == "18.5"
    assert extract_answer("-3 degrees") == "-3"
    assert extract_answer("no digits") is None


def test_format_length_and_repetition() -> None:
    assert get_reward("format").fn("so #### 5", None) == 1.0
    assert get_reward("format").fn("so the answer is 5", None) == 0.0
    assert get_reward("length_penalty").fn("x" * 100, None) == 0.0
    assert get_reward("length_penalty").fn("x" * 600, None) == pytest.approx(-0.5)
    assert get_reward("length_penalty").fn("x" * 5000, None) == -1.0
    assert get_reward("no_repetition").fn("a b c a b c a b c", None) < get_reward("no_repetition").fn(
        "a b c d e f g h i", None
    )


def test_combined_reward_is_the_weighted_sum() -> None:
    total = combined_reward({"exact_answer": 1.0, "format": 0.5})
    assert total("#### 72", GSM8K_ANSWER) == 1.5
    assert total("72", GSM8K_ANSWER) == 1.0
    with pytest.raises(UnknownReward):
        check_reward_spec({})
    with pytest.raises(UnknownReward, match="non-finite"):
        check_reward_spec({"format": float("nan")})


@given(st.text(max_size=300), st.text(max_size=60))
def test_every_reward_stays_in_its_declared_range(completion: str, reference: str) -> None:
    for name in reward_names():
        reward = get_reward(name)
        assert reward.low <= reward.fn(completion, reference) <= reward.high


def test_real_gsm8k_references_parse(shared_datasets: Path) -> None:
    with (shared_datasets / "gsm8k_train.jsonl").open(encoding="utf-8") as fh:
        rows = [json.loads(next(fh)) for _ in range(50)]
    for row in rows:
        final = row["answer"].rsplit("####", 1)[1].strip()
        assert get_reward("exact_answer").fn(f"#### {final}", row["answer"]) == 1.0


def test_reward_ceiling_makes_the_grpo_loss_a_non_negative_shortfall() -> None:
    from trainer.rewards import reward_ceiling

    assert reward_ceiling({"exact_answer": 1.0, "format": 0.2}) == pytest.approx(1.2)
    # A negative weight is best at the reward's low end; a penalty's best is 0.
    assert reward_ceiling({"numeric_answer": 1.0, "no_repetition": -0.5}) == pytest.approx(1.0)
    assert reward_ceiling({"format": 1.0, "length_penalty": 1.0}) == pytest.approx(1.0)
    spec = {"exact_answer": 1.0, "format": 0.2, "length_penalty": 0.5}
    total = combined_reward(spec)
    for completion in ["#### 72", "x " * 900, "", "The answer is 7.\n#### 7"]:
        assert 0.0 <= reward_ceiling(spec) - total(completion, GSM8K_ANSWER) <= reward_ceiling(spec) + 0.5


def test_the_validators_default_grpo_rewards_are_the_trainers() -> None:
    # validator/config.py repeats the spec as a literal (config sections import nothing of ours).
    from trainer.rewards import DEFAULT_REWARDS
    from validator.config import ValidatorConfig

    assert ValidatorConfig().grpo_rewards == DEFAULT_REWARDS


def test_a_tasks_completion_length_is_a_bounded_whole_number_and_trials_validate_at_it() -> None:
    from trainer.rewards import (
        MAX_COMPLETION_TOKENS,
        MIN_COMPLETION_TOKENS,
        BadCompletionLength,
        check_max_new_tokens,
        grpo_eval_length,
    )
    from validator.config import ValidatorConfig

    assert check_max_new_tokens(24) == 24 and check_max_new_tokens(32.0) == 32
    assert (
        check_max_new_tokens(MIN_COMPLETION_TOKENS) == 8
        and check_max_new_tokens(MAX_COMPLETION_TOKENS) == 1024
    )
    for bad, words in [
        (7, "between 8 and 1024"),
        (1025, "between 8 and 1024"),
        (24.5, "whole number"),
        ("24", "whole number"),
        (True, "whole number"),
        (None, "whole number"),
    ]:
        with pytest.raises(BadCompletionLength, match=words):
            check_max_new_tokens(bad)
    # validator/config.py repeats the bounds (config sections import nothing of ours)
    assert not ValidatorConfig(grpo_max_new_tokens=8).problems()
    assert not ValidatorConfig(grpo_max_new_tokens=1024).problems()
    assert any("grpo_max_new_tokens" in p for p in ValidatorConfig(grpo_max_new_tokens=7).problems())
    assert any("grpo_max_new_tokens" in p for p in ValidatorConfig(grpo_max_new_tokens=1025).problems())
    # the length a train job samples at is the one its autoresearch trials validate at
    assert grpo_eval_length("grpo", {"max_new_tokens": 24.0, "lr": 1e-3}) == 24
    assert grpo_eval_length("grpo", {"lr": 1e-3}) is None
    assert grpo_eval_length("instruct", {"max_new_tokens": 24}) is None


def test_autoresearch_trials_validate_grpo_at_the_jobs_completion_length(tmp_path: Path) -> None:
    from trainer.autoresearch.trial import TrialContext, _validate
    from trainer.recipes.base import EvalJob, TrainJob

    seen: list[EvalJob] = []

    class Recorder:
        def evaluate(self, job: EvalJob, reporter: object) -> dict[str, float]:
            seen.append(job)
            return {"loss": 0.5}

    hparams = {"rewards": "numeric_answer:1.0", "max_new_tokens": 24}
    job = TrainJob("grpo", "base", "train.jsonl", str(tmp_path / "out"), hparams=hparams)
    ctx = TrialContext(Recorder(), job, tmp_path / "val.jsonl", 3.0)  # type: ignore[arg-type]
    assert _validate(ctx, str(tmp_path / "artifact")) == 0.5
    assert seen[0].max_new_tokens == 24 and seen[0].rewards == "numeric_answer:1.0"
