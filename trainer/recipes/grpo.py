"""`grpo`: LoRA Group Relative Policy Optimisation with rewards chosen by name.

Each step samples `group_size` completions for each of `prompts_per_step` prompts, scores them with
the task's named rewards (`trainer.rewards`, built-in functions only), normalises rewards within each
group (advantage = (r - mean) / std), and maximises the clipped surrogate objective of PPO with a
KL penalty to the reference (k3 estimator, Shao et al. 2024). The reference is the base model with the
adapter switched off, so no second copy is held. `updates_per_batch` > 1 reuses one batch of samples
for several updates; the ratio to the sampling policy is then clipped to [1 - eps, 1 + eps].

An own loop rather than trl's GRPOTrainer: generation, budget, checkpoints and progress go through
the same interface as the other recipes, and the reward functions can only come from the registry.
"""

from __future__ import annotations

import dataclasses
import math
import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from trainer.artifacts import check_lora_artifact_dir, check_lora_manifest
from trainer.checkpoint import LoopState, load_checkpoint, save_checkpoint
from trainer.data import PromptExample, load_examples, split
from trainer.lora import load_adapter, load_base_model, load_tokenizer, qlora_available
from trainer.models import pick_device, pick_dtype
from trainer.recipes.base import (
    EvalJob,
    JobSpecError,
    ParamSpec,
    Recipe,
    Reporter,
    TrainJob,
    TrainResult,
    register_recipe,
)
from trainer.recipes.dpo import loop_budget, lora_model, resume_fingerprint, stop_signal
from trainer.rewards import DEFAULT_REWARDS, RewardFn, UnknownReward, combined_reward, reward_ceiling
from trainer.rewards import parse_reward_spec as rewards_spec

ADVANTAGE_EPS = 1e-4


def parse_reward_spec(spec: str | dict[str, float]) -> dict[str, float]:
    """'exact_answer:1.0,format:0.2' (or a dict) -> checked {name: weight}; JobSpecError when unknown."""
    try:
        return rewards_spec(spec)
    except UnknownReward as exc:
        raise JobSpecError(f"bad rewards spec {spec!r}: {exc}") from exc


@dataclasses.dataclass
class Rollout:
    """One batch of sampled completions, left-padded prompts followed by completions."""

    sequences: torch.Tensor  # (N, P + C) token ids, N = prompts * group_size
    attention_mask: torch.Tensor  # (N, P + C): 0 on left padding and after each completion's EOS
    completion_mask: torch.Tensor  # (N, C): 1 on completion tokens up to and including EOS
    rewards: torch.Tensor  # (N,)
    texts: list[str]

    @property
    def prompt_len(self) -> int:
        return self.sequences.shape[1] - self.completion_mask.shape[1]


def prompt_ids(tokenizer: Any, prompt: str, max_prompt_tokens: int) -> list[int]:
    """BOS + prompt tokens (the last ones when too long), as `tokenize_for_sft` renders prompts."""
    ids: list[int] = tokenizer.encode(prompt, add_special_tokens=False)[-max_prompt_tokens:]
    return ([tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []) + ids


def left_pad(rows: Sequence[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.tensor([[pad_id] * (width - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
    return ids, mask


def completion_mask(completions: torch.Tensor, eos_id: int) -> torch.Tensor:
    """(N, C) 1 up to and including the first EOS of each row, 0 after it."""
    is_eos = completions == eos_id
    # Count EOS tokens strictly before each position: a position is kept while that count is 0.
    before = torch.cumsum(is_eos.int(), dim=1) - is_eos.int()
    return (before == 0).long()


@torch.no_grad()
def sample(
    model: Any,
    tokenizer: Any,
    examples: Sequence[PromptExample],
    group_size: int,
    hp: dict[str, Any],
    device: str,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(sequences, attention_mask, completion_mask): `group_size` sampled completions per prompt."""
    rows = [
        prompt_ids(tokenizer, ex.prompt, int(hp["max_prompt_tokens"]))
        for ex in examples
        for _ in range(group_size)
    ]
    ids, mask = left_pad(rows, int(tokenizer.pad_token_id))
    was_training = model.training
    model.eval()
    out = model.generate(
        input_ids=ids.to(device),
        attention_mask=mask.to(device),
        do_sample=True,
        temperature=float(hp["temperature"]),
        top_k=0,
        top_p=1.0,
        max_new_tokens=int(hp["max_new_tokens"]),
        pad_token_id=int(tokenizer.pad_token_id),
        eos_token_id=int(tokenizer.eos_token_id),
        use_cache=True,
    ).cpu()
    model.train(was_training)
    completions = out[:, ids.shape[1] :]
    comp_mask = completion_mask(completions, int(tokenizer.eos_token_id))
    return out, torch.cat([mask, comp_mask], dim=1), comp_mask


def rollout(
    model: Any,
    tokenizer: Any,
    examples: Sequence[PromptExample],
    reward: RewardFn,
    hp: dict[str, Any],
    device: str,
) -> Rollout:
    group = int(hp["group_size"])
    sequences, attention, comp_mask = sample(model, tokenizer, examples, group, hp, device)
    completions = sequences[:, attention.shape[1] - comp_mask.shape[1] :] * comp_mask
    texts = tokenizer.batch_decode(completions, skip_special_tokens=True)
    answers = [ex.answer for ex in examples for _ in range(group)]
    rewards = torch.tensor([reward(text, answer) for text, answer in zip(texts, answers, strict=True)])
    return Rollout(sequences, attention, comp_mask, rewards, texts)


def group_advantages(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """(N,) rewards -> (N,) advantages normalised within each group of `group_size` samples."""
    grouped = rewards.view(-1, group_size)  # (prompts, group)
    centred = grouped - grouped.mean(dim=1, keepdim=True)
    return (centred / (grouped.std(dim=1, keepdim=True) + ADVANTAGE_EPS)).view(-1)


def token_logps(model: Any, batch: Rollout, device: str) -> torch.Tensor:
    """(N, C) log-probabilities of each completion token under `model`."""
    with torch.autocast("cuda", dtype=pick_dtype("cuda"), enabled=device == "cuda"):
        logits = model(
            input_ids=batch.sequences.to(device),
            attention_mask=batch.attention_mask.to(device),
            use_cache=False,
        ).logits.float()
    # Logits at position t predict token t+1: completion tokens start at prompt_len.
    start = batch.prompt_len
    targets = batch.sequences[:, start:].to(device)
    logits = logits[:, start - 1 : -1]
    return -F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="none").view(
        targets.shape
    )


def grpo_loss(
    logps: torch.Tensor,
    old_logps: torch.Tensor,
    ref_logps: torch.Tensor | None,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_eps: float,
    kl_beta: float,
) -> tuple[torch.Tensor, float]:
    """Token-level clipped surrogate + k3 KL, averaged over all completion tokens; returns (loss, kl)."""
    ratio = torch.exp(logps - old_logps)
    adv = advantages[:, None]  # (N, 1) broadcast over tokens
    surrogate = torch.minimum(ratio * adv, torch.clamp(ratio, 1 - clip_eps, 1 + clip_eps) * adv)
    per_token = -surrogate
    kl = torch.zeros_like(logps)
    if ref_logps is not None:
        diff = ref_logps - logps
        kl = torch.exp(diff) - diff - 1  # k3: unbiased, always >= 0
        per_token = per_token + kl_beta * kl
    mask_f = mask.float()
    denom = mask_f.sum().clamp(min=1.0)
    return (per_token * mask_f).sum() / denom, float((kl.detach() * mask_f).sum() / denom)


def check_hparams(hp: dict[str, Any]) -> None:
    if hp["qlora"] and not qlora_available():
        raise JobSpecError("qlora needs a CUDA GPU and bitsandbytes; set qlora false on this machine")
    for key in ("lr", "group_size", "prompts_per_step", "max_new_tokens", "temperature", "lora_r"):
        if not hp[key] > 0:
            raise JobSpecError(f"hyperparameter {key} must be positive, got {hp[key]!r}")
    if int(hp["group_size"]) < 2:
        raise JobSpecError("group_size must be at least 2: advantages are relative within a group")
    parse_reward_spec(hp["rewards"])


class GRPOLoop:
    """Sampling, scoring and policy updates within the job's budget, with checkpoints."""

    def __init__(
        self, model: Any, tokenizer: Any, prompts: list[PromptExample], hp: dict[str, Any], job: TrainJob
    ):
        self.model, self.tokenizer, self.prompts, self.hp, self.job = model, tokenizer, prompts, hp, job
        self.device = pick_device(job.device)
        self.reward = combined_reward(parse_reward_spec(hp["rewards"]))
        self.trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
        self.optimizer = torch.optim.AdamW(
            self.trainable.values(), lr=hp["lr"], weight_decay=hp["weight_decay"]
        )
        self.state = LoopState(total_steps=int(job.max_steps or hp["max_steps"]))
        self.fingerprint = resume_fingerprint(job)
        # Loop seconds allowed; the recipe lowers it by what preparing took and a reserve for saving.
        self.budget_s = job.budget_s
        self.last_step_s = 0.0
        self.mean_rewards: list[float] = []

    def _batch_prompts(self, step: int) -> list[PromptExample]:
        """The prompts of `step`: a seeded permutation per epoch, a pure function of (step, seed)."""
        per_step = int(self.hp["prompts_per_step"])
        per_epoch = max(1, len(self.prompts) // per_step)
        epoch, within = divmod(step, per_epoch)
        order = list(range(len(self.prompts)))
        random.Random(self.job.seed * 1000 + epoch).shuffle(order)
        picked = order[within * per_step : (within + 1) * per_step] or order[:per_step]
        return [self.prompts[i] for i in picked]

    def step(self) -> tuple[float, int, float]:
        """One rollout and `updates_per_batch` updates; returns (loss, tokens, kl)."""
        hp = self.hp
        batch = rollout(
            self.model, self.tokenizer, self._batch_prompts(self.state.step), self.reward, hp, self.device
        )
        self.mean_rewards.append(float(batch.rewards.mean()))
        advantages = group_advantages(batch.rewards, int(hp["group_size"])).to(self.device)
        mask = batch.completion_mask.to(self.device)
        ref = None
        if hp["kl_beta"] > 0:
            with torch.no_grad(), self.model.disable_adapter():
                ref = token_logps(self.model, batch, self.device)
        old: torch.Tensor | None = None
        self.model.train()
        loss_value, kl = 0.0, 0.0
        for _ in range(int(hp["updates_per_batch"])):
            logps = token_logps(self.model, batch, self.device)
            if old is None:
                old = logps.detach()  # the sampling policy's log-probs (ratio 1 on the first update)
            loss, kl = grpo_loss(logps, old, ref, advantages, mask, hp["clip_eps"], hp["kl_beta"])
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            torch.nn.utils.clip_grad_norm_(self.trainable.values(), hp["max_grad_norm"])
            self.optimizer.step()
            loss_value = float(loss.detach())
        return loss_value, int(batch.attention_mask.sum()), kl

    def run(self, reporter: Reporter, should_stop: Callable[[], bool]) -> str:
        ckpt = Path(self.job.checkpoint_dir) if self.job.checkpoint_dir else None
        if ckpt is not None:
            restored = load_checkpoint(ckpt, self.fingerprint, self.trainable, self.optimizer)
            if restored is not None:
                self.state = restored
                reporter.log(f"resumed from checkpoint at step {restored.step}")
        started = last_ckpt = time.monotonic()
        before, reason = self.state.seconds, "completed"
        while self.state.step < self.state.total_steps:
            if should_stop():
                reason = "cancelled"
                break
            # Stop when the next step would overrun, not after it has.
            if self.state.seconds + self.last_step_s >= self.budget_s:
                reason = "budget"
                break
            loss, tokens, kl = self.step()
            if not math.isfinite(loss):
                raise FloatingPointError(
                    f"GRPO loss became {loss} at step {self.state.step}; lower the learning rate"
                )
            self.state.step += 1
            self.state.tokens += tokens
            now = before + time.monotonic() - started
            self.last_step_s, self.state.seconds = now - self.state.seconds, now
            self.state.losses.append(loss)
            self._report(reporter, kl)
            if ckpt is not None and time.monotonic() - last_ckpt >= self.job.checkpoint_interval_s:
                save_checkpoint(ckpt, self.fingerprint, self.state, self.trainable, self.optimizer)
                last_ckpt = time.monotonic()
        if reason == "cancelled" and ckpt is not None:
            save_checkpoint(ckpt, self.fingerprint, self.state, self.trainable, self.optimizer)
        reason = self.state.stopped_reason(reason, self.job.max_steps)
        self.model.eval()
        return reason

    def _report(self, reporter: Reporter, kl: float) -> None:
        s = self.state
        percent, eta = s.progress(self.budget_s)
        reporter.progress(
            s.step,
            s.total_steps,
            loss=s.losses[-1],
            tokens_per_s=s.tokens / max(1e-9, s.seconds),
            percent=percent,
            eta_s=eta,
            mean_reward=self.mean_rewards[-1],
            kl=kl,
        )


def reward_metrics(
    model: Any,
    tokenizer: Any,
    examples: Sequence[PromptExample],
    rewards: dict[str, float],
    hp: dict[str, Any],
    device: str,
    seed: int,
) -> dict[str, float]:
    """Mean reward of `eval_samples` sampled completions per prompt, with a fixed sampling seed."""
    torch.manual_seed(seed)
    reward = combined_reward(rewards)
    chunk = max(1, int(hp["prompts_per_step"]))
    values: list[float] = []
    for start in range(0, len(examples), chunk):
        batch = rollout(
            model,
            tokenizer,
            examples[start : start + chunk],
            reward,
            {**hp, "group_size": hp["eval_samples"]},
            device,
        )
        values += batch.rewards.tolist()
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
    # The loss is the shortfall from the best reward the spec allows: >= 0, lower is better.
    shortfall = max(0.0, reward_ceiling(rewards) - mean)
    return {"loss": shortfall, "mean_reward": mean, "reward_std": std, "samples": float(len(values))}


@register_recipe
class GRPORecipe(Recipe):
    kind = "grpo"

    @classmethod
    def default_hparams(cls) -> dict[str, Any]:
        return {
            "rewards": DEFAULT_REWARDS,
            "lr": 1e-4,
            "weight_decay": 0.0,
            "group_size": 8,
            "prompts_per_step": 4,
            "max_steps": 200,
            "max_new_tokens": 128,
            "max_prompt_tokens": 384,
            "temperature": 1.0,
            "clip_eps": 0.2,
            "kl_beta": 0.04,
            "updates_per_batch": 1,
            "max_grad_norm": 1.0,
            "eval_samples": 4,
            "lora_r": 16,
            "lora_alpha": 32.0,
            "lora_dropout": 0.0,  # dropout would make the sampling and the update policies differ
            "lora_targets": "all-linear",
            "gradient_checkpointing": False,
            "qlora": False,  # 4-bit NF4 base: needs CUDA and bitsandbytes
        }

    @classmethod
    def search_space(cls) -> dict[str, ParamSpec]:
        return {
            "lr": ParamSpec("float_log", 1e-5, 5e-3),
            "group_size": ParamSpec("categorical", choices=(4, 8, 16)),
            "temperature": ParamSpec("float", 0.6, 1.2),
            "kl_beta": ParamSpec("float", 0.0, 0.1),
            "clip_eps": ParamSpec("float", 0.1, 0.3),
            "updates_per_batch": ParamSpec("categorical", choices=(1, 2)),
            "lora_r": ParamSpec("categorical", choices=(4, 8, 16, 32)),
            "lora_alpha": ParamSpec("float_log", 4.0, 64.0),
        }

    def train(self, job: TrainJob, reporter: Reporter) -> TrainResult:
        started = time.monotonic()
        hp = self.merged_hparams(job.hparams)
        check_hparams(hp)
        if job.threads:
            torch.set_num_threads(job.threads)
        device = pick_device(job.device)
        torch.manual_seed(job.seed)
        reporter.phase("prepare")
        tokenizer = load_tokenizer(job.base_model_dir)
        train_set, val_set = split(load_examples(job.train_file, self.kind), job.val_fraction, job.seed)
        model = lora_model(job, hp, device)
        loop = GRPOLoop(model, tokenizer, train_set, hp, job)
        loop.budget_s = loop_budget(job, started)
        reporter.phase("train")
        reason = loop.run(reporter, stop_signal(reporter))
        reporter.phase("save")
        out = Path(job.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(str(out), safe_serialization=True, save_embedding_layers=False)
        tail = loop.mean_rewards[-10:]
        metrics = {"train_mean_reward": sum(tail) / max(1, len(tail))}
        if val_set:
            reporter.phase("validate")
            spec = parse_reward_spec(hp["rewards"])
            metrics["val_loss"] = reward_metrics(model, tokenizer, val_set, spec, hp, device, job.seed)[
                "loss"
            ]
        for name, value in metrics.items():
            reporter.metric(name, value)
        return TrainResult(
            str(out), metrics, loop.state.step, loop.state.tokens, time.monotonic() - started, reason
        )

    def evaluate(self, job: EvalJob, reporter: Reporter) -> dict[str, float]:
        """Mean reward under the task's reward spec (`job.rewards`; DEFAULT_REWARDS when it names none),
        of completions sampled up to the task's length (`job.max_new_tokens`; the default when None)."""
        if job.threads:
            torch.set_num_threads(job.threads)
        device = pick_device(job.device)
        reporter.phase("prepare")
        spec = parse_reward_spec(job.rewards or DEFAULT_REWARDS)
        if job.artifact_dir is not None:
            check_lora_artifact_dir(job.artifact_dir, job.base_model_dir)
        examples = load_examples(job.eval_file, self.kind, max_rows=job.max_examples)
        tokenizer = load_tokenizer(job.base_model_dir)
        model = load_base_model(job.base_model_dir, device, pick_dtype(device))
        if job.artifact_dir is not None:
            model = load_adapter(model, job.artifact_dir)
        reporter.phase("evaluate")
        hp = self.default_hparams()
        if job.max_new_tokens is not None:
            hp["max_new_tokens"] = job.max_new_tokens
        metrics = reward_metrics(model, tokenizer, examples, spec, hp, device, job.seed)
        for name, value in metrics.items():
            reporter.metric(name, value)
        return metrics

    def export(self, artifact_dir: Path, out_path: Path) -> Path:
        from trainer.bundles import export_adapter_bundle

        return export_adapter_bundle(Path(artifact_dir), Path(out_path), self.kind)

    def check_artifact(self, manifest: Any, base_model_dir: Path) -> None:
        if isinstance(manifest, str | Path):
            check_lora_artifact_dir(manifest, base_model_dir)
        else:
            check_lora_manifest(manifest, base_model_dir)
