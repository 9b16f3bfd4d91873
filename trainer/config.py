"""Configuration section of `trainer` (a pure dataclass: imports nothing of ours).

Every duration is in seconds. Each field carries a help text; `node.config` gathers this
section into the node's one `Config`.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class TrainerConfig:
    """Settings of `trainer`."""

    device: str = field(
        default="auto", metadata={"help": "Device for training and evaluation: auto, cpu, cuda or mps."}
    )
    threads: int = field(
        default=0, metadata={"help": "CPU threads per worker (torch, OpenMP, BLAS); 0: all cores."}
    )
    max_memory_bytes: int = field(
        default=0,
        metadata={"help": "Address-space cap (RLIMIT_AS) of each worker process in bytes; 0: no cap."},
    )
    worker_nice: int = field(
        default=10, metadata={"help": "Niceness of worker processes, so the node and GUI stay responsive."}
    )
    checkpoint_interval: float = field(
        default=60.0, metadata={"help": "Seconds between training checkpoints (resume after a crash)."}
    )
    cancel_grace: float = field(
        default=10.0,
        metadata={"help": "Seconds a cancelled worker gets to checkpoint and stop before SIGKILL."},
    )
    autoresearch_final_fraction: float = field(
        default=0.5,
        metadata={"help": "Share of a task's time budget always kept for autoresearch's final run."},
    )
    autoresearch_min_search: float = field(
        default=60.0,
        metadata={
            "help": "Seconds of task budget below which autoresearch does not search "
            "(from 30 s it races a few candidates in equal time slots)."
        },
    )


@dataclass
class DilocoConfig:
    """Settings of DiLoCo rounds (section ``[diloco]``; validator/diloco, miner/diloco_net.py)."""

    enabled: bool = field(
        default=False,
        metadata={"help": "Validator: run DiLoCo rounds; miner: join the rounds its validator announces."},
    )
    rounds: int = field(default=3, metadata={"help": "Validator: rounds to run (0: until stopped)."})
    inner_steps: int = field(default=10, metadata={"help": "H: inner AdamW steps a miner runs per round."})
    compression: str = field(
        default="int8", metadata={"help": "Pseudo-gradient compression: int8, int4, int2 or topk."}
    )
    round_s: float = field(default=120.0, metadata={"help": "Validator: deadline of each round, seconds."})
    expected: int = field(
        default=0,
        metadata={
            "help": "Validator: close a round once this many contributions are handled (0: at the deadline)."
        },
    )
    base_model: str = field(
        default="tiny-world",
        metadata={
            "help": "Base model of the run; only the built-in two-domain tiny Llama, tiny-world, so far."
        },
    )
    datasets: str = field(
        default="",
        metadata={"help": "Folder with the GSM8K and HH files of the shards ('': the shared datasets)."},
    )
    texts: int = field(default=60, metadata={"help": "Texts per domain cut into shards."})
    validator: str = field(
        default="", metadata={"help": "Miner: the validator whose rounds to join ('': the profile's first)."}
    )
    emission_per_round: float = field(
        default=1.0,
        metadata={"help": "Validator: MAG each round splits among its accepted miners (receipts)."},
    )
