"""The task data contract: formats, column mappings, masking and clear errors."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from trainer.data import (
    IGNORE_INDEX,
    DataError,
    PreferenceExample,
    SFTExample,
    load_examples,
    render_prompt,
    split,
    tokenize_for_sft,
)


def test_instruct_column_mappings(trainer_data_dir: Path) -> None:
    gsm = load_examples(trainer_data_dir / "sft.jsonl", "instruct")
    assert gsm[0] == SFTExample(render_prompt("What is 2 plus 3?"), "2 + 3 = 5. #### 5")
    alpaca = load_examples(trainer_data_dir / "alpaca.json", "instruct")
    assert "### Input:\napple" in alpaca[0].prompt and alpaca[0].response == "elppa"


def test_hh_style_preferences_split_at_the_last_assistant_turn(trainer_data_dir: Path) -> None:
    pairs = load_examples(trainer_data_dir / "hh.jsonl", "dpo")
    assert pairs[0] == PreferenceExample(
        "\n\nHuman: Tell me about rivers.\n\nAssistant:", " Rivers is interesting.", " No."
    )


def test_hh_dialogues_that_part_before_the_last_turn_keep_their_shared_prefix_as_the_prompt(
    tmp_path: Path,
) -> None:
    """4 of the 2,312 rows of the public HH-RLHF test split: the two dialogues differ in an earlier turn."""
    chosen = "\n\nHuman: Hi.\n\nAssistant: Hello!\n\nHuman: Bye.\n\nAssistant: Goodbye."
    rejected = "\n\nHuman: Hi.\n\nAssistant: Go away.\n\nHuman: Bye.\n\nAssistant: Whatever."
    path = tmp_path / "hh.jsonl"
    path.write_text(json.dumps({"chosen": chosen, "rejected": rejected}) + "\n", encoding="utf-8")
    (pair,) = load_examples(path, "dpo")
    assert pair.prompt == "\n\nHuman: Hi.\n\nAssistant:"
    assert pair.chosen.startswith(" Hello!") and pair.chosen.endswith("Goodbye.")
    assert pair.rejected.startswith(" Go away.") and pair.rejected.endswith("Whatever.")


def test_real_shared_datasets_load(shared_datasets: Path) -> None:
    assert len(load_examples(shared_datasets / "gsm8k_train.jsonl", "instruct", max_rows=50)) == 50
    assert len(load_examples(shared_datasets / "code_alpaca_2k.json", "instruct", max_rows=50)) == 50
    assert len(load_examples(shared_datasets / "hh_rlhf_harmless_test.jsonl.gz", "dpo")) == 2312  # every row


@pytest.mark.parametrize(
    ("content", "kind", "message"),
    [
        ('{"question": "q"}\n', "instruct", "instruction/output"),
        ('{"question": "q", "answer": 5}\n', "instruct", "'answer' must be a string"),
        ('{"question": "q", "answer": ""}\n', "instruct", "'answer' is empty"),
        ("not json\n", "instruct", "row|line 1|not valid JSON"),
        ("[1, 2]\n", "instruct", "must be a JSON object"),
        ("", "instruct", "no rows"),
        ('{"chosen": "a", "rejected": "b"}\n', "dpo", "HH-RLHF style"),
        ('{"question": "q", "answer": "a"}\n', "poetry", "unknown task kind"),
    ],
)
def test_contract_errors_are_clear(tmp_path: Path, content: str, kind: str, message: str) -> None:
    path = tmp_path / "data.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=message):
        load_examples(path, kind)


def test_missing_file_and_bad_extension(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        load_examples(tmp_path / "nope.jsonl", "instruct")
    (tmp_path / "data.csv").write_text("a,b\n")
    with pytest.raises(DataError, match="unsupported extension"):
        load_examples(tmp_path / "data.csv", "instruct")


def test_gzip_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.write(json.dumps({"prompt": "p", "chosen": "c", "rejected": "r"}) + "\n")
    assert load_examples(path, "dpo") == [PreferenceExample("p", "c", "r")]


def test_image_paths_must_stay_inside_the_data_dir(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(b"\x89PNG")
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps({"image": "a.png", "caption": "c"}) + "\n")
    assert load_examples(path, "image")[0].image_path == (tmp_path / "a.png").resolve()
    path.write_text(json.dumps({"image": "../../etc/passwd", "caption": "c"}) + "\n")
    with pytest.raises(DataError, match="leaves the data directory"):
        load_examples(path, "image")


def test_split_is_deterministic_and_disjoint() -> None:
    items = list(range(20))
    train, val = split(items, 0.25, seed=3)
    assert (train, val) == split(items, 0.25, seed=3)
    assert sorted(train + val) == items and len(val) == 5
    assert split(items, 0.25, seed=4) != (train, val)
    assert len(split([1, 2], 0.01, seed=0)[1]) == 1


def test_prompt_is_masked_and_response_scored(tiny_llama_dir: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_llama_dir))
    ex = SFTExample(render_prompt("Add 2 and 3."), "5")
    t = tokenize_for_sft(tok, ex, 128)
    n_prompt = 1 + len(tok.encode(ex.prompt, add_special_tokens=False))
    assert t.input_ids[0] == tok.bos_token_id and t.input_ids[-1] == tok.eos_token_id
    assert t.labels[:n_prompt] == [IGNORE_INDEX] * n_prompt
    assert t.labels[n_prompt:] == t.input_ids[n_prompt:]


def test_truncation_keeps_the_window_and_some_response(tiny_llama_dir: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_llama_dir))
    t = tokenize_for_sft(tok, SFTExample("word " * 200, "answer " * 200), 64)
    assert len(t.input_ids) == 64
    assert 0 < t.scored_tokens <= 32
