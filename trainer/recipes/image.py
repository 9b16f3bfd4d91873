"""`image`: diffusion LoRA on image-caption pairs (Stable-Diffusion-style pipelines).

The base model is a diffusers `StableDiffusionPipeline` directory; its parts are loaded by fixed
classes (never by names read from the directory), safetensors only. LoRA goes on the UNet's attention
projections; the VAE and text encoder stay frozen, so image latents and caption embeddings are
computed once. Captions are dropped with probability `caption_dropout` so the adapter also learns the
unguided prediction that classifier-free guidance needs.

The artifact is `pytorch_lora_weights.safetensors`, written by `save_lora_weights` and read by any
diffusers pipeline's `load_lora_weights`. Evaluation is the denoising error at fixed noise levels and
seeds, with the caption and with the empty prompt, through that same loader.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from trainer.checkpoint import LoopState, load_checkpoint, save_checkpoint
from trainer.data import ImageCaptionExample, load_examples, split
from trainer.diffusion_models import untyped_diffusers
from trainer.models import pick_device, pick_dtype
from trainer.recipes.base import (
    ArtifactRejected,
    EvalJob,
    JobSpecError,
    ParamSpec,
    Recipe,
    Reporter,
    TrainerError,
    TrainJob,
    TrainResult,
    register_recipe,
)
from trainer.recipes.dpo import loop_budget, resume_fingerprint, stop_signal
from trainer.schedule import linear_warmup_steps

LORA_WEIGHTS = "pytorch_lora_weights.safetensors"
LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
MAX_LORA_RANK = 128
EVAL_LEVELS = (0.1, 0.3, 0.5, 0.7, 0.9)  # noise levels as fractions of the scheduler's timesteps
EVAL_SEEDS = (0, 1)
EVAL_BATCH = 8


def load_parts(base_dir: Path, device: str) -> dict[str, Any]:
    """UNet, VAE, text encoder, tokenizer and noise scheduler of a pipeline dir (fixed classes only)."""
    from transformers import CLIPTextModel, CLIPTokenizer

    diffusers = untyped_diffusers()

    if not (base_dir / "model_index.json").is_file():
        raise TrainerError(f"{base_dir} is not a diffusers pipeline directory (no model_index.json)")
    base = str(base_dir)
    parts = {
        "unet": diffusers.UNet2DConditionModel.from_pretrained(base, subfolder="unet", use_safetensors=True),
        "vae": diffusers.AutoencoderKL.from_pretrained(base, subfolder="vae", use_safetensors=True),
        "text_encoder": CLIPTextModel.from_pretrained(base, subfolder="text_encoder", use_safetensors=True),
        "tokenizer": CLIPTokenizer.from_pretrained(base, subfolder="tokenizer"),
        "scheduler": diffusers.DDPMScheduler.from_pretrained(base, subfolder="scheduler"),
    }
    for name in ("unet", "vae", "text_encoder"):
        parts[name].requires_grad_(False)
        parts[name].to(device)
    return parts


def load_images(examples: Sequence[ImageCaptionExample], size: int) -> torch.Tensor:
    """(N, 3, size, size) images scaled to [-1, 1] (resized, centre-cropped, RGB)."""
    from PIL import ImageOps

    tensors = []
    for ex in examples:
        # decoded under the data contract's caps (PNG/JPEG only, byte and pixel limits)
        with ex.open_image() as img:
            fitted = ImageOps.fit(img, (size, size))
        # (H, W, 3) uint8 -> (3, H, W) in [-1, 1]
        pixels = torch.frombuffer(bytearray(fitted.tobytes()), dtype=torch.uint8).view(size, size, 3)
        tensors.append(pixels.permute(2, 0, 1).float() / 127.5 - 1.0)
    return torch.stack(tensors)


@torch.no_grad()
def encode_images(vae: Any, images: torch.Tensor, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, std) of the VAE's latent distribution per image, each (N, 4, h, w)."""
    means, stds = [], []
    for start in range(0, images.shape[0], EVAL_BATCH):
        dist = vae.encode(images[start : start + EVAL_BATCH].to(device)).latent_dist
        means.append(dist.mean)
        stds.append(dist.std)
    return torch.cat(means), torch.cat(stds)


@torch.no_grad()
def encode_captions(parts: dict[str, Any], captions: Sequence[str], device: str) -> torch.Tensor:
    """(N, L, D) text-encoder hidden states, padded to the tokenizer's max length like the pipeline."""
    tokenizer = parts["tokenizer"]
    ids = tokenizer(
        list(captions),
        padding="max_length",
        max_length=tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    ).input_ids
    hidden: torch.Tensor = parts["text_encoder"](ids.to(device))[0]
    return hidden


def diffusion_target(
    scheduler: Any, latents: torch.Tensor, noise: torch.Tensor, t: torch.Tensor
) -> torch.Tensor:
    if scheduler.config.prediction_type == "v_prediction":
        velocity: torch.Tensor = scheduler.get_velocity(latents, noise, t)
        return velocity
    return noise


def denoising_loss(
    parts: dict[str, Any], latents: torch.Tensor, text: torch.Tensor, t: torch.Tensor, noise: torch.Tensor
) -> torch.Tensor:
    """Mean squared error of the UNet's prediction at timesteps `t` (one per row)."""
    noisy = parts["scheduler"].add_noise(latents, noise, t)
    # On CUDA the UNet runs in bf16/fp16 under autocast; the LoRA and the loss stay fp32.
    with torch.autocast("cuda", dtype=pick_dtype("cuda"), enabled=latents.device.type == "cuda"):
        prediction = parts["unet"](noisy, t, encoder_hidden_states=text).sample
    return F.mse_loss(prediction.float(), diffusion_target(parts["scheduler"], latents, noise, t).float())


def add_unet_lora(unet: Any, hp: dict[str, Any]) -> list[torch.nn.Parameter]:
    from peft import LoraConfig

    config = LoraConfig(
        r=int(hp["lora_r"]),
        lora_alpha=hp["lora_alpha"],
        lora_dropout=float(hp["lora_dropout"]),
        init_lora_weights="gaussian",
        target_modules=LORA_TARGETS,
    )
    unet.add_adapter(config)
    return [p for p in unet.parameters() if p.requires_grad]


def save_unet_lora(unet: Any, out: Path) -> None:
    from peft.utils import get_peft_model_state_dict

    diffusers = untyped_diffusers()
    out.mkdir(parents=True, exist_ok=True)
    state = diffusers.utils.convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))
    diffusers.StableDiffusionPipeline.save_lora_weights(
        str(out), unet_lora_layers=state, safe_serialization=True
    )


@torch.no_grad()
def denoising_errors(
    parts: dict[str, Any], examples: Sequence[ImageCaptionExample], size: int, device: str
) -> dict[str, float]:
    """Prediction error at each of EVAL_LEVELS x EVAL_SEEDS, with the caption and with the empty prompt.

    Latents are the VAE means (no sampling) and noise comes from generators seeded per (seed, level),
    so the same artifact always gets the same score on any machine of the same kind.
    """
    parts["unet"].eval()
    mean, _ = encode_images(parts["vae"], load_images(examples, size), device)
    latents = mean * parts["vae"].config.scaling_factor
    guided = encode_captions(parts, [ex.caption for ex in examples], device)
    unguided = encode_captions(parts, [""] * len(examples), device)
    n_steps = parts["scheduler"].config.num_train_timesteps
    errors: dict[str, list[float]] = {"guided": [], "unguided": []}
    out: dict[str, float] = {}
    for level in EVAL_LEVELS:
        t = torch.full((latents.shape[0],), int(level * (n_steps - 1)), device=device, dtype=torch.long)
        for seed in EVAL_SEEDS:
            generator = torch.Generator().manual_seed(seed * 1000 + int(level * 100))
            noise = torch.randn(latents.shape, generator=generator).to(device)
            for name, text in (("guided", guided), ("unguided", unguided)):
                value = float(denoising_loss(parts, latents, text, t, noise))
                errors[name].append(value)
                out[f"{name}_t{int(level * 100)}_s{seed}"] = value
    out["loss_guided"] = sum(errors["guided"]) / len(errors["guided"])
    out["loss_unguided"] = sum(errors["unguided"]) / len(errors["unguided"])
    out["loss"] = 0.5 * (out["loss_guided"] + out["loss_unguided"])
    return out


def check_lora_tensors(tensors: dict[str, tuple[int, ...]], unet_linears: dict[str, tuple[int, int]]) -> None:
    """Every tensor is `unet.<linear>.lora.down/up.weight` (diffusers names), shapes [r, in] / [out, r]."""
    if not tensors:
        raise ArtifactRejected("the image LoRA holds no tensors")
    ranks = set()
    for name, shape in tensors.items():
        prefix, _, rest = name.partition(".")
        module, sep, kind = rest.rpartition(".lora.")
        if prefix != "unet" or not sep or kind not in ("down.weight", "up.weight"):
            raise ArtifactRejected(
                f"unexpected tensor {name!r}: only unet lora.down / lora.up weights are accepted"
            )
        if module not in unet_linears:
            raise ArtifactRejected(
                f"tensor {name!r} targets {module!r}, which is not a linear layer of the UNet"
            )
        fan_in, fan_out = unet_linears[module]
        rank = shape[0] if kind == "down.weight" else shape[-1]
        expected = (rank, fan_in) if kind == "down.weight" else (fan_out, rank)
        if tuple(shape) != expected or not 1 <= rank <= MAX_LORA_RANK:
            raise ArtifactRejected(
                f"tensor {name!r} has shape {list(shape)}, expected {list(expected)} (r <= {MAX_LORA_RANK})"
            )
        ranks.add(rank)
    if len(ranks) != 1:
        raise ArtifactRejected(f"LoRA tensors must share one rank, found {sorted(ranks)}")


def unet_linear_shapes(base_dir: Path) -> dict[str, tuple[int, int]]:
    """{module path: (in, out)} of the base UNet's linear layers, built on the meta device (no weights)."""
    unet_class = untyped_diffusers().UNet2DConditionModel
    config = unet_class.load_config(str(base_dir), subfolder="unet")
    with torch.device("meta"):
        unet = unet_class.from_config(config)
    return {
        n: (m.in_features, m.out_features) for n, m in unet.named_modules() if isinstance(m, torch.nn.Linear)
    }


def _check_hparams(hp: dict[str, Any]) -> None:
    for key in ("lr", "batch_size", "lora_r"):
        if not hp[key] > 0:
            raise JobSpecError(f"hyperparameter {key} must be positive, got {hp[key]!r}")
    if not hp["resolution"] >= 0:
        raise JobSpecError(f"resolution must be >= 0 (0: the base model's size), got {hp['resolution']!r}")
    if int(hp["lora_r"]) > MAX_LORA_RANK:
        raise JobSpecError(f"lora_r {hp['lora_r']} exceeds the rank cap {MAX_LORA_RANK}")
    if not 0.0 <= hp["caption_dropout"] < 1.0:
        raise JobSpecError(f"caption_dropout must be in [0, 1), got {hp['caption_dropout']}")


class ImageLoop:
    """LoRA steps on cached latents and caption embeddings, within budget, with checkpoints.

    Every random draw (rows, caption dropout, timesteps, noise, latent samples) comes from torch's
    global generator, whose state the checkpoint keeps, so a resumed run continues exactly.
    """

    def __init__(
        self,
        parts: dict[str, Any],
        mean: torch.Tensor,
        std: torch.Tensor,
        captions: torch.Tensor,
        empty: torch.Tensor,
        hp: dict[str, Any],
        job: TrainJob,
    ) -> None:
        self.parts, self.mean, self.std, self.captions, self.empty = parts, mean, std, captions, empty
        self.hp, self.job = hp, job
        self.device = str(mean.device.type)
        self.trainable = {n: p for n, p in parts["unet"].named_parameters() if p.requires_grad}
        self.optimizer = torch.optim.AdamW(
            self.trainable.values(), lr=hp["lr"], weight_decay=hp["weight_decay"]
        )
        self.state = LoopState(total_steps=int(job.max_steps or hp["max_steps"]))
        self.fingerprint = resume_fingerprint(job)
        # Loop seconds allowed; the recipe lowers it by what preparing took and a reserve for saving.
        self.budget_s = job.budget_s
        self.last_step_s = 0.0

    def _loss(self) -> torch.Tensor:
        hp, parts = self.hp, self.parts
        rows = torch.randint(0, self.mean.shape[0], (int(hp["batch_size"]),))
        # A fresh latent sample per step from the cached VAE distribution: (B, 4, h, w).
        mean, std = self.mean[rows], self.std[rows]
        latents = (mean + std * torch.randn(mean.shape).to(self.device)) * parts["vae"].config.scaling_factor
        text = self.captions[rows].clone()
        drop = torch.rand(len(rows)) < hp["caption_dropout"]
        text[drop.to(self.device)] = self.empty[0]
        t = torch.randint(0, parts["scheduler"].config.num_train_timesteps, (len(rows),)).to(self.device)
        return denoising_loss(parts, latents, text, t, torch.randn(latents.shape).to(self.device))

    def step(self) -> float:
        s = self.state
        warmup = linear_warmup_steps(s.total_steps, self.hp["warmup_ratio"])
        for group in self.optimizer.param_groups:
            group["lr"] = self.hp["lr"] * min(1.0, (s.step + 1) / warmup)
        loss = self._loss()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        torch.nn.utils.clip_grad_norm_(self.trainable.values(), self.hp["max_grad_norm"])
        self.optimizer.step()
        return float(loss.detach())

    def run(self, reporter: Reporter, should_stop: Callable[[], bool]) -> str:
        ckpt = Path(self.job.checkpoint_dir) if self.job.checkpoint_dir else None
        if ckpt is not None:
            restored = load_checkpoint(ckpt, self.fingerprint, self.trainable, self.optimizer)
            if restored is not None:
                self.state = restored
                reporter.log(f"resumed from checkpoint at step {restored.step}")
        self.parts["unet"].train()
        started = last_ckpt = time.monotonic()
        before, reason, step0 = self.state.seconds, "completed", self.state.step
        while self.state.step < self.state.total_steps:
            if should_stop():
                reason = "cancelled"
                break
            # Stop when the next step would overrun, not after it has.
            if self.state.seconds + self.last_step_s >= self.budget_s:
                reason = "budget"
                break
            loss = self.step()
            if not math.isfinite(loss):
                raise FloatingPointError(f"the diffusion loss became {loss}; lower the learning rate")
            s = self.state
            s.step += 1
            now = before + time.monotonic() - started
            self.last_step_s, s.seconds = now - s.seconds, now
            # Warm-up and decay are fractions of the plan: fit the plan to what the budget allows.
            fit = self.state.fit_to_budget(self.budget_s, now - before, self.state.step - step0)
            if fit is not None:
                reporter.log(f"budget allows {fit} steps; schedule shortened")
            s.losses.append(loss)
            percent, eta = s.progress(self.budget_s)
            reporter.progress(
                s.step,
                s.total_steps,
                loss=loss,
                percent=percent,
                eta_s=eta,
            )
            if ckpt is not None and time.monotonic() - last_ckpt >= self.job.checkpoint_interval_s:
                save_checkpoint(ckpt, self.fingerprint, self.state, self.trainable, self.optimizer)
                last_ckpt = time.monotonic()
        if reason == "cancelled" and ckpt is not None:
            save_checkpoint(ckpt, self.fingerprint, self.state, self.trainable, self.optimizer)
        reason = self.state.stopped_reason(reason, self.job.max_steps)
        self.parts["unet"].eval()
        return reason


@register_recipe
class ImageRecipe(Recipe):
    kind = "image"

    @classmethod
    def default_hparams(cls) -> dict[str, Any]:
        return {
            "lr": 1e-4,
            "weight_decay": 1e-2,
            "batch_size": 4,
            "max_steps": 500,
            "warmup_ratio": 0.05,
            "resolution": 0,  # 0: the base model's own size (its VAE's sample_size)
            "caption_dropout": 0.1,
            "lora_r": 8,
            "lora_alpha": 8.0,
            "lora_dropout": 0.0,
            "max_grad_norm": 1.0,
        }

    @classmethod
    def search_space(cls) -> dict[str, ParamSpec]:
        return {
            "lr": ParamSpec("float_log", 1e-5, 1e-3),
            "batch_size": ParamSpec("categorical", choices=(1, 2, 4, 8)),
            "caption_dropout": ParamSpec("float", 0.0, 0.3),
            "lora_r": ParamSpec("categorical", choices=(4, 8, 16, 32)),
            "lora_alpha": ParamSpec("float_log", 4.0, 64.0),
            "warmup_ratio": ParamSpec("float", 0.0, 0.2),
        }

    def train(self, job: TrainJob, reporter: Reporter) -> TrainResult:
        started = time.monotonic()
        hp = self.merged_hparams(job.hparams)
        _check_hparams(hp)
        if job.threads:
            torch.set_num_threads(job.threads)
        device = pick_device(job.device)
        torch.manual_seed(job.seed)
        reporter.phase("prepare")
        examples, _ = split(load_examples(job.train_file, self.kind), job.val_fraction, job.seed)
        parts = load_parts(Path(job.base_model_dir), device)
        size = int(hp["resolution"]) or int(parts["vae"].config.sample_size)
        mean, std = encode_images(parts["vae"], load_images(examples, size), device)
        captions = encode_captions(parts, [ex.caption for ex in examples], device)
        empty = encode_captions(parts, [""], device)
        add_unet_lora(parts["unet"], hp)
        loop = ImageLoop(parts, mean, std, captions, empty, hp, job)
        loop.budget_s = loop_budget(job, started)
        reporter.phase("train")
        reason = loop.run(reporter, stop_signal(reporter))
        reporter.phase("save")
        out = Path(job.output_dir)
        save_unet_lora(parts["unet"], out)
        tail = loop.state.losses[-10:]
        metrics = {"train_loss": sum(tail) / max(1, len(tail))}
        reporter.metric("train_loss", metrics["train_loss"])
        return TrainResult(str(out), metrics, loop.state.step, 0, time.monotonic() - started, reason)

    def evaluate(self, job: EvalJob, reporter: Reporter) -> dict[str, float]:
        if job.threads:
            torch.set_num_threads(job.threads)
        device = pick_device(job.device)
        base = Path(job.base_model_dir)
        reporter.phase("prepare")
        if job.artifact_dir is not None:
            self.check_artifact(Path(job.artifact_dir), base)
        examples = load_examples(job.eval_file, self.kind, max_rows=job.max_examples)
        parts = load_parts(base, device)
        if job.artifact_dir is not None:
            parts["unet"] = self._with_lora(parts, Path(job.artifact_dir))
        reporter.phase("evaluate")
        size = int(parts["vae"].config.sample_size)
        metrics = denoising_errors(parts, examples, size, device)
        for name in ("loss", "loss_guided", "loss_unguided"):
            reporter.metric(name, metrics[name])
        return metrics

    @staticmethod
    def _with_lora(parts: dict[str, Any], artifact_dir: Path) -> Any:
        """The UNet with the adapter applied by the standard loader (a pipeline's `load_lora_weights`)."""
        pipe = untyped_diffusers().StableDiffusionPipeline(
            **parts, safety_checker=None, feature_extractor=None, requires_safety_checker=False
        )
        pipe.load_lora_weights(str(artifact_dir), weight_name=LORA_WEIGHTS)
        return pipe.unet

    def export(self, artifact_dir: Path, out_path: Path) -> Path:
        from protocol.bundle import write_bundle

        if set(p.name for p in Path(artifact_dir).iterdir()) != {LORA_WEIGHTS}:
            raise TrainerError(f"{artifact_dir} must hold exactly {LORA_WEIGHTS}; train the adapter first")
        write_bundle(artifact_dir, out_path, kind=self.kind, meta={"format": "diffusers-lora"})
        return Path(out_path)

    def check_artifact(self, manifest: Any, base_model_dir: Path) -> None:
        if isinstance(manifest, str | Path):
            tensors = _tensors_from_dir(Path(manifest))
        else:
            names = {f.path for f in manifest.files}
            if names != {LORA_WEIGHTS}:
                raise ArtifactRejected(
                    f"an image LoRA bundle holds exactly {LORA_WEIGHTS}; found {sorted(names)}"
                )
            tensors = {t.name: tuple(t.shape) for t in manifest.file(LORA_WEIGHTS).tensors or ()}
        check_lora_tensors(tensors, unet_linear_shapes(Path(base_model_dir)))


def _tensors_from_dir(artifact_dir: Path) -> dict[str, tuple[int, ...]]:
    from trainer.artifacts import safetensors_header

    names = {p.name for p in artifact_dir.iterdir()}
    if names != {LORA_WEIGHTS}:
        raise ArtifactRejected(f"an image LoRA artifact holds exactly {LORA_WEIGHTS}; found {sorted(names)}")
    header = safetensors_header(artifact_dir / LORA_WEIGHTS)
    return {name: tuple(info.get("shape", ())) for name, info in header.items()}
