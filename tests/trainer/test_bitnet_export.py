"""BitNet artifacts: packed safetensors load in transformers' own loader; GGUF TQ2_0 / TQ1_0 read back."""

from __future__ import annotations

import json
import random
from pathlib import Path

import gguf
import numpy as np
import pytest
import torch
from safetensors import safe_open

from trainer.bitnet.gguf_export import GGUFExportError, export_gguf, meta_rotary_permute
from trainer.bitnet.layers import set_quant_lambda
from trainer.bitnet.model import build_model, load_artifact
from trainer.bitnet.packing import WEIGHTS_FILE, save_packed_model, unpack_ternary
from trainer.models import tiny_llama
from trainer.recipes import NullReporter, TrainJob, get_recipe


def arithmetic_rows(n: int, seed: int) -> list[dict[str, str]]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        a, b = rng.randint(0, 50), rng.randint(0, 50)
        rows.append({"text": f"{a} + {b} = {a + b}. The answer is {a + b}."})
    return rows


def write_jsonl(path: Path, rows: list[dict[str, str]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def llama_cpp_artifact(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(base model dir, artifact dir) of a short scratch run with llama.cpp-compatible widths."""
    root = tmp_path_factory.mktemp("bitnet-export")
    base = tiny_llama(root / "base", hidden=64, heads=4, kv_heads=2, intermediate=192)
    train = write_jsonl(root / "train.jsonl", arithmetic_rows(64, 0))
    job = TrainJob(
        kind="bitnet",
        base_model_dir=str(base),
        train_file=str(train),
        output_dir=str(root / "artifact"),
        hparams={"architecture": "llama_cpp", "init": "scratch", "seq_len": 32, "batch_size": 4},
        max_steps=5,
        device="cpu",
        threads=1,
    )
    result = get_recipe("bitnet").train(job, NullReporter())
    return base, Path(result.artifact_dir)


def test_llama_cpp_architecture_rounds_widths_to_256(llama_cpp_artifact: tuple[Path, Path]) -> None:
    _, artifact = llama_cpp_artifact
    config = json.loads((artifact / "config.json").read_text())
    assert (config["hidden_size"], config["intermediate_size"], config["head_dim"]) == (256, 256, 64)
    assert config["hidden_act"] == "silu" and config["model_type"] == "llama"
    assert config["quantization_config"]["quant_method"] == "bitnet"
    assert sorted(p.name for p in artifact.iterdir() if p.suffix not in (".json",)) == [WEIGHTS_FILE]


def test_packed_artifact_is_two_bits_per_weight(llama_cpp_artifact: tuple[Path, Path]) -> None:
    _, artifact = llama_cpp_artifact
    with safe_open(str(artifact / WEIGHTS_FILE), framework="pt") as weights:
        packed = weights.get_tensor("model.layers.0.mlp.gate_proj.weight")
        embed = weights.get_tensor("model.embed_tokens.weight")
    assert packed.dtype == torch.uint8 and packed.shape == (256 // 4, 256)
    assert embed.dtype == torch.float32  # embeddings stay full precision


def test_packed_artifact_loads_in_transformers_with_the_training_forward(
    llama_cpp_artifact: tuple[Path, Path], tmp_path: Path
) -> None:
    from transformers.integrations.bitnet import BitLinear as HFBitLinear

    base, artifact = llama_cpp_artifact
    assert isinstance(load_artifact(artifact, "cpu").model.layers[0].self_attn.q_proj, HFBitLinear)
    # A model trained in memory (BitLinear, quantisation fully on) and the same model saved packed and
    # reloaded by transformers compute the same logits: the packing loses nothing the forward uses.
    model = build_model(base, "base", "pretrained", seed=0)
    set_quant_lambda(model, 1.0)
    save_packed_model(model, tmp_path / "packed")
    loaded = load_artifact(tmp_path / "packed", "cpu")
    ids = torch.randint(0, model.config.vocab_size, (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected, got = model(ids).logits, loaded(ids).logits
    assert torch.allclose(expected, got, atol=1e-4)


@pytest.mark.parametrize("quant", ["TQ2_0", "TQ1_0"])
def test_gguf_export_reads_back_with_ternary_types(
    llama_cpp_artifact: tuple[Path, Path], tmp_path: Path, quant: str
) -> None:
    _, artifact = llama_cpp_artifact
    path = export_gguf(artifact, tmp_path / f"model-{quant}.gguf", quant)
    reader = gguf.GGUFReader(path)
    tensors = {t.name: t for t in reader.tensors}
    assert tensors["blk.0.ffn_down.weight"].tensor_type.name == quant
    assert tensors["blk.1.attn_q.weight"].tensor_type.name == quant
    assert tensors["token_embd.weight"].tensor_type.name == "F16"
    assert tensors["blk.0.attn_norm.weight"].tensor_type.name == "F32"
    # GGUF lists shapes innermost first: (in_features, out_features).
    assert [int(x) for x in tensors["blk.0.attn_k.weight"].shape] == [256, 128]
    assert [int(x) for x in tensors["blk.0.ffn_gate.weight"].shape] == [256, 256]
    assert "output.weight" not in tensors  # tied embeddings: llama.cpp reuses token_embd
    # The quantised blocks hold exactly s * T (up to the fp16 block scale), Q/K rows permuted.
    with safe_open(str(artifact / WEIGHTS_FILE), framework="pt") as weights:
        packed = weights.get_tensor("model.layers.0.self_attn.k_proj.weight")
        scale = 1.0 / weights.get_tensor("model.layers.0.self_attn.k_proj.weight_scale").float()
    expected = meta_rotary_permute((unpack_ternary(packed, torch.float32) * scale).numpy(), 2)
    stored = tensors["blk.0.attn_k.weight"]
    got = gguf.quants.dequantize(stored.data, stored.tensor_type)
    assert np.allclose(got, expected, rtol=1e-3, atol=1e-6)
    fields = reader.fields
    assert bytes(fields["general.architecture"].parts[-1]).decode() == "llama"
    assert "tokenizer.ggml.merges" in fields
    # The vocabulary travels in id order, so llama.cpp tokenizes to the same ids as transformers.
    from transformers import AutoTokenizer

    vocab = AutoTokenizer.from_pretrained(str(artifact)).get_vocab()
    tokens = fields["tokenizer.ggml.tokens"].contents()
    assert tokens[: len(vocab)] == sorted(vocab, key=vocab.__getitem__)
    assert fields["tokenizer.ggml.eos_token_id"].contents() == vocab["<|eos|>"]
    assert int(fields["llama.embedding_length"].parts[-1][0]) == 256


def test_gguf_export_refuses_widths_llama_cpp_cannot_run(tmp_path: Path) -> None:
    base = tiny_llama(tmp_path / "base", hidden=64, intermediate=128)
    train = write_jsonl(tmp_path / "train.jsonl", arithmetic_rows(8, 1))
    job = TrainJob(
        kind="bitnet",
        base_model_dir=str(base),
        train_file=str(train),
        output_dir=str(tmp_path / "artifact"),
        hparams={"seq_len": 16, "batch_size": 2},
        max_steps=1,
        device="cpu",
        threads=1,
    )
    artifact = Path(get_recipe("bitnet").train(job, NullReporter()).artifact_dir)
    with pytest.raises(GGUFExportError, match="multiple of 256"):
        export_gguf(artifact, tmp_path / "model.gguf")


def test_gguf_generates_the_same_greedy_tokens_in_llama_cpp(
    llama_cpp_artifact: tuple[Path, Path], tmp_path: Path
) -> None:
    llama_cpp = pytest.importorskip(
        "llama_cpp", reason="llama-cpp-python is an optional extra (`magnet[llama]`, ~11 min build)"
    )
    from transformers import AutoTokenizer

    _, artifact = llama_cpp_artifact
    path = export_gguf(artifact, tmp_path / "model.gguf", "TQ2_0")
    tokenizer = AutoTokenizer.from_pretrained(str(artifact))
    prompt = tokenizer.encode("12 + 7 =", add_special_tokens=False)
    model = load_artifact(artifact, "cpu")
    torch_tokens = model.generate(torch.tensor([prompt]), max_new_tokens=4, do_sample=False)[0, len(prompt) :]
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=64, verbose=False)
    cpp_tokens = []
    for token in llm.generate(prompt, top_k=1, temp=0.0, repeat_penalty=1.0):
        cpp_tokens.append(token)
        if len(cpp_tokens) == 4:
            break
    assert cpp_tokens == torch_tokens.tolist()
