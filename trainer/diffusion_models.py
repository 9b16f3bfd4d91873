"""Tiny Stable-Diffusion-style pipelines built from configs, for tests and the devnet (no download).

`tiny_diffusion_pipeline(dir)` writes a complete `StableDiffusionPipeline` directory: a small
UNet2DConditionModel, AutoencoderKL, CLIP text encoder, a character-level CLIP tokenizer and a DDPM
scheduler. `StableDiffusionPipeline.from_pretrained(dir)` loads it offline, safetensors only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

TEXT_MAX_LENGTH = 32
START, END = "<|startoftext|>", "<|endoftext|>"


def untyped_diffusers() -> Any:
    """The diffusers package, typed Any: its classes carry no annotations mypy could check against."""
    import diffusers

    return diffusers


def _bytes_to_unicode() -> list[str]:
    """The 256 printable stand-ins CLIP's byte-level BPE uses for the bytes 0..255."""
    keep = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    extra = 0
    chars = []
    for b in range(256):
        if b in keep:
            chars.append(chr(b))
        else:
            chars.append(chr(256 + extra))
            extra += 1
    return chars


def write_char_clip_tokenizer(out_dir: Path) -> int:
    """A CLIPTokenizer with no merges: every byte is a token, word-final or not. Returns vocab size."""
    out_dir.mkdir(parents=True, exist_ok=True)
    chars = _bytes_to_unicode()
    tokens = chars + [c + "</w>" for c in chars] + [START, END]
    (out_dir / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}), encoding="utf-8")
    (out_dir / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    from transformers import CLIPTokenizer

    tokenizer = CLIPTokenizer(
        str(out_dir / "vocab.json"),
        str(out_dir / "merges.txt"),
        model_max_length=TEXT_MAX_LENGTH,
        pad_token=END,
    )
    tokenizer.save_pretrained(str(out_dir))
    return len(tokens)


def tiny_components(vocab_size: int, sample_size: int = 16) -> dict[str, Any]:
    """UNet (latents 4 x sample_size^2), VAE (x2 downsampling), CLIP text encoder, DDPM scheduler."""
    from transformers import CLIPTextConfig, CLIPTextModel

    diffusers = untyped_diffusers()

    unet = diffusers.UNet2DConditionModel(
        sample_size=sample_size,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=8,
        norm_num_groups=16,
    )
    vae = diffusers.AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=(16, 32),
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
        norm_num_groups=8,
        sample_size=sample_size * 2,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=vocab_size,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=TEXT_MAX_LENGTH,
            bos_token_id=vocab_size - 2,
            eos_token_id=vocab_size - 1,
            pad_token_id=vocab_size - 1,
        )
    )
    scheduler = diffusers.DDPMScheduler(
        num_train_timesteps=1000,
        beta_schedule="scaled_linear",
        beta_start=0.00085,
        beta_end=0.012,
        clip_sample=False,
    )
    return {"unet": unet, "vae": vae, "text_encoder": text_encoder, "scheduler": scheduler}


def tiny_diffusion_pipeline(out_dir: str | Path, seed: int = 0, image_size: int = 32) -> Path:
    """Write a randomly initialised tiny StableDiffusionPipeline to `out_dir` (deterministic per seed)."""
    from transformers import CLIPTokenizer

    out = Path(out_dir)
    vocab_size = write_char_clip_tokenizer(out / "tokenizer")
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        parts = tiny_components(vocab_size, sample_size=image_size // 2)
    finally:
        torch.random.set_rng_state(state)
    pipe = untyped_diffusers().StableDiffusionPipeline(
        **parts,
        tokenizer=CLIPTokenizer.from_pretrained(str(out / "tokenizer")),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(str(out), safe_serialization=True)
    return out
