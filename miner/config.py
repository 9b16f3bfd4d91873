"""Configuration section of `miner` (a pure dataclass: imports nothing of ours).

Every duration is in seconds. Each field carries a help text; `node.config` gathers this
section into the node's one `Config`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

ALL_KINDS = ["instruct", "dpo", "grpo", "image", "bitnet", "diloco"]


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass
class MinerConfig:
    """Settings of `miner`: what to mine, when, with how much of the machine."""

    # --- what and when ---
    enabled_kinds: list[str] = field(
        default_factory=lambda: list(ALL_KINDS), metadata=_help("Task kinds this miner accepts.")
    )
    autostart: bool = field(
        default=True, metadata=_help("Start mining as soon as the node starts (the desktop app sets it off).")
    )
    pause_on_battery: bool = field(
        default=True, metadata=_help("Pause mining while the machine runs on battery.")
    )
    idle_only: bool = field(
        default=False,
        metadata=_help(
            "Mine only after idle_after_s seconds without keyboard or mouse input "
            "(where the platform can tell: X11 with xprintidle)."
        ),
    )
    idle_after_s: float = field(default=300.0, metadata=_help("Seconds without user input before mining."))
    schedule: list[str] = field(
        default_factory=list,
        metadata=_help(
            "Weekly windows in which mining is allowed, e.g. ['mon-fri 22:00-07:00', "
            "'sat-sun 00:00-24:00'] (local time); empty: always."
        ),
    )

    # --- resources ---
    max_threads: int = field(default=0, metadata=_help("CPU threads for training; 0: all cores."))
    max_ram_mb: int = field(
        default=0, metadata=_help("RAM cap of a training job, MiB; 0: what is available.")
    )
    gpu: str = field(default="auto", metadata=_help("Device: 'auto', 'cpu', or 'cuda:N' for one GPU."))
    nice: int = field(default=10, metadata=_help("Scheduling niceness of training processes (POSIX)."))
    speed_gflops: float = field(
        default=0.0,
        metadata=_help(
            "Training speed of this machine, GFLOP/s; 0: measure it once at start; negative: "
            "never check deadlines against speed."
        ),
    )
    min_pass_fraction: float = field(
        default=0.25,
        metadata=_help(
            "Share of one pass over a task's training data that must fit before its commit "
            "deadline at the measured speed for the task to be taken."
        ),
    )

    # --- the work ---
    autoresearch: bool = field(
        default=True, metadata=_help("Search hyperparameters within the budget before the final run.")
    )
    pinned_hparams: dict[str, float] = field(
        default_factory=dict,
        metadata=_help(
            "Hyperparameters fixed for every job of the enabled kinds (autoresearch searches "
            "the others), e.g. {max_length = 256} on a slow machine."
        ),
    )
    search_max_trials: int = field(
        default=64, metadata=_help("Most hyperparameter trials autoresearch runs for one task.")
    )
    search_final_fraction: float = field(
        default=0.5, metadata=_help("Share of the training budget always kept for the final run.")
    )
    budget_fraction: float = field(
        default=0.85,
        metadata=_help(
            "Share of the time until commit_by given to training (the rest is "
            "start-up, export and the commitment)."
        ),
    )
    commit_margin_s: float = field(
        default=5.0, metadata=_help("Stop training this many seconds before commit_by at the latest.")
    )
    checkpoint_interval_s: float = field(
        default=10.0, metadata=_help("Seconds between training checkpoints (a restart resumes from one).")
    )
    claim_rewards: bool = field(
        default=True, metadata=_help("Claim rewards on chain once a proof arrives (needs gas).")
    )

    # --- watchdog and network ---
    poll_s: float = field(default=0.5, metadata=_help("Seconds between checks of the mining loop."))
    stall_timeout_s: float = field(
        default=120.0, metadata=_help("A training job without progress for this long is restarted.")
    )
    max_job_restarts: int = field(default=3, metadata=_help("Restarts of a stalled or crashed job."))
    network_timeout_s: float = field(
        default=30.0, metadata=_help("No peer connected for this long: reported as lost network.")
    )
    join_retry_s: float = field(default=2.0, metadata=_help("Seconds between join attempts."))
    result_wait_s: float = field(
        default=3600.0, metadata=_help("After reveal_by, how long to wait for a receipt before giving up.")
    )
    blob_quota_bytes: int = field(
        default=20_000_000_000,
        metadata=_help(
            "Most bytes the miner keeps in the blob store (oldest unpinned blobs are collected first)."
        ),
    )
