"""Sequence packing for SFT: several tokenized examples share one row of the batch.

How the masking works: every example in a packed row restarts its `position_ids` at 0, and the model
is called with `attention_mask=None` and `use_cache=False`. transformers (>= 4.53, here 5.x) then
detects the packed layout from the position resets and builds a block-diagonal causal mask, so an
example never attends to another one (checked by a test: a packed forward pass gives the same
logits as each example alone). Labels of each example's first token (BOS, masked) are -100, so no
loss crosses an example boundary either. Row tails are filled with pad tokens forming one more
"example" of their own, with labels -100.

Packing is first-fit decreasing over the examples of one epoch, deterministic for given inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from trainer.data import IGNORE_INDEX, TokenizedExample

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class PackedRow:
    input_ids: list[int]
    labels: list[int]
    position_ids: list[int]

    @property
    def scored_tokens(self) -> int:
        return sum(1 for x in self.labels if x != IGNORE_INDEX)


def pack_examples(examples: Sequence[TokenizedExample], max_length: int) -> list[PackedRow]:
    """First-fit-decreasing packing of examples (each <= max_length tokens) into rows of max_length."""
    order = sorted(range(len(examples)), key=lambda i: (-len(examples[i].input_ids), i))
    bins: list[list[int]] = []
    room: list[int] = []
    for i in order:
        n = len(examples[i].input_ids)
        if n > max_length:
            raise ValueError(f"example {i} has {n} tokens, over max_length {max_length}: truncate first")
        for b, free in enumerate(room):
            if free >= n:
                bins[b].append(i)
                room[b] -= n
                break
        else:
            bins.append([i])
            room.append(max_length - n)
    rows = []
    for members in bins:
        ids: list[int] = []
        labels: list[int] = []
        positions: list[int] = []
        for i in members:
            ex = examples[i]
            ids.extend(ex.input_ids)
            labels.extend(ex.labels)
            positions.extend(range(len(ex.input_ids)))
        rows.append(PackedRow(ids, labels, positions))
    return rows


def collate_packed(rows: Sequence[PackedRow], pad_id: int) -> dict[str, torch.Tensor]:
    """Stack rows into tensors [batch, longest row]; tails are unscored pad tokens positioned 0, 1, ..."""
    import torch

    width = max(len(r.input_ids) for r in rows)
    ids, labels, positions = [], [], []
    for r in rows:
        fill = width - len(r.input_ids)
        ids.append(r.input_ids + [pad_id] * fill)
        labels.append(r.labels + [IGNORE_INDEX] * fill)
        positions.append(r.position_ids + list(range(fill)))
    return {
        "input_ids": torch.tensor(ids, dtype=torch.long),
        "labels": torch.tensor(labels, dtype=torch.long),
        "position_ids": torch.tensor(positions, dtype=torch.long),
    }


def collate_padded(examples: Sequence[TokenizedExample], pad_id: int) -> dict[str, torch.Tensor]:
    """One example per row, right-padded, with an attention mask (evaluation; unpacked training)."""
    import torch

    width = max(len(e.input_ids) for e in examples)
    ids, labels, mask = [], [], []
    for e in examples:
        fill = width - len(e.input_ids)
        ids.append(e.input_ids + [pad_id] * fill)
        labels.append(e.labels + [IGNORE_INDEX] * fill)
        mask.append([1] * len(e.input_ids) + [0] * fill)
    return {
        "input_ids": torch.tensor(ids, dtype=torch.long),
        "labels": torch.tensor(labels, dtype=torch.long),
        "attention_mask": torch.tensor(mask, dtype=torch.long),
    }
