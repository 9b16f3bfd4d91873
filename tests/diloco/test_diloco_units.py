"""Unit tests of the DiLoCo parts on small tensors (no model): shards, compression, codec, copies,
the outer step and the merge's exclusion of rejected contributions."""

from __future__ import annotations

import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from trainer.diloco.codec import (
    ContributionHeader,
    ContributionRejected,
    Expected,
    decode_contribution,
    encode_contribution,
)
from trainer.diloco.compress import INT2_LEVELS, ErrorFeedback, compress
from trainer.diloco.config import CompressionConfig, InnerConfig
from trainer.diloco.params import params_hash
from trainer.diloco.shards import assign_shards, miner_seed
from validator.diloco.copies import find_copies
from validator.diloco.merge import OuterNesterov, average

SHAPES = {"a.weight": (6, 5), "b.bias": (7,)}
BASE = "ab" * 32


def delta(seed: int, scale: float = 1.0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {n: scale * torch.randn(s, generator=gen) for n, s in SHAPES.items()}


def blob(
    scheme: str = "int8", rnd: int = 3, base: str = BASE, d: dict | None = None, shapes: dict | None = None
) -> bytes:
    payload = compress(d if d is not None else delta(0), CompressionConfig(scheme=scheme, topk_fraction=0.3))
    return encode_contribution(payload, ContributionHeader(rnd, base, scheme, shapes or dict(SHAPES)))


NAN = {"a.weight": torch.full((6, 5), float("nan")), "b.bias": torch.zeros(7)}


def expected(scheme: str = "int8", max_bytes: int = 1 << 20) -> Expected:
    return Expected(3, BASE, scheme, dict(SHAPES), max_bytes)


def test_assignment_is_deterministic_and_unique_within_a_round() -> None:
    miners = [f"0x{i:040x}" for i in range(1, 9)]
    first = assign_shards(miners, 4, 7, 10)
    assert first == assign_shards(list(reversed(miners)), 4, 7, 10)  # order of arrival does not matter
    assert len(set(first.values())) == len(miners)  # no two miners share a shard
    assert first != assign_shards(miners, 5, 7, 10)  # a new round reshuffles
    assert miner_seed(miners[0], 4, 7) != miner_seed(miners[1], 4, 7)
    with pytest.raises(ValueError, match="twice"):
        assign_shards([miners[0], miners[0].upper()], 1, 0, 4)


@pytest.mark.parametrize("scheme", ["int8", "int4", "int2", "topk"])
def test_round_trip_and_error_feedback(scheme: str) -> None:
    cfg = CompressionConfig(scheme=scheme, topk_fraction=0.25, block=8)
    fb = ErrorFeedback(cfg)
    d = delta(1)
    payload, sent = fb.step(d)
    # what was not sent is kept exactly: sent + residual == the input
    for n in d:
        assert torch.allclose(sent[n] + fb.residual[n], d[n], atol=1e-6)
    header = ContributionHeader(3, BASE, scheme, dict(SHAPES))
    exp = Expected(3, BASE, scheme, SHAPES, 1 << 20)
    _h, got = decode_contribution(encode_contribution(payload, header), exp)
    for n in d:
        assert torch.allclose(got[n], sent[n], atol=1e-6)
    # over rounds the residual is re-sent: the running sum of what was sent approaches the total
    total_sent = {n: sent[n].clone() for n in d}
    for _ in range(30):
        _p, s = fb.step({n: torch.zeros_like(t) for n, t in d.items()})
        for n in d:
            total_sent[n] += s[n]
    for n in d:
        assert (total_sent[n] - d[n]).abs().max() < 0.02


def test_int4_packs_two_values_a_byte_within_half_a_step() -> None:
    d = delta(4)
    payload, sent = ErrorFeedback(CompressionConfig(scheme="int4", block=8)).step(d)
    assert payload["a.weight:q4"].dtype == torch.uint8
    assert tuple(payload["a.weight:q4"].shape) == (4, 4)  # 30 entries -> 4 blocks of 8 -> 4 bytes each
    for n in d:
        assert (sent[n] - d[n]).abs().max() <= d[n].abs().max() / 7 * 0.51 + 1e-7
    bad = dict(payload)
    bad["a.weight:q4"] = torch.zeros(4, 3, dtype=torch.uint8)  # too few entries for 30
    header = ContributionHeader(3, BASE, "int4", dict(SHAPES))
    with pytest.raises(ContributionRejected, match="wrong_shape"):
        decode_contribution(encode_contribution(bad, header), expected("int4"))
    with pytest.raises(ValueError, match="even"):
        CompressionConfig(scheme="int4", block=7)


def test_int2_sends_four_levels_times_the_block_rms() -> None:
    d = delta(5)
    payload, sent = ErrorFeedback(CompressionConfig(scheme="int2", block=8)).step(d)
    assert tuple(payload["a.weight:q2"].shape) == (4, 2)  # 30 entries -> 4 blocks of 8 -> 2 bytes each
    for n in d:
        rows = torch.nn.functional.pad(d[n].reshape(-1), (0, -d[n].numel() % 8)).view(-1, 8)
        rms = rows.square().mean(dim=1).sqrt().repeat_interleave(8)[: d[n].numel()]
        levels = torch.tensor(INT2_LEVELS)
        got = sent[n].reshape(-1) / rms
        nearest = levels[(got.unsqueeze(1) - levels).abs().argmin(dim=1)]
        assert torch.allclose(got, nearest, atol=1e-5)  # every value is one of the four levels
        want = levels[((d[n].reshape(-1) / rms).unsqueeze(1) - levels).abs().argmin(dim=1)]
        assert torch.equal(nearest, want)  # ... the nearest one
    bad = dict(payload)
    bad["a.weight:q2"] = torch.zeros(4, 1, dtype=torch.uint8)  # too few entries for 30
    header = ContributionHeader(3, BASE, "int2", dict(SHAPES))
    with pytest.raises(ContributionRejected, match="wrong_shape"):
        decode_contribution(encode_contribution(bad, header), expected("int2"))


def test_inner_lr_schedule_warms_up_then_decays() -> None:
    cfg = InnerConfig(inner_lr=1.0, warmup_steps=4, total_steps=14, min_lr_ratio=0.1)
    assert [cfg.lr_at(i) for i in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert cfg.lr_at(4) == 1.0
    assert cfg.lr_at(9) == pytest.approx(0.55)  # half-way through the decay
    assert cfg.lr_at(14) == pytest.approx(0.1) == cfg.lr_at(100)
    assert InnerConfig(inner_lr=0.5).lr_at(1000) == 0.5  # no schedule: constant


def test_int8_error_is_small_and_topk_keeps_the_largest() -> None:
    d = delta(2)
    _p, sent = ErrorFeedback(CompressionConfig(scheme="int8")).step(d)
    for n in d:
        assert (sent[n] - d[n]).abs().max() <= d[n].abs().max() / 127 * 0.51 + 1e-7
    _p, top = ErrorFeedback(CompressionConfig(scheme="topk", topk_fraction=0.2)).step(d)
    flat, kept = d["a.weight"].reshape(-1), top["a.weight"].reshape(-1)
    assert (kept != 0).sum() == 6  # ceil(0.2 * 30)
    assert kept.abs().max() == pytest.approx(float(flat.abs().max()), rel=1e-3)


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda: blob(), None),
        (lambda: blob(base="cd" * 32), "stale"),
        (lambda: blob(rnd=2), "wrong_round"),
        (lambda: blob(scheme="topk"), "malformed"),  # the round uses int8
        (lambda: b"\x80\x04\x95pickle", "malformed"),
        (lambda: b"\x00" * 4, "malformed"),
        (lambda: blob(shapes={"a.weight": (5, 6), "b.bias": (7,)}), "wrong_shape"),  # header disagrees
        (lambda: blob(d={"a.weight": torch.zeros(6, 5)}, shapes={"a.weight": (6, 5)}), "wrong_shape"),
        (lambda: blob(d={"a.weight": torch.zeros(6, 5), "b.bias": torch.zeros(300)}), "wrong_shape"),
        (lambda: blob(d=NAN), "non_finite"),
    ],
)
def test_decode_checks(make, reason: str | None) -> None:  # type: ignore[no-untyped-def]
    if reason is None:
        decode_contribution(make(), expected())
        return
    with pytest.raises(ContributionRejected) as err:
        decode_contribution(make(), expected())
    assert err.value.reason == reason


def test_decode_refuses_oversize_and_bad_indices() -> None:
    with pytest.raises(ContributionRejected, match="oversize"):
        decode_contribution(blob(), expected(max_bytes=100))
    from safetensors.torch import save

    payload = compress(delta(0), CompressionConfig(scheme="topk", topk_fraction=0.3))
    payload["b.bias:idx"] = payload["b.bias:idx"].clone()
    payload["b.bias:idx"][-1] = 7  # one past the end of a 7-entry tensor
    header = ContributionHeader(3, BASE, "topk", dict(SHAPES))
    with pytest.raises(ContributionRejected, match="indices"):
        decode_contribution(encode_contribution(payload, header), expected("topk"))
    meta = {"diloco": json.dumps({"format": "other"})}
    with pytest.raises(ContributionRejected, match="malformed"):
        decode_contribution(save(payload, metadata=meta), expected("topk"))


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=400))
def test_decode_never_crashes_on_garbage(data: bytes) -> None:
    with pytest.raises(ContributionRejected):
        decode_contribution(data, expected())


def test_copies_scaled_and_perturbed_are_flagged_earliest_credited() -> None:
    a, b = delta(10), delta(11)
    gen = torch.Generator().manual_seed(3)
    copy = {n: -0.0 + 2.0 * t + 0.05 * torch.randn(t.shape, generator=gen) for n, t in a.items()}
    flags = find_copies([("A", a), ("B", b), ("X", copy)], threshold=0.9)
    assert set(flags) == {"X"} and flags["X"][0] == "A" and flags["X"][1] > 0.99
    assert set(find_copies([("X", copy), ("A", a)], threshold=0.9)) == {"A"}  # the earlier one is kept


def test_outer_step_matches_torch_sgd_nesterov() -> None:
    params = delta(20)
    outer = OuterNesterov(lr=0.7, momentum=0.9)
    ref = {n: torch.nn.Parameter(t.clone()) for n, t in params.items()}
    opt = torch.optim.SGD(ref.values(), lr=0.7, momentum=0.9, nesterov=True)
    for step in range(3):
        grad = delta(30 + step, 0.1)
        params = outer.step(params, grad)
        for n, p in ref.items():
            p.grad = grad[n].clone()
        opt.step()
    for n in params:
        assert torch.allclose(params[n], ref[n].detach(), atol=1e-6)


def test_average_weights() -> None:
    a, b = {"w": torch.ones(2)}, {"w": 3 * torch.ones(2)}
    assert torch.allclose(average([a, b])["w"], 2 * torch.ones(2))
    assert torch.allclose(average([a, b], [3.0, 1.0])["w"], 1.5 * torch.ones(2))
    assert torch.allclose(average([a, b], [-1.0, 1.0])["w"], 3 * torch.ones(2))  # negative weight -> 0


def test_params_hash_names_the_model() -> None:
    p = delta(0)
    assert params_hash(p) == params_hash({n: t.clone() for n, t in p.items()})
    q = dict(p)
    q["b.bias"] = q["b.bias"] + 1e-3
    assert params_hash(p) != params_hash(q)


def test_state_survives_a_restart(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The miner's residual and the validator's momentum buffer come back from safetensors files."""
    cfg = CompressionConfig(scheme="topk", topk_fraction=0.2)
    fb = ErrorFeedback(cfg)
    fb.step(delta(5))
    fb.save(tmp_path / "residual.safetensors")
    again = ErrorFeedback(cfg)
    again.load(tmp_path / "residual.safetensors")
    p1, _ = fb.step(delta(6))
    p2, _ = again.step(delta(6))
    assert all(torch.equal(p1[k], p2[k]) for k in p1)
    outer = OuterNesterov()
    params = outer.step(delta(7), delta(8, 0.1))
    outer.save(tmp_path / "momentum.safetensors")
    resumed = OuterNesterov()
    resumed.load(tmp_path / "momentum.safetensors")
    a, b = outer.step(params, delta(9, 0.1)), resumed.step(params, delta(9, 0.1))
    assert all(torch.equal(a[k], b[k]) for k in a)
