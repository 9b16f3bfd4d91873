"""DiLoCo on the miner side: shard assignment, the inner loop, compression and the wire codec.

A round: the miner takes the published global model, runs H inner AdamW steps on the shard assigned
to it (`shards.assign_shards`), and sends the pseudo-gradient (global minus local) compressed with
error feedback (`compress`) and serialised as safetensors with a small JSON header (`codec`).
docs/DILOCO.md describes the whole protocol. torch is imported by the submodules only.
"""
