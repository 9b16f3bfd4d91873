"""Packing: rows respect max_length, every example lands once, and packed examples do not see each other."""

from __future__ import annotations

from pathlib import Path

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from trainer.data import IGNORE_INDEX, TokenizedExample
from trainer.packing import collate_packed, pack_examples


def _example(n: int, start: int) -> TokenizedExample:
    ids = [(start + i) % 500 + 3 for i in range(n)]
    return TokenizedExample(ids, [IGNORE_INDEX, *ids[1:]])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=32), min_size=1, max_size=40))
def test_every_example_is_packed_once_within_the_window(lengths: list[int]) -> None:
    examples = [_example(n, i * 7) for i, n in enumerate(lengths)]
    rows = pack_examples(examples, 32)
    assert all(len(r.input_ids) <= 32 for r in rows)
    assert sum(len(r.input_ids) for r in rows) == sum(lengths)
    assert sum(r.scored_tokens for r in rows) == sum(e.scored_tokens for e in examples)
    # Positions restart at 0 exactly once per example.
    assert sum(r.position_ids.count(0) for r in rows) == len(lengths)


def test_packed_forward_equals_separate_forwards(tiny_llama_dir: Path) -> None:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(tiny_llama_dir)).eval()
    examples = [_example(9, 0), _example(5, 50), _example(12, 100)]
    rows = pack_examples(examples, 40)
    assert len(rows) == 1
    batch = collate_packed(rows, pad_id=2)
    with torch.no_grad():
        packed = model(
            input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False
        ).logits
        offset = 0
        for i in sorted(range(3), key=lambda i: -len(examples[i].input_ids)):  # first-fit-decreasing order
            ids = torch.tensor([examples[i].input_ids])
            alone = model(input_ids=ids, use_cache=False).logits
            n = ids.shape[1]
            torch.testing.assert_close(packed[:, offset : offset + n], alone, atol=1e-5, rtol=1e-4)
            offset += n


def test_pad_tail_is_unscored_and_its_own_segment() -> None:
    rows = pack_examples([_example(3, 0), _example(6, 9)], 8)
    batch = collate_packed(rows, pad_id=2)
    assert batch["input_ids"].shape == (2, 6)  # [rows, longest row]
    short = int((batch["input_ids"][:, -1] == 2).nonzero()[0])
    assert batch["labels"][short, 3:].eq(IGNORE_INDEX).all()
    assert batch["position_ids"][short].tolist() == [0, 1, 2, 0, 1, 2]
