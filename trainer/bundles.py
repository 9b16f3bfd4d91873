"""Export of artifact directories as `protocol.bundle` files.

Only the files a loader needs travel (PEFT's generated README.md is left out: the bundle format
accepts .safetensors, .json, .txt and .model files only).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from protocol.bundle import write_bundle
from protocol.bundle_manifest import Manifest
from trainer.artifacts import ADAPTER_CONFIG, ADAPTER_WEIGHTS, read_adapter_config
from trainer.recipes.base import TrainerError


def export_adapter_bundle(artifact_dir: Path, out_path: Path, kind: str) -> Path:
    """Bundle a PEFT LoRA adapter directory; meta records the rank and the base model's name."""
    missing = [n for n in (ADAPTER_CONFIG, ADAPTER_WEIGHTS) if not (artifact_dir / n).is_file()]
    if missing:
        raise TrainerError(f"cannot export {artifact_dir}: missing {missing}; train the adapter first")
    config = read_adapter_config(artifact_dir)
    meta = {"format": "peft-lora", "lora_r": str(config.get("r"))}
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bundle-src-", dir=out_path.parent) as staging:
        for name in (ADAPTER_CONFIG, ADAPTER_WEIGHTS):
            shutil.copyfile(artifact_dir / name, Path(staging) / name)
        write_bundle(staging, out_path, kind, meta)
    return out_path


def bundle_manifest(path: Path) -> Manifest:
    from protocol.bundle import read_manifest

    return read_manifest(path)
