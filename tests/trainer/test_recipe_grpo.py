"""The `grpo` recipe: LoRA GRPO with named rewards; mean reward rises on a learnable toy task."""

from __future__ import annotations

import json
import random
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch

from protocol.bundle import read_manifest
from trainer.models import tiny_llama
from trainer.recipes import EvalJob, JobSpecError, NullReporter, RecordingReporter, TrainJob, get_recipe
from trainer.recipes.base import job_from_dict
from trainer.recipes.grpo import GRPORecipe, completion_mask, group_advantages, grpo_loss, parse_reward_spec

TOY_REWARD = "numeric_answer:1.0"  # reward for stating any number: dense enough to learn in seconds


def sums(n: int, seed: int) -> list[dict[str, str]]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        a, b = rng.randint(0, 20), rng.randint(0, 20)
        rows.append(
            {
                "prompt": f"Question: What is {a} + {b}?\nAnswer:",
                "answer": f"{a} + {b} = {a + b}\n#### {a + b}",
            }
        )
    return rows


def write_jsonl(path: Path, rows: list[dict[str, str]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny model whose embeddings are scaled up: a freshly initialised tied head (std 0.02) cannot
    move its output distribution far enough for any reward to be learnable; a pretrained one can."""
    from transformers import AutoModelForCausalLM

    root = tmp_path_factory.mktemp("grpo")
    raw = tiny_llama(root / "raw", hidden=64, intermediate=128)
    model = AutoModelForCausalLM.from_pretrained(str(raw))
    with torch.no_grad():
        model.model.embed_tokens.weight.mul_(6.0)
    model.save_pretrained(str(root / "base"))
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copyfile(raw / name, root / "base" / name)
    return {
        "root": root,
        "base": root / "base",
        "train": write_jsonl(root / "train.jsonl", sums(32, 0)),
        "test": write_jsonl(root / "test.jsonl", sums(8, 1)),
    }


def job(ws: dict[str, Path], name: str, steps: int, **hparams: object) -> TrainJob:
    hp = {"rewards": TOY_REWARD, "lr": 1e-2, "max_new_tokens": 8, "group_size": 8, "prompts_per_step": 4}
    return TrainJob(
        kind="grpo",
        base_model_dir=str(ws["base"]),
        train_file=str(ws["train"]),
        output_dir=str(ws["root"] / name),
        hparams={**hp, "kl_beta": 0.0, **hparams},
        max_steps=steps,
        device="cpu",
        threads=1,
    )


def mean_reward(ws: dict[str, Path], artifact: Path | None, rewards: str = TOY_REWARD) -> float:
    eval_job = EvalJob(
        "grpo", str(ws["base"]), str(artifact) if artifact else None, str(ws["test"]), threads=1,
        rewards=rewards,
    )
    return GRPORecipe().evaluate(eval_job, NullReporter())["mean_reward"]


def test_eval_job_scores_with_the_rewards_it_names(workspace: dict[str, Path]) -> None:
    """The task's named rewards reach evaluation: a spec and its doubled weights give double the mean."""
    once = mean_reward(workspace, None, "no_repetition:1.0")
    twice = mean_reward(workspace, None, "no_repetition:2.0")
    assert once > 0.0
    assert twice == pytest.approx(2 * once)
    default = EvalJob("grpo", str(workspace["base"]), None, str(workspace["test"]), threads=1)
    assert default.rewards is None  # evaluated with DEFAULT_REWARDS
    back = job_from_dict(json.loads(EvalJob("grpo", "b", None, "t", rewards=TOY_REWARD).to_json()))
    assert isinstance(back, EvalJob) and back.rewards == TOY_REWARD
    with pytest.raises(JobSpecError, match="unknown reward 'run_my_code'"):
        EvalJob("grpo", "b", None, "t", rewards="run_my_code:1.0")
    with pytest.raises(JobSpecError, match="grpo field"):
        EvalJob("instruct", "b", None, "t", rewards=TOY_REWARD)


def test_eval_job_samples_at_the_tasks_completion_length(
    workspace: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The task's max_new_tokens reaches the sampler of evaluation; without it the recipe's default."""
    from trainer.recipes import grpo

    asked: list[int] = []
    real_sample = grpo.sample

    def sample(*args: Any) -> Any:
        asked.append(int(args[4]["max_new_tokens"]))  # args: model, tokenizer, examples, group, hp, device
        return real_sample(*args)

    monkeypatch.setattr(grpo, "sample", sample)
    base, test = str(workspace["base"]), str(workspace["test"])
    short = EvalJob("grpo", base, None, test, threads=1, rewards=TOY_REWARD, max_examples=4, max_new_tokens=8)
    GRPORecipe().evaluate(short, NullReporter())
    GRPORecipe().evaluate(replace(short, max_new_tokens=None), NullReporter())
    assert asked == [8, GRPORecipe.default_hparams()["max_new_tokens"]]
    back = job_from_dict(json.loads(short.to_json()))
    assert isinstance(back, EvalJob) and back.max_new_tokens == 8
    for bad, words in [(0, ">= 1"), (2.5, "an integer"), (True, "an integer")]:
        with pytest.raises(JobSpecError, match=words):
            EvalJob("grpo", "b", None, "t", max_new_tokens=bad)  # type: ignore[arg-type]
    with pytest.raises(JobSpecError, match="grpo field"):
        EvalJob("instruct", "b", None, "t", max_new_tokens=24)


@pytest.mark.slow
def test_mean_reward_rises_on_a_toy_task(workspace: dict[str, Path]) -> None:
    before = mean_reward(workspace, None)
    reporter = RecordingReporter()
    result = get_recipe("grpo").train(job(workspace, "toy", 30), reporter)
    rewards = [e["mean_reward"] for e in reporter.events if e["event"] == "progress"]
    assert len(rewards) == 30
    first, last = sum(rewards[:5]) / 5, sum(rewards[-5:]) / 5
    assert last > first + 0.3, rewards
    after = mean_reward(workspace, Path(result.artifact_dir))
    assert after > before + 0.1, (before, after)
    assert mean_reward(workspace, None) == before  # fixed sampling seed: evaluation is reproducible


def test_kl_and_several_updates_per_batch_run(workspace: dict[str, Path], tmp_path: Path) -> None:
    reporter = RecordingReporter()
    recipe = get_recipe("grpo")
    result = recipe.train(job(workspace, "kl", 2, kl_beta=0.04, updates_per_batch=2), reporter)
    kls = [e["kl"] for e in reporter.events if e["event"] == "progress"]
    assert len(kls) == 2 and all(k >= 0 for k in kls)
    manifest = read_manifest(recipe.export(Path(result.artifact_dir), tmp_path / "grpo.magnet"))
    recipe.check_artifact(manifest, workspace["base"])


def test_unknown_reward_names_are_refused(workspace: dict[str, Path]) -> None:
    with pytest.raises(JobSpecError, match="unknown reward"):
        get_recipe("grpo").train(
            job(workspace, "bad", 1, rewards="exact_answer:1,os.system:1"), NullReporter()
        )
    assert parse_reward_spec("exact_answer:1.0, format:0.2") == {"exact_answer": 1.0, "format": 0.2}


def test_group_advantages_are_normalised_per_group() -> None:
    rewards = torch.tensor([1.0, 0.0, 0.0, 0.0, 5.0, 5.0, 5.0, 5.0])
    adv = group_advantages(rewards, 4)
    assert adv[:4].sum().abs() < 1e-5 and adv[0] > 0 > adv[1]
    assert torch.equal(adv[4:], torch.zeros(4))  # a group with equal rewards teaches nothing


def test_clipped_objective_stops_gradient_beyond_the_trust_region() -> None:
    old = torch.zeros(1, 2)
    logps = torch.tensor([[0.5, 0.0]], requires_grad=True)  # ratio e^0.5 ~ 1.65 > 1.2 on token 0
    loss, _ = grpo_loss(logps, old, None, torch.tensor([1.0]), torch.ones(1, 2), clip_eps=0.2, kl_beta=0.0)
    loss.backward()  # type: ignore[no-untyped-call]
    assert logps.grad is not None
    assert logps.grad[0, 0] == 0.0 and logps.grad[0, 1] < 0.0


def test_completion_mask_stops_after_the_first_eos() -> None:
    completions = torch.tensor([[5, 6, 2, 0, 0], [5, 6, 7, 8, 9]])
    assert completion_mask(completions, eos_id=2).tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_grpo_runs_on_cuda(workspace: dict[str, Path]) -> None:
    cuda_job = job(workspace, "cuda", 3, kl_beta=0.04)
    cuda_job.device = "cuda"
    reporter = RecordingReporter()
    result = get_recipe("grpo").train(cuda_job, reporter)
    assert result.steps == 3 and all(e["kl"] >= 0 for e in reporter.events if e["event"] == "progress")
    eval_job = EvalJob(
        "grpo", str(workspace["base"]), result.artifact_dir, str(workspace["test"]), device="cuda",
        rewards=TOY_REWARD,
    )
    assert 0.0 <= GRPORecipe().evaluate(eval_job, NullReporter())["mean_reward"] <= 1.0
