"""The instruct recipe: real LoRA training on a tiny Llama, evaluation, reload, export and checks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file

from trainer.artifacts import ADAPTER_WEIGHTS
from trainer.recipes import ArtifactRejected, EvalJob, RecordingReporter, TrainJob, get_recipe

FAST_HP = {
    "max_length": 64,
    "lr": 1e-2,
    "micro_batch_size": 4,
    "epochs": 20.0,
    "lora_r": 8,
    "warmup_ratio": 0.0,
}


def train(model_dir: Path, data: Path, out: Path, **overrides: Any) -> tuple[Any, RecordingReporter]:
    hparams = {**FAST_HP, **overrides.pop("hparams", {})}
    job = TrainJob(
        kind="instruct",
        base_model_dir=str(model_dir),
        train_file=str(data),
        output_dir=str(out),
        hparams=hparams,
        max_steps=overrides.pop("max_steps", 12),
        threads=1,
        **overrides,
    )
    reporter = RecordingReporter()
    return get_recipe("instruct").train(job, reporter), reporter


def eval_loss(model_dir: Path, data: Path, artifact: Path | None) -> float:
    job = EvalJob(
        kind="instruct",
        base_model_dir=str(model_dir),
        artifact_dir=artifact and str(artifact),
        eval_file=str(data),
        device="cpu",  # the tests compare against direct CPU computations, also on a machine with a GPU
        threads=1,
    )
    return get_recipe("instruct").evaluate(job, RecordingReporter())["loss"]


@pytest.fixture(scope="module")
def trained(tiny_llama_dir: Path, trainer_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    out = tmp_path_factory.mktemp("instruct") / "adapter"
    result, reporter = train(tiny_llama_dir, trainer_data_dir / "sft.jsonl", out)
    return result, reporter


def test_training_lowers_the_masked_loss(trained: Any, tiny_llama_dir: Path, sft_file: Path) -> None:
    result, reporter = trained
    losses = reporter.losses()
    assert result.steps == 12 and result.stopped_reason == "max_steps"
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.3
    before = eval_loss(tiny_llama_dir, sft_file, None)
    after = eval_loss(tiny_llama_dir, sft_file, Path(result.artifact_dir))
    assert after < before - 0.3, (before, after)


def test_adapter_reloads_with_peft_and_scores_the_same(
    trained: Any, tiny_llama_dir: Path, sft_file: Path
) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trainer.data import load_examples
    from trainer.evaluate import masked_test_loss

    result, _ = trained
    files = sorted(p.name for p in Path(result.artifact_dir).iterdir())
    assert "adapter_model.safetensors" in files and not [f for f in files if f.endswith(".bin")]
    base = AutoModelForCausalLM.from_pretrained(str(tiny_llama_dir))
    model = PeftModel.from_pretrained(base, result.artifact_dir)
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_llama_dir))
    examples = load_examples(sft_file, "instruct")
    direct = masked_test_loss(model, tokenizer, examples, 512, "cpu")["loss"]
    assert direct == pytest.approx(eval_loss(tiny_llama_dir, sft_file, Path(result.artifact_dir)), rel=1e-5)


TOKENS_DELTA = "base_model.model.model.embed_tokens.token_adapter.trainable_tokens_delta"


def test_auto_targets_train_the_tied_embeddings_in_full(
    trained: Any, tiny_llama_dir: Path, sft_file: Path
) -> None:
    """The default targets (``auto``) on a small model: LoRA on the linear layers and the whole token
    embedding as PEFT trainable tokens. The tiny model ties its head to the embedding, so the one delta
    moves both, for every token id: also the rows of tokens the data never shows, which only the
    softmax reaches (pushing them down is what a head LoRA of rank r cannot do at full rank)."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trainer.data import load_examples

    result, _ = trained
    adapter = Path(result.artifact_dir)
    tensors = load_file(str(adapter / ADAPTER_WEIGHTS))
    base: Any = AutoModelForCausalLM.from_pretrained(str(tiny_llama_dir))
    vocab, hidden = base.get_input_embeddings().weight.shape
    assert tensors[TOKENS_DELTA].shape == (vocab, hidden)
    assert not any("lm_head" in n for n in tensors)  # the head moves with the tied embedding
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["trainable_token_indices"] == list(range(vocab))
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_llama_dir))
    tokenizer_ids: set[int] = set()
    for ex in load_examples(sft_file, "instruct"):
        tokenizer_ids.update(tokenizer.encode(ex.prompt + ex.response))
    unseen = sorted(set(range(vocab)) - tokenizer_ids - set(tokenizer.all_special_ids))
    # PEFT stores the rows' new values; the unseen tokens' rows moved away from the base's.
    base_rows = base.get_input_embeddings().weight.detach()
    assert unseen and not torch.allclose(tensors[TOKENS_DELTA][unseen], base_rows[unseen])
    ids = torch.tensor([[5, 17, 42, 7]])
    embedding = base.get_input_embeddings()(ids).detach().clone()
    with torch.no_grad():
        before = base(input_ids=ids).logits
        model = PeftModel.from_pretrained(base, str(adapter))
        after = model(input_ids=ids).logits
        moved = model.get_input_embeddings()(ids)
    assert not torch.allclose(moved, embedding) and not torch.allclose(before, after)


def test_head_targets_leave_the_tied_input_embedding_alone(
    tiny_llama_dir: Path, sft_file: Path, tmp_path: Path
) -> None:
    """``all-linear+head``: a LoRA on the tied head changes the head's output, never the embedding."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    result, _ = train(
        tiny_llama_dir, sft_file, tmp_path / "a", max_steps=4, hparams={"lora_targets": "all-linear+head"}
    )
    names = load_file(str(Path(result.artifact_dir) / ADAPTER_WEIGHTS)).keys()
    assert any("lm_head.lora_B" in n for n in names) and all(".lora_" in n for n in names)
    base: Any = AutoModelForCausalLM.from_pretrained(str(tiny_llama_dir))
    assert base.config.tie_word_embeddings
    embedding = base.get_input_embeddings().weight.detach().clone()
    ids = torch.tensor([[5, 17, 42, 7]])
    with torch.no_grad():
        before = base(input_ids=ids).logits
        model = PeftModel.from_pretrained(base, result.artifact_dir)
        after = model(input_ids=ids).logits
    assert torch.equal(model.get_input_embeddings().weight, embedding)
    assert not torch.allclose(before, after)


def test_untied_models_get_the_embedding_rows_and_a_head_lora(tmp_path: Path) -> None:
    """Without tied embeddings the trainable tokens move only the input embedding, so the embeddings
    preset adds a LoRA on the head; the saved adapter passes the artifact check."""
    from trainer.artifacts import check_lora_artifact_dir
    from trainer.lora import load_base_model, wrap_lora
    from trainer.models import tiny_llama

    model_dir = tiny_llama(tmp_path / "untied", vocab=300, hidden=64, layers=1)
    config = json.loads((model_dir / "config.json").read_text())
    (model_dir / "config.json").write_text(json.dumps({**config, "tie_word_embeddings": False}))
    hp = {**get_recipe("instruct").default_hparams(), "lora_r": 4}
    model = wrap_lora(load_base_model(model_dir, "cpu", torch.float32), hp)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert any("embed_tokens.token_adapter" in n for n in trainable)
    assert any("lm_head.lora_B" in n for n in trainable)
    model.save_pretrained(str(tmp_path / "adapter"), safe_serialization=True, save_embedding_layers=False)
    check_lora_artifact_dir(tmp_path / "adapter", model_dir)


def test_the_embeddings_preset_is_capped_by_the_model_size() -> None:
    from trainer.targets import MAX_EMBEDDING_DELTA, TargetsError, resolve_targets

    assert resolve_targets("auto", 4096, 192) == "all-linear+embeddings"
    assert resolve_targets("auto", 32000, 4096) == "all-linear+head"  # a 7B model: 131M delta parameters
    assert resolve_targets("all-linear", 32000, 4096) == "all-linear"
    assert (
        resolve_targets("all-linear+embeddings", MAX_EMBEDDING_DELTA // 256, 256) == "all-linear+embeddings"
    )
    with pytest.raises(TargetsError, match="use 'all-linear\\+head' or 'auto'"):
        resolve_targets("all-linear+embeddings", 32000, 4096)


def test_same_seed_same_losses(tiny_llama_dir: Path, sft_file: Path, tmp_path: Path) -> None:
    _, first = train(tiny_llama_dir, sft_file, tmp_path / "a", max_steps=4, seed=7)
    _, second = train(tiny_llama_dir, sft_file, tmp_path / "b", max_steps=4, seed=7)
    _, other = train(tiny_llama_dir, sft_file, tmp_path / "c", max_steps=4, seed=8)
    assert first.losses() == second.losses()
    assert first.losses() != other.losses()


def test_validation_split_is_scored(tiny_llama_dir: Path, sft_file: Path, tmp_path: Path) -> None:
    result, reporter = train(tiny_llama_dir, sft_file, tmp_path / "a", max_steps=2, val_fraction=0.25)
    assert result.metrics["val_loss"] > 0
    assert {"name": "val_loss", "value": result.metrics["val_loss"], "event": "metric"} in reporter.events
    assert any("9 train / 3 val" in e.get("message", "") for e in reporter.events)


def test_export_bundle_checks_and_extracts(trained: Any, tiny_llama_dir: Path, tmp_path: Path) -> None:
    from protocol.bundle import extract_bundle, read_manifest

    result, _ = trained
    recipe = get_recipe("instruct")
    bundle = recipe.export(Path(result.artifact_dir), tmp_path / "adapter.bundle")
    manifest = read_manifest(bundle)
    assert manifest.kind == "instruct" and manifest.meta["lora_r"] == "8"
    recipe.check_artifact(manifest, tiny_llama_dir)
    dest = tmp_path / "extracted"
    extract_bundle(bundle, dest)
    recipe.check_artifact(dest, tiny_llama_dir)


def _rewrite_adapter(src: Path, dest: Path, change: Any) -> Path:
    dest.mkdir()
    config = json.loads((src / "adapter_config.json").read_text())
    tensors = load_file(str(src / ADAPTER_WEIGHTS))
    config, tensors = change(config, tensors)
    (dest / "adapter_config.json").write_text(json.dumps(config))
    save_file(tensors, str(dest / ADAPTER_WEIGHTS))
    return dest


def _grow_hidden(config: dict[str, Any], tensors: dict[str, torch.Tensor]) -> Any:
    name = next(k for k in tensors if k.endswith("q_proj.lora_A.weight"))
    tensors[name] = torch.zeros(tensors[name].shape[0], tensors[name].shape[1] * 2)
    return config, tensors


def _huge_rank(config: dict[str, Any], tensors: dict[str, torch.Tensor]) -> Any:
    config["r"] = 1024
    return config, tensors


def _foreign_tensor(config: dict[str, Any], tensors: dict[str, torch.Tensor]) -> Any:
    tensors["base_model.model.model.embed_tokens.weight"] = torch.zeros(512, 64)
    return config, tensors


def _wide_token_delta(config: dict[str, Any], tensors: dict[str, torch.Tensor]) -> Any:
    delta = tensors[TOKENS_DELTA]
    tensors[TOKENS_DELTA] = torch.zeros(delta.shape[0], delta.shape[1] * 2)
    return config, tensors


def _token_id_outside_the_vocabulary(config: dict[str, Any], tensors: dict[str, torch.Tensor]) -> Any:
    config["trainable_token_indices"] = [*config["trainable_token_indices"][:-1], 10**6]
    return config, tensors


def _fewer_token_ids_than_rows(config: dict[str, Any], tensors: dict[str, torch.Tensor]) -> Any:
    config["trainable_token_indices"] = config["trainable_token_indices"][:-1]
    return config, tensors


def _tokens_on_another_module(config: dict[str, Any], tensors: dict[str, torch.Tensor]) -> Any:
    config["trainable_token_indices"] = {"lm_head": config["trainable_token_indices"]}
    return config, tensors


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (_grow_hidden, "expected"),
        (_huge_rank, "exceeds the cap"),
        (_foreign_tensor, "only lora_A"),
        (_wide_token_delta, "expected \\[token ids"),
        (_token_id_outside_the_vocabulary, "below the vocabulary size"),
        (_fewer_token_ids_than_rows, "rows for"),
        (_tokens_on_another_module, "only the input embedding"),
    ],
)
def test_bad_adapter_is_refused_before_loading(
    trained: Any,
    tiny_llama_dir: Path,
    sft_file: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    change: Any,
    message: str,
) -> None:
    import trainer.recipes.instruct as instruct

    bad = _rewrite_adapter(Path(trained[0].artifact_dir), tmp_path / "bad", change)

    def must_not_load(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a rejected adapter was loaded")

    monkeypatch.setattr(instruct, "load_adapter", must_not_load)
    monkeypatch.setattr(instruct, "load_base_model", must_not_load)
    with pytest.raises(ArtifactRejected, match=message):
        eval_loss(tiny_llama_dir, sft_file, bad)


def test_adapter_for_another_base_is_refused(trained: Any, tmp_path: Path) -> None:
    from trainer.models import tiny_llama

    wider = tiny_llama(tmp_path / "wider", vocab=300, hidden=96, layers=2)
    with pytest.raises(ArtifactRejected, match="below the vocabulary size 300"):  # 512 token ids
        get_recipe("instruct").check_artifact(Path(trained[0].artifact_dir), wider)
    same_vocab = tiny_llama(tmp_path / "same-vocab", vocab=512, hidden=96, layers=2)
    with pytest.raises(ArtifactRejected, match="expected"):
        get_recipe("instruct").check_artifact(Path(trained[0].artifact_dir), same_vocab)


def test_unknown_hyperparameter_is_an_error(tiny_llama_dir: Path, sft_file: Path, tmp_path: Path) -> None:
    from trainer.recipes import JobSpecError

    with pytest.raises(JobSpecError, match="unknown instruct hyperparameter"):
        train(tiny_llama_dir, sft_file, tmp_path / "a", hparams={"learning_rate": 1e-3})


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_mixed_precision_training(tiny_llama_dir: Path, sft_file: Path, tmp_path: Path) -> None:
    result, reporter = train(tiny_llama_dir, sft_file, tmp_path / "a", device="cuda")
    losses = reporter.losses()
    assert sum(losses[-3:]) < sum(losses[:3])
    assert eval_loss(tiny_llama_dir, sft_file, Path(result.artifact_dir)) < eval_loss(
        tiny_llama_dir, sft_file, None
    )


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_qlora_trains_where_bitsandbytes_exists(tiny_llama_dir: Path, sft_file: Path, tmp_path: Path) -> None:
    pytest.importorskip("bitsandbytes")
    result, reporter = train(tiny_llama_dir, sft_file, tmp_path / "a", device="cuda", hparams={"qlora": True})
    losses = reporter.losses()
    assert sum(losses[-3:]) < sum(losses[:3])
    assert (Path(result.artifact_dir) / ADAPTER_WEIGHTS).is_file()


def test_progress_under_an_unmeasured_plan_follows_the_budget(
    tiny_llama_dir: Path, sft_file: Path, tmp_path: Path
) -> None:
    # Autoresearch plans 10**6 steps when it never measured the pace; the loop then stops on the
    # budget. Progress must say so, not "0.0% eta 1653224s" (seen in a bitnet devnet run).
    _, reporter = train(
        tiny_llama_dir, sft_file, tmp_path / "a", max_steps=10**6, budget_s=4.0, hparams={"epochs": 1e5}
    )
    events = [e for e in reporter.events if e["event"] == "progress"]
    assert len(events) >= 2 and all(e["eta_s"] <= 4.0 for e in events)
    assert events[-1]["percent"] > 50.0  # the run spent its budget: most of the way through
    percents = [e["percent"] for e in events]
    assert percents == sorted(percents)


def test_loop_state_progress() -> None:
    from trainer.checkpoint import LoopState

    state = LoopState(step=10, total_steps=100, seconds=5.0)
    assert state.progress() == (10.0, 45.0)  # steps decide while the budget is not binding
    assert state.progress(budget_s=60.0) == (10.0, 45.0)
    assert state.progress(budget_s=20.0) == (25.0, 15.0)  # the budget ends the run first
    assert state.progress(budget_s=4.0) == (100.0, 0.0)
    assert LoopState().progress(budget_s=10.0) == (0.0, 0.0)


def test_loop_state_fits_the_plan_to_the_budget() -> None:
    from trainer.checkpoint import LoopState

    state = LoopState(step=2, total_steps=10**6, seconds=1.0)
    assert state.fit_to_budget(None, 1.0, 2) is None  # no budget: the plan stands
    assert state.fit_to_budget(11.0, 1.0, 1) is None  # one step is no pace yet
    assert state.fit_to_budget(11.0, 1.0, 2) == 22 and state.total_steps == 22  # 0.5 s/step, 10 s left
    state.step, state.seconds = 3, 1.5
    assert state.fit_to_budget(11.0, 1.5, 3) is None  # re-checked after 2, 5 and every 20 steps only
    state.step, state.seconds = 5, 2.5
    assert state.fit_to_budget(100.0, 2.5, 5) is None and state.total_steps == 22  # never grows
    assert state.plan_steps == 10**6 and state.stopped_reason("completed", None) == "budget"


def test_a_job_can_start_from_an_earlier_adapter(
    tiny_llama_dir: Path, sft_file: Path, tmp_path: Path
) -> None:
    """init_adapter_dir (autoresearch's race winner): the run starts from those LoRA weights, and an
    adapter of another rank is refused with a message instead of being half-loaded."""
    from peft import get_peft_model_state_dict

    from trainer.lora import load_base_model, wrap_lora
    from trainer.recipes import TrainerError

    first, _ = train(tiny_llama_dir, sft_file, tmp_path / "a")
    hp = {**get_recipe("instruct").default_hparams(), **FAST_HP}
    base = load_base_model(tiny_llama_dir, "cpu", torch.float32)
    wrapped = wrap_lora(base, hp, init_adapter_dir=first.artifact_dir)
    loaded = get_peft_model_state_dict(wrapped, save_embedding_layers=False)
    saved = load_file(str(Path(first.artifact_dir) / ADAPTER_WEIGHTS))
    assert saved.keys() == loaded.keys() and all(torch.equal(saved[k], loaded[k]) for k in saved)
    assert TOKENS_DELTA in saved  # the default targets train the (tied) embeddings
    assert any(v.abs().sum() > 0 for k, v in saved.items() if "lora_B" in k)  # trained, not fresh zeros
    other_rank = {**hp, "lora_r": 2 * int(hp["lora_r"])}
    with pytest.raises(TrainerError, match="does not match"):
        base = load_base_model(tiny_llama_dir, "cpu", torch.float32)
        wrap_lora(base, other_rank, init_adapter_dir=first.artifact_dir)
    # Through the recipe: the continued run's first loss is the first run's level, not a fresh start's.
    _, fresh = train(tiny_llama_dir, sft_file, tmp_path / "b")
    _, continued = train(tiny_llama_dir, sft_file, tmp_path / "c", init_adapter_dir=first.artifact_dir)
    assert continued.losses()[0] < fresh.losses()[0]


@pytest.mark.parametrize("cpu_bf16", [True, False])
def test_cpu_bf16_autocast_computes_in_bf16_and_keeps_fp32_weights(
    tiny_llama_dir: Path, sft_file: Path, cpu_bf16: bool
) -> None:
    """On a CPU with native bf16 the loop autocasts: the layers compute in bf16, the trainable
    weights and their optimizer state stay fp32, and the loss still falls. Without it: fp32."""
    from trainer.data import load_examples, tokenize_for_sft
    from trainer.loop import LoopSettings, TrainingLoop
    from trainer.lora import load_base_model, load_tokenizer, wrap_lora
    from trainer.recipes.instruct import to_rows

    torch.manual_seed(0)
    tokenizer = load_tokenizer(tiny_llama_dir)
    examples = load_examples(sft_file, "instruct")
    rows = to_rows([tokenize_for_sft(tokenizer, e, 64) for e in examples], 64, True)
    hp = {**get_recipe("instruct").default_hparams(), **FAST_HP}
    model = wrap_lora(load_base_model(tiny_llama_dir, "cpu", torch.float32), hp)
    seen: list[torch.dtype] = []
    layer = model.get_base_model().model.layers[0].self_attn.q_proj
    layer.register_forward_hook(lambda m, i, out: seen.append(out.dtype))
    settings = LoopSettings(
        lr=1e-2, weight_decay=0.0, warmup_ratio=0.0, schedule="constant", micro_batch_size=4, grad_accum=1,
        max_grad_norm=1.0, epochs=20.0, max_steps=8, budget_s=600.0, seed=0, device="cpu",
        dtype=torch.float32, pad_id=int(tokenizer.pad_token_id), cpu_bf16=cpu_bf16,
    )  # fmt: skip
    loop = TrainingLoop(model, rows, settings, RecordingReporter(), "bf16-test")
    loop.run()
    assert set(seen) == {torch.bfloat16 if cpu_bf16 else torch.float32}
    assert all(p.dtype == torch.float32 for p in loop.trainable.values())
    losses = loop.state.losses
    assert sum(losses[-3:]) < sum(losses[:3]) - 0.3


def test_native_bf16_is_read_from_the_cpu_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    import trainer.hardware as hardware

    monkeypatch.setattr(hardware, "_cpuinfo", lambda: ("x", {"avx2", "avx512f", "avx512_bf16"}))
    assert hardware.cpu_has_native_bf16()
    monkeypatch.setattr(hardware, "_cpuinfo", lambda: ("x", {"avx2", "amx_tile", "amx_bf16"}))
    assert hardware.cpu_has_native_bf16()
    monkeypatch.setattr(hardware, "_cpuinfo", lambda: ("x", {"avx2", "avx512f", "avx512bw"}))
    assert not hardware.cpu_has_native_bf16()  # bf16 would be emulated: slower than fp32
    monkeypatch.setattr(hardware, "_cpuinfo", lambda: ("x", {"avx512_bf16"}))
    monkeypatch.setenv("MAGNET_CPU_BF16", "0")
    assert not hardware.cpu_has_native_bf16()  # turned off by the user
