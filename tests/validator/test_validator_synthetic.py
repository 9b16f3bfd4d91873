"""Synthetic evaluation data: registry, GSM8K-format arithmetic problems, held-back split."""

from __future__ import annotations

import re

import pytest

from validator.synthetic import (
    SyntheticRequest,
    final_answer,
    generator_names,
    make_generator,
    questions,
    register_generator,
    row_digest,
)

CALC = re.compile(r"<<(\d+)([-+*/])(\d+)=(-?\d+)>>(-?\d+)")


def check_gsm8k(row: dict[str, str]) -> None:
    """Every annotated calculation is right and the final answer is the last one's result."""
    assert set(row) == {"question", "answer"} and row["question"].endswith("?")
    steps = CALC.findall(row["answer"])
    assert steps, row["answer"]
    for a, op, b, value, shown in steps:
        x, y = int(a), int(b)
        if op == "/":
            assert y != 0 and x % y == 0
            expected = x // y
        else:
            expected = {"+": x + y, "-": x - y, "*": x * y}[op]
        assert int(value) == int(shown) == expected
    assert row["answer"].splitlines()[-1] == f"#### {steps[-1][3]}"
    assert final_answer(row["answer"]) == int(steps[-1][3]) >= 0


def test_registry_lists_and_builds_generators() -> None:
    assert {"arithmetic", "held_back"} <= set(generator_names())
    with pytest.raises(KeyError, match="unknown synthetic generator"):
        make_generator("teacher-gpt")
    with pytest.raises(ValueError, match="twice"):
        register_generator("arithmetic")(type(make_generator("arithmetic")))


def test_arithmetic_problems_are_gsm8k_with_computed_answers() -> None:
    rows = make_generator("arithmetic").generate(SyntheticRequest(count=300, seed=5))
    assert len(rows) == 300 and len({r["question"] for r in rows}) == 300
    for row in rows:
        check_gsm8k(row)
    assert len({r["question"].split()[1] for r in rows}) > 5  # several templates in use


def test_arithmetic_is_deterministic_per_seed_and_new_per_seed() -> None:
    gen = make_generator("arithmetic")
    a = gen.generate(SyntheticRequest(count=50, seed=1))
    assert gen.generate(SyntheticRequest(count=50, seed=1)) == a
    b = gen.generate(SyntheticRequest(count=50, seed=2))
    assert len(questions(a) & questions(b)) < 5


def test_arithmetic_never_repeats_excluded_questions() -> None:
    gen = make_generator("arithmetic")
    train = gen.generate(SyntheticRequest(count=40, seed=9))
    evaluation = gen.generate(SyntheticRequest(count=40, seed=9, exclude=questions(train)))
    assert len(evaluation) == 40 and not questions(train) & questions(evaluation)


def test_held_back_split_takes_only_unseen_rows_deterministically() -> None:
    pool = [{"question": f"q{i}", "answer": f"#### {i}"} for i in range(100)]
    seen = [*pool[:60], {"question": "elsewhere", "answer": "#### 0"}]
    gen = make_generator("held_back")
    picked = gen.generate(SyntheticRequest(count=20, seed=3, pool=pool, seen=seen))
    assert len(picked) == 20 and len({row_digest(r) for r in picked}) == 20
    assert not {row_digest(r) for r in picked} & {row_digest(r) for r in seen}
    again = gen.generate(SyntheticRequest(count=20, seed=3, pool=list(reversed(pool)), seen=seen))
    assert again == picked  # the pool's order does not matter
    assert gen.generate(SyntheticRequest(count=20, seed=4, pool=pool, seen=seen)) != picked
    short = gen.generate(SyntheticRequest(count=500, seed=3, pool=pool, seen=seen))
    assert len(short) == 40  # all unseen rows, no more


def test_final_answer_needs_the_marker() -> None:
    assert final_answer("a\n#### 1,234") == 1234
    with pytest.raises(ValueError):
        final_answer("no marker")
