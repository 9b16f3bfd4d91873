"""An honest DiLoCo miner in one object: train on the assigned shard, compress, encode."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from trainer.diloco.codec import ContributionHeader, encode_contribution
from trainer.diloco.compress import ErrorFeedback
from trainer.diloco.data import ShardSet
from trainer.diloco.inner import inner_train, pseudo_gradient
from trainer.diloco.params import Params, params_hash
from trainer.diloco.shards import miner_seed
from trainer.diloco.spec import RoundSpec

if TYPE_CHECKING:
    import torch


class DilocoMiner:
    """Keeps its error-feedback buffer across rounds; everything else comes with each round."""

    def __init__(self, address: str, model: torch.nn.Module, shards: ShardSet) -> None:
        self.address = address
        self.model = model
        self.shards = shards
        self._feedback: ErrorFeedback | None = None
        self._adam: dict[str, Any] = {}  # AdamW state kept across rounds when the round asks for it

    def shard_for(self, spec: RoundSpec) -> int:
        """The shard this miner trains on (overridden by tests' dishonest miners)."""
        return spec.assignment[self.address]

    def pseudo_gradient(self, spec: RoundSpec, global_params: Params) -> Params:
        """global minus local after H inner steps on this miner's shard."""
        shard = self.shards.shards[self.shard_for(spec)]
        seed = miner_seed(self.address, spec.round, spec.shard_seed)
        adam = self._adam if spec.inner.keep_adam_state else None
        first = (spec.round - 1) * spec.inner.inner_steps  # rounds are numbered from 1
        local = inner_train(self.model, global_params, shard, spec.inner, seed, adam, first)
        return pseudo_gradient(global_params, local)

    def contribute(self, spec: RoundSpec, global_params: Params) -> bytes:
        """The encoded contribution for this round."""
        return self.encode(spec, global_params, self.pseudo_gradient(spec, global_params))

    def encode(self, spec: RoundSpec, base_params: Params, delta: Params) -> bytes:
        """Compress ``delta`` (with this miner's residual) and wrap it with its header."""
        if self._feedback is None or self._feedback.cfg != spec.compression:
            self._feedback = ErrorFeedback(spec.compression)
        payload, _sent = self._feedback.step(delta)
        shapes = {n: tuple(t.shape) for n, t in delta.items()}
        header = ContributionHeader(spec.round, params_hash(base_params), spec.compression.scheme, shapes)
        return encode_contribution(payload, header)
