"""Checking LoRA adapter artifacts against the base model BEFORE anything is loaded, and exporting them.

The check reads only JSON: `adapter_config.json` and the safetensors headers (names, dtypes, shapes)
— or the same facts from a `protocol.bundle` manifest. The base model's linear layers come from its
config.json, instantiated on the "meta" device (no weights read, no memory used). An adapter passes
only if every tensor is the `lora_A` / `lora_B` weight of a linear layer that exists in the base model,
with shapes [r, in_features] / [out_features, r], and r does not exceed the rank cap — or the one
trainable-tokens delta of the base's input embedding, [number of token ids, hidden], its token ids
distinct and inside the vocabulary, within MAX_EMBEDDING_DELTA parameters.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from protocol import strict_json
from trainer.recipes.base import ArtifactRejected
from trainer.targets import MAX_EMBEDDING_DELTA

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
MAX_LORA_RANK = 256
MAX_HEADER_BYTES = 16 * 1024 * 1024
ALLOWED_DTYPES = {"F32", "F16", "BF16"}
_LORA_KEY = re.compile(r"^base_model\.model\.(?P<module>[\w.]+)\.lora_(?P<ab>[AB])\.weight$")
_TOKENS_KEY = re.compile(r"^base_model\.model\.(?P<module>[\w.]+)\.token_adapter\.trainable_tokens_delta$")


def safetensors_header(path: Path) -> dict[str, Any]:
    """The JSON header of a safetensors file (names, dtypes, shapes) without reading any tensor."""
    with path.open("rb") as fh:
        raw_len = fh.read(8)
        if len(raw_len) != 8:
            raise ArtifactRejected(f"{path.name} is not a safetensors file (too short)")
        (n,) = struct.unpack("<Q", raw_len)
        if n > MAX_HEADER_BYTES:
            raise ArtifactRejected(f"{path.name} has a {n}-byte header, over the {MAX_HEADER_BYTES} cap")
        try:
            header = strict_json.loads(fh.read(n), "safetensors header", floats=True)
        except ValueError as exc:
            raise ArtifactRejected(f"{path.name} has a malformed safetensors header ({exc})") from None
    if not isinstance(header, dict):
        raise ArtifactRejected(f"{path.name} has a malformed safetensors header")
    header.pop("__metadata__", None)
    return header


def tensor_shapes_from_dir(artifact_dir: Path) -> dict[str, list[int]]:
    header = safetensors_header(artifact_dir / ADAPTER_WEIGHTS)
    shapes = {}
    for name, info in header.items():
        if not isinstance(info, dict) or info.get("dtype") not in ALLOWED_DTYPES:
            raise ArtifactRejected(
                f"tensor {name!r} has dtype {info.get('dtype') if isinstance(info, dict) else '?'}; "
                f"allowed: {sorted(ALLOWED_DTYPES)}"
            )
        shapes[name] = list(info.get("shape", []))
    return shapes


class BaseShapes:
    """What an adapter is checked against: the base model's linear layers {module path: (in, out)}
    and its input embedding (module path, vocab, hidden), read from config.json on the meta device."""

    def __init__(self, base_model_dir: Path):
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM

        config = AutoConfig.from_pretrained(str(base_model_dir), trust_remote_code=False)
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(  # type: ignore[no-untyped-call]
                config, trust_remote_code=False
            )
        self.linears = {
            name: (m.in_features, m.out_features)
            for name, m in model.named_modules()
            if isinstance(m, torch.nn.Linear)
        }
        embedding = model.get_input_embeddings()
        self.embedding = next(name for name, m in model.named_modules() if m is embedding)
        self.vocab, self.hidden = (int(d) for d in embedding.weight.shape)


def check_adapter_config(config: Mapping[str, Any], max_rank: int) -> int:
    """Validate the adapter config's risky fields; returns the rank r."""
    if config.get("peft_type") != "LORA":
        raise ArtifactRejected(f"adapter peft_type is {config.get('peft_type')!r}; only LORA is accepted")
    r = config.get("r")
    if not isinstance(r, int) or isinstance(r, bool) or r < 1:
        raise ArtifactRejected(f"adapter rank r={r!r} must be a positive integer")
    if r > max_rank:
        raise ArtifactRejected(f"adapter rank r={r} exceeds the cap of {max_rank}; train a smaller adapter")
    for field in ("rank_pattern", "alpha_pattern"):
        if config.get(field):
            raise ArtifactRejected(f"adapter uses {field}; per-layer ranks are not accepted, use one r")
    if config.get("modules_to_save"):
        raise ArtifactRejected(
            "adapter has modules_to_save (full layer copies); only LoRA weights are accepted"
        )
    if config.get("use_dora"):
        raise ArtifactRejected("DoRA adapters are not accepted; train plain LoRA")
    if config.get("layer_replication"):
        raise ArtifactRejected("adapter uses layer_replication; not accepted")
    return r


def check_token_indices(config: Mapping[str, Any], base: BaseShapes) -> int:
    """The adapter config's trainable token ids (PEFT: a list, or {embedding module: list}) must be
    distinct ids of the base's vocabulary on its input embedding; returns how many (0: none)."""
    indices = config.get("trainable_token_indices")
    if indices is None:
        return 0
    if isinstance(indices, Mapping):
        named = str(next(iter(indices))) if len(indices) == 1 else ""
        if named not in (base.embedding, base.embedding.rsplit(".", 1)[-1]):
            raise ArtifactRejected(
                f"trainable_token_indices names {sorted(indices)}; only the input embedding "
                f"{base.embedding.rsplit('.', 1)[-1]!r} may have trainable tokens"
            )
        indices = next(iter(indices.values()))
    if not isinstance(indices, list) or not all(type(i) is int for i in indices):
        raise ArtifactRejected("trainable_token_indices must be a list of token ids")
    if len(set(indices)) != len(indices) or any(not 0 <= i < base.vocab for i in indices):
        raise ArtifactRejected(
            f"trainable_token_indices must be distinct token ids below the vocabulary size {base.vocab}"
        )
    return len(indices)


def check_lora_tensors(
    shapes: Mapping[str, list[int]], rank: int, base: BaseShapes, n_tokens: int | None = None
) -> None:
    """Every tensor must be lora_A [r, in] or lora_B [out, r] of a linear layer of the base model, or
    the input embedding's trainable-tokens delta [n_tokens, hidden] (n_tokens from the adapter
    config; None when only a manifest is at hand: any count up to the vocabulary)."""
    if not shapes:
        raise ArtifactRejected("adapter holds no tensors")
    linears = base.linears
    for name, shape in shapes.items():
        tokens = _TOKENS_KEY.match(name)
        if tokens is not None:
            _check_token_delta(name, list(shape), tokens["module"], base, n_tokens)
            continue
        match = _LORA_KEY.match(name)
        if match is None:
            raise ArtifactRejected(
                f"unexpected tensor {name!r}: only lora_A / lora_B weights and the embedding's "
                "trainable tokens are accepted"
            )
        module = match["module"]
        if module not in linears:
            raise ArtifactRejected(
                f"tensor {name!r} targets {module!r}, which is not a linear layer of the base"
            )
        fan_in, fan_out = linears[module]
        expected = [rank, fan_in] if match["ab"] == "A" else [fan_out, rank]
        if list(shape) != expected:
            raise ArtifactRejected(
                f"tensor {name!r} has shape {list(shape)}, expected {expected} for this base model"
            )


def _check_token_delta(
    name: str, shape: list[int], module: str, base: BaseShapes, n_tokens: int | None
) -> None:
    if module != base.embedding:
        raise ArtifactRejected(f"tensor {name!r}: trainable tokens are accepted on {base.embedding!r} only")
    if n_tokens == 0:
        raise ArtifactRejected(f"tensor {name!r} is present but the adapter config names no trainable tokens")
    if len(shape) != 2 or shape[1] != base.hidden or not 1 <= shape[0] <= base.vocab:
        raise ArtifactRejected(
            f"tensor {name!r} has shape {shape}, expected [token ids (<= {base.vocab}), {base.hidden}]"
        )
    if n_tokens is not None and shape[0] != n_tokens:
        raise ArtifactRejected(f"tensor {name!r} holds {shape[0]} rows for {n_tokens} trainable token ids")
    if shape[0] * shape[1] > MAX_EMBEDDING_DELTA:
        raise ArtifactRejected(
            f"tensor {name!r} has {shape[0] * shape[1]} parameters, over the {MAX_EMBEDDING_DELTA} cap"
        )


def read_adapter_config(artifact_dir: Path) -> dict[str, Any]:
    path = artifact_dir / ADAPTER_CONFIG
    if not path.is_file():
        raise ArtifactRejected(f"{ADAPTER_CONFIG} is missing from the artifact")
    try:
        data = strict_json.loads(path.read_bytes(), ADAPTER_CONFIG, floats=True)
    except ValueError as exc:
        raise ArtifactRejected(f"{ADAPTER_CONFIG} is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ArtifactRejected(f"{ADAPTER_CONFIG} must be a JSON object")
    return data


def check_lora_artifact_dir(
    artifact_dir: str | Path, base_model_dir: str | Path, max_rank: int = MAX_LORA_RANK
) -> None:
    """Refuse an adapter directory that does not fit the base model; reads no tensor data."""
    adir = Path(artifact_dir)
    extra = sorted(p.name for p in adir.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".pkl", ".ckpt"))
    if extra:
        raise ArtifactRejected(f"artifact holds pickle-format files {extra}; only safetensors are accepted")
    if not (adir / ADAPTER_WEIGHTS).is_file():
        raise ArtifactRejected(f"{ADAPTER_WEIGHTS} is missing from the artifact")
    config = read_adapter_config(adir)
    rank = check_adapter_config(config, max_rank)
    base = BaseShapes(Path(base_model_dir))
    n_tokens = check_token_indices(config, base)
    check_lora_tensors(tensor_shapes_from_dir(adir), rank, base, n_tokens)


def check_lora_manifest(manifest: Any, base_model_dir: str | Path, max_rank: int = MAX_LORA_RANK) -> None:
    """Same check from a `protocol.bundle` manifest (its file list carries the tensor tables).

    The rank is read from the lora_A shapes (and must match meta "lora_r" when given); the adapter
    config file itself is checked again by `check_lora_artifact_dir` after extraction, before loading.
    """
    files = _manifest_files(manifest)
    weights = files.get(ADAPTER_WEIGHTS)
    if weights is None:
        raise ArtifactRejected(f"the bundle manifest lists no {ADAPTER_WEIGHTS}")
    unexpected = sorted(set(files) - {ADAPTER_WEIGHTS, ADAPTER_CONFIG})
    if unexpected:
        raise ArtifactRejected(f"the bundle holds unexpected files {unexpected}")
    tensors = _field(weights, "tensors")
    if not tensors:
        raise ArtifactRejected(f"the manifest gives no tensor table for {ADAPTER_WEIGHTS}")
    shapes: dict[str, list[int]] = {}
    for t in tensors:
        if _field(t, "dtype") not in ALLOWED_DTYPES:
            raise ArtifactRejected(
                f"tensor {_field(t, 'name')!r} has dtype {_field(t, 'dtype')}; "
                f"allowed: {sorted(ALLOWED_DTYPES)}"
            )
        shapes[str(_field(t, "name"))] = [int(d) for d in _field(t, "shape")]
    rank = _rank_from_shapes(shapes)
    meta = _field(manifest, "meta") or {}
    declared = meta.get("lora_r") if isinstance(meta, Mapping) else None
    if declared is not None and str(declared) != str(rank):
        raise ArtifactRejected(f"meta lora_r={declared} disagrees with the tensors' rank {rank}")
    if rank > max_rank:
        raise ArtifactRejected(
            f"adapter rank r={rank} exceeds the cap of {max_rank}; train a smaller adapter"
        )
    check_lora_tensors(shapes, rank, BaseShapes(Path(base_model_dir)))


def _rank_from_shapes(shapes: Mapping[str, list[int]]) -> int:
    ranks = {shape[0] for name, shape in shapes.items() if name.endswith(".lora_A.weight") and shape}
    if len(ranks) != 1:
        raise ArtifactRejected(f"adapter lora_A tensors must share one rank, found {sorted(ranks) or 'none'}")
    return ranks.pop()


def _field(obj: Any, name: str) -> Any:
    return obj.get(name) if isinstance(obj, Mapping) else getattr(obj, name, None)


def _manifest_files(manifest: Any) -> dict[str, Any]:
    files = _field(manifest, "files")
    if isinstance(files, Mapping):
        return dict(files)
    if isinstance(files, list | tuple):
        return {str(_field(f, "path") or _field(f, "name")): f for f in files}
    raise ArtifactRejected("the bundle manifest has no file list")
