"""What a round announces to its miners (the in-process form of the DilocoRound message)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from trainer.diloco.config import CompressionConfig, InnerConfig


@dataclass(frozen=True)
class RoundSpec:
    round: int
    base_model_sha256: str  # hex sha256 of the global model's safetensors bytes
    deadline_ms: int  # contributions received later are refused as late
    shard_seed: int
    n_shards: int
    assignment: dict[str, int]  # miner address -> shard index (shards.assign_shards)
    inner: InnerConfig = field(default_factory=InnerConfig)
    compression: CompressionConfig = field(default_factory=CompressionConfig)


def spec_to_json(spec: RoundSpec) -> dict[str, Any]:
    """The spec as plain JSON values (the miner hands it to its training child, trainer.diloco.child)."""
    return asdict(spec)


def spec_from_json(raw: dict[str, Any]) -> RoundSpec:
    """``spec_to_json``'s inverse; the configs' own checks run again (unknown fields raise TypeError)."""
    fields = dict(raw)
    inner = dict(fields.pop("inner"))
    inner["adam_betas"] = tuple(float(b) for b in inner.get("adam_betas", InnerConfig().adam_betas))
    assignment = {str(k): int(v) for k, v in dict(fields.pop("assignment")).items()}
    compression = CompressionConfig(**dict(fields.pop("compression")))
    return RoundSpec(**fields, assignment=assignment, inner=InnerConfig(**inner), compression=compression)
