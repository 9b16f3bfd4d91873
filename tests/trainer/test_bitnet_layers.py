"""BitNet b1.58 building blocks: ternary weights, int8 activations, straight-through gradients, packing."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM
from transformers.integrations.bitnet import unpack_weights

from trainer.bitnet.layers import (
    BitLinear,
    activation_quant,
    convert_to_bitnet,
    lambda_schedule,
    set_quant_lambda,
    ternarize,
)
from trainer.bitnet.packing import pack_ternary, unpack_ternary


def test_ternarize_uses_absmean_scale_and_three_values() -> None:
    weight = torch.randn(32, 48)
    ternary, scale = ternarize(weight)
    assert set(ternary.flatten().tolist()) <= {-1, 0, 1}
    assert scale == pytest.approx(weight.abs().mean().item())
    # round(W / s) clipped: entries below s/2 in magnitude become zero.
    assert torch.equal(ternary == 0, (weight / scale).abs() < 0.5)


def test_activation_quant_is_per_token_int8_grid() -> None:
    x = torch.randn(3, 5, 64) * torch.tensor([1.0, 10.0, 100.0]).view(3, 1, 1)
    q = activation_quant(x)
    step = x.abs().amax(dim=-1, keepdim=True) / 127
    levels = q / step
    assert torch.allclose(levels, levels.round(), atol=1e-3)
    assert levels.abs().max() <= 127.001
    assert (q - x).abs().max() <= (step / 2 + 1e-6).max()


def test_straight_through_gradient_reaches_latent_weights() -> None:
    torch.manual_seed(0)
    layer = BitLinear(16, 8)
    x = torch.randn(4, 16, requires_grad=True)
    layer(x).pow(2).sum().backward()
    assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0
    # STE: the gradient equals the one of a plain linear using the quantised tensors.
    w_q = (ternarize(layer.weight)[0].float() * ternarize(layer.weight)[1]).requires_grad_(True)
    x_q = activation_quant(x.detach())
    nn.functional.linear(x_q, w_q).pow(2).sum().backward()  # type: ignore[no-untyped-call]
    assert w_q.grad is not None
    assert torch.allclose(layer.weight.grad, w_q.grad, atol=1e-5)


def test_lambda_zero_is_full_precision_and_one_is_ternary() -> None:
    torch.manual_seed(0)
    linear = nn.Linear(32, 16, bias=False)
    layer = BitLinear.from_linear(linear)
    x = torch.randn(2, 32)
    layer.quant_lambda = 0.0
    assert torch.equal(layer(x), linear(x))
    layer.quant_lambda = 1.0
    ternary, scale = ternarize(linear.weight)
    assert torch.allclose(layer(x), activation_quant(x) @ (ternary.float() * scale).T, atol=1e-5)
    assert [lambda_schedule(s, 10) for s in (0, 5, 10, 20)] == [0.0, 0.5, 1.0, 1.0]
    assert lambda_schedule(0, 0) == 1.0


def test_convert_keeps_embeddings_norms_and_head_full_precision() -> None:
    config = LlamaConfig(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4
    )
    model = LlamaForCausalLM(config)
    converted = convert_to_bitnet(model)
    assert len(converted) == 2 * 7
    assert type(model.lm_head) is nn.Linear
    assert isinstance(model.model.layers[1].mlp.down_proj, BitLinear)
    assert isinstance(model.model.embed_tokens, nn.Embedding)
    set_quant_lambda(model, 0.25)
    assert {m.quant_lambda for m in model.modules() if isinstance(m, BitLinear)} == {0.25}
    with pytest.raises(ValueError):
        set_quant_lambda(model, 1.5)


@settings(max_examples=40, deadline=None)
@given(rows=st.integers(1, 16), cols=st.integers(1, 24), seed=st.integers(0, 2**16))
def test_pack_unpack_round_trip(rows: int, cols: int, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    ternary = torch.randint(-1, 2, (rows * 4, cols), generator=generator, dtype=torch.int8)
    packed = pack_ternary(ternary)
    assert packed.dtype == torch.uint8 and packed.shape == (rows, cols)  # 2 bits per weight
    assert torch.equal(unpack_ternary(packed), ternary)
    # The same layout transformers' BitNet loader reads.
    assert torch.equal(unpack_weights(packed, torch.int8), ternary)


def test_pack_refuses_non_ternary_and_odd_rows() -> None:
    with pytest.raises(ValueError, match="multiple of 4"):
        pack_ternary(torch.zeros(6, 3, dtype=torch.int8))
    with pytest.raises(ValueError, match="-1, 0, 1"):
        pack_ternary(torch.full((4, 3), 2, dtype=torch.int8))
