"""The teacher synthetic generator: held-back prompts answered by a configured teacher model.

Unit tests use a fake teacher function; one test runs a real tiny Llama through the evaluation
sandbox (validator.sandbox.run_teacher) from ``split_rows``, as a task is created."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from validator.config import ValidatorConfig
from validator.synthetic import SyntheticRequest, make_generator, row_digest
from validator.tasks import TaskInputError, pick_generator, split_rows

ALPACA = [
    {"instruction": f"Write the word number {i} backwards.", "input": "" if i % 2 else f"n{i}",
     "output": f"o{i}"}
    for i in range(40)
]  # fmt: skip


def test_held_back_prompts_get_the_teachers_answers_and_nothing_else_changes() -> None:
    asked: list[list[dict[str, Any]]] = []

    def teacher(rows: list[dict[str, Any]]) -> list[str]:
        asked.append(rows)
        return [
            "" if r["instruction"].endswith("7 backwards.") else "A: " + r["instruction"][::-1] for r in rows
        ]

    seen, pool = ALPACA[:20], ALPACA[10:]  # 10 of the pool were given to miners
    request = SyntheticRequest(count=12, seed=5, pool=pool, seen=seen, teacher=teacher)
    rows = make_generator("teacher").generate(request)
    assert len(asked) == 1 and {row_digest(r) for r in asked[0]} <= {row_digest(r) for r in ALPACA[20:]}
    assert rows and len(rows) <= 12
    by_instruction = {r["instruction"]: r for r in ALPACA}
    for row in rows:
        original = by_instruction[row["instruction"]]
        assert row["output"] == "A: " + row["instruction"][::-1]  # the answer column is the teacher's
        assert {k: v for k, v in row.items() if k != "output"} == {
            k: v for k, v in original.items() if k != "output"
        }
    assert not any(r["instruction"].endswith("7 backwards.") for r in rows)  # an empty answer is dropped
    again = make_generator("teacher").generate(request)
    assert again == rows  # the same seed picks the same prompts
    with pytest.raises(ValueError, match="teacher_model"):
        make_generator("teacher").generate(SyntheticRequest(count=3, seed=1, pool=pool))


def test_the_teacher_is_picked_for_instruct_data_when_configured_and_checked() -> None:
    plain = ValidatorConfig()
    assert pick_generator(ALPACA, "instruct", plain) == "held_back"
    assert "teacher_model" in " ".join(ValidatorConfig(synthetic_generator="teacher").problems())
    assert "not a model directory" in " ".join(ValidatorConfig(teacher_model="/nonexistent").problems())


@pytest.mark.slow
def test_a_real_teacher_answers_in_the_sandbox_deterministically(tmp_path: Path) -> None:
    from trainer.data import load_examples
    from trainer.models import bundled_base_model_dir

    teacher_dir = bundled_base_model_dir()  # a real tokenizer: a random tiny Llama answers with nothing
    cfg = ValidatorConfig(teacher_model=str(teacher_dir), teacher_max_new_tokens=12, teacher_batch_size=4,
                          synthetic_fraction=0.25, eval_timeout_s=300)  # fmt: skip
    assert not cfg.problems() and pick_generator(ALPACA, "instruct", cfg) == "teacher"
    train, test, synthetic = split_rows(ALPACA, 11, "teacher", cfg)
    assert synthetic and len(synthetic) <= len(test)
    given = {row_digest(r) for r in train + test}
    originals = {r["instruction"]: r for r in ALPACA}
    for row in synthetic:  # held-back prompts (never in train or test), answered afresh
        assert row_digest(originals[row["instruction"]]) not in given
        assert row["output"].strip() and row["output"] != originals[row["instruction"]]["output"]
    data = tmp_path / "synthetic.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in synthetic), encoding="utf-8")
    assert len(load_examples(data, "instruct")) == len(synthetic)  # the trainer's data contract
    assert split_rows(ALPACA, 11, "teacher", cfg)[2] == synthetic  # greedy: the same rows again
    broken = ValidatorConfig(teacher_model=str(tmp_path), synthetic_fraction=0.25)  # no model there
    with pytest.raises(TaskInputError, match=r"teacher model .* could not answer"):
        split_rows(ALPACA, 11, "teacher", broken)
