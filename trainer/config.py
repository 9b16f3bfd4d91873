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
