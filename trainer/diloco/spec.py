"""What a round announces to its miners (the in-process form of the DilocoRound message)."""

from __future__ import annotations

from dataclasses import dataclass, field

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
