"""Configuration section of `validator` (a pure dataclass: imports nothing of ours).

Every duration is in seconds. Each field carries a help text; `node.config` gathers this
section into the node's one `Config`. The scoring defaults follow the Gradients validator
(G.O.D, ``validator/core/constants.py``) unless a help text says otherwise; anyone recomputing
weights from receipts must use the same values (they are published with the epoch file).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass
class ValidatorConfig:
    """Settings of `validator`."""

    # --- ranking within one task (validator.scoring) ---
    test_weight_bps: int = field(
        default=7000, metadata=_help("Weight of the test loss in the combined text loss, basis points; "
                                     "the synthetic loss gets the rest (7000 = 0.7 / 0.3)."))
    place_scores: list[float] = field(
        default_factory=lambda: [3.0],
        metadata=_help("Rank score of places 1, 2, ... (non-increasing); later places get middle_score."))
    middle_score: float = field(
        default=0.0, metadata=_help("Rank score of a ranked miner neither placed nor penalised."))
    penalty_score: float = field(
        default=-1.0, metadata=_help("Rank score of the bottom quarter (<= middle_score)."))
    penalty_fraction: float = field(
        default=0.25, metadata=_help("Share of the ranked pool penalised (bottom)."))
    penalty_min_ranked: int = field(
        default=8, metadata=_help("Penalise the bottom only when more than this many miners are ranked."))
    disqualified_score: float = field(
        default=0.0, metadata=_help("Rank score of a miner that took part but was not ranked (anti-gaming)."))

    # --- task weight (validator.scoring) ---
    task_weight_coef: float = field(
        default=2.0, metadata=_help("Task weight = coef x sqrt(hours x model billions)."))
    task_weight_min: float = field(default=1.0, metadata=_help("Smallest task weight."))
    model_billions_min: float = field(
        default=1.0, metadata=_help("Model size floor in the task weight, billions."))
    model_billions_max: float = field(
        default=40.0, metadata=_help("Model size cap in the task weight, billions."))

    # --- aggregation over windows and the weight transform (validator.scoring) ---
    window_s: list[float] = field(
        default_factory=lambda: [86_400.0, 259_200.0, 604_800.0],
        metadata=_help("Aggregation windows, seconds (1, 3 and 7 days)."))
    window_weights: list[float] = field(
        default_factory=lambda: [0.3, 0.3, 0.4], metadata=_help("Weight of each window; sums to 1."))
    sigmoid_steepness: float = field(default=10.0, metadata=_help("Steepness of the sigmoid transform."))
    sigmoid_shift: float = field(
        default=0.3, metadata=_help("Centre of the sigmoid on the max-normalised score."))
    sigmoid_power: float = field(default=4.0, metadata=_help("Power applied to the sigmoid (sharper top)."))
    sigmoid_weight: float = field(
        default=0.75, metadata=_help("Weight of the sigmoid part of the transform."))
    linear_weight: float = field(default=0.1, metadata=_help("Weight of the linear part of the transform."))

    # --- anti-gaming (validator.antigaming) ---
    duplicate_loss_rel_tol: float = field(
        default=1e-6, metadata=_help("Two results whose test and synthetic losses agree within this relative "
                                     "tolerance are duplicates (the earlier commitment is credited)."))
    base_model_rel_tol: float = field(
        default=1e-4,
        metadata=_help("A result whose losses are within this relative tolerance of the base model's "
                       "is not fine-tuned."))
    gap_std_threshold: float = field(
        default=0.5,
        metadata=_help("Suspicious test-vs-synthetic gap: a relative gap above the pool's median by more "
                       "than this many (relative) standard deviations of the pool's synthetic losses."))
    gap_min_rel: float = field(
        default=0.05,
        metadata=_help("Smallest excess relative gap ever flagged (so a tight pool does not flag "
                       "honest noise)."))
    gap_min_pool: int = field(default=3, metadata=_help("Fewest candidates for the gap check to apply."))

    # --- pool selection and join admission (validator.selection) ---
    pool_size: int = field(default=15, metadata=_help("Most miners selected for a text task."))
    ideal_min_pool: int = field(
        default=8, metadata=_help("Fewer joiners than this: delay and retry while retries remain."))
    min_pool_to_start: int = field(
        default=2, metadata=_help("After the last retry, start with at least this many joiners, else fail."))
    join_retries: int = field(default=3, metadata=_help("Most times a task's join window is extended."))
    join_retry_growth: float = field(
        default=2.0, metadata=_help("Each retry's extension = join window x growth^n."))
    first_task_of_day_score: float = field(
        default=2.0, metadata=_help("Selection score for a miner's first task "
                                                                      "of the day (and for exploration)."))
    quality_floor: float = field(default=0.01, metadata=_help("Smallest selection score."))
    top_rank_multiplier: float = field(
        default=3.0, metadata=_help("Selection score multiplier for the best miner."))
    day_s: float = field(
        default=86_400.0, metadata=_help("Length of a 'day' for the first task and exploration."))
    fresh_explorations_per_day: int = field(
        default=4,
        metadata=_help("Brand-new identities given the exploration score per day; the others only "
                       "fill slots no known miner took."))
    join_rate_per_peer_s: float = field(default=0.2, metadata=_help("Join requests per second per peer id."))
    join_burst_per_peer: float = field(default=3.0, metadata=_help("Burst of join requests per peer id."))
    join_rate_per_address_s: float = field(
        default=0.2, metadata=_help("Join requests per second per address."))
    join_burst_per_address: float = field(default=3.0, metadata=_help("Burst of join requests per address."))
    join_queue_cap: int = field(default=64, metadata=_help("Most join requests queued per task."))

    # --- timing (validator.timing) ---
    time_scale: float = field(
        default=1.0,
        metadata=_help("Factor on every task duration; 1.0 on the real network, 1/120 on a devnet "
                       "(the smallest task then lasts one minute)."))
    data_bins_rows: list[int] = field(
        default_factory=lambda: [10_000, 25_000, 50_000, 100_000],
        metadata=_help("Upper bounds (exclusive) of the dataset-size bins, rows."))
    data_bins_hours: list[float] = field(
        default_factory=lambda: [2.0, 3.0, 4.0, 5.0, 7.0],
        metadata=_help("Training hours per dataset-size bin (one more entry than data_bins_rows)."))
    model_bins_billions: list[float] = field(
        default_factory=lambda: [1.0, 4.0, 8.0, 16.0],
        metadata=_help("Upper bounds (exclusive) of the model-size bins, billions of parameters."))
    model_bins_factor: list[float] = field(
        default_factory=lambda: [1.0, 1.25, 1.5, 2.0, 3.0],
        metadata=_help("Hours multiplier per model-size bin (one more entry than model_bins_billions)."))
    max_task_hours: float = field(default=12.0, metadata=_help("Cap on nominal training hours."))
    join_fraction: float = field(default=0.05, metadata=_help("Join window as a share of the training time."))
    join_min_s: float = field(default=5.0, metadata=_help("Shortest join window, seconds (not scaled)."))
    reveal_fraction: float = field(
        default=0.1, metadata=_help("Reveal window as a share of the training time."))
    reveal_min_s: float = field(default=10.0, metadata=_help("Shortest reveal window, seconds (not scaled)."))

    # --- tasks and data (validator.tasks) ---
    test_fraction: float = field(
        default=0.1, metadata=_help("Share of an organic task's rows kept back as the private test split."))
    synthetic_fraction: float = field(
        default=0.1, metadata=_help("Share of rows kept back as the private pool of the held_back "
                                    "synthetic generator (unused when rows are generated)."))
    min_split_rows: int = field(
        default=2, metadata=_help("Fewest rows in each of the train, test and synthetic splits."))
    synthetic_generator: str = field(
        default="auto", metadata=_help("Synthetic evaluation data: 'arithmetic', 'held_back', 'teacher' or "
                                       "'auto' (arithmetic for GSM8K-style question/answer rows, else "
                                       "teacher for instruct tasks when teacher_model is set, else "
                                       "held_back)."))
    teacher_model: str = field(
        default="", metadata=_help("Local causal LM directory (safetensors, no remote code) whose "
                                   "greedy answers to held-back prompts are the 'teacher' synthetic "
                                   "rows; '': none."))
    teacher_max_new_tokens: int = field(
        default=128, metadata=_help("Most tokens the teacher writes per answer."))
    teacher_batch_size: int = field(default=8, metadata=_help("Prompts the teacher answers at once."))
    eval_max_examples: int = field(
        default=64, metadata=_help("Most rows of each private split evaluated per artifact."))
    max_artifact_bytes: int = field(
        default=64 * 1024 * 1024, metadata=_help("Largest artifact bundle a task accepts, bytes."))
    synthetic_interval_s: float = field(
        default=0.0, metadata=_help("Seconds between synthetic tasks; 0: no synthetic tasks."))
    synthetic_datasets: list[str] = field(
        default_factory=list,
        metadata=_help("Data files synthetic tasks draw from; empty: the bundled GSM8K subset."))
    synthetic_kinds: dict[str, float] = field(
        default_factory=lambda: {"instruct": 1.0},
        metadata=_help("Mix of task kinds for synthetic tasks: kind -> relative frequency."))
    grpo_rewards: str = field(
        default="exact_answer:1.0,format:0.2",  # trainer.rewards.DEFAULT_REWARDS (config imports nothing)
        metadata=_help("Rewards of a grpo task that names none: 'name:weight,...' from the built-in "
                       "registry (magnet task create --rewards sets them per task)."))
    grpo_max_new_tokens: int = field(
        default=0,
        metadata=_help("Completion length (tokens, 8..1024) a grpo task that names none is judged and "
                       "trained at; 0: none announced, the recipe's default 128 (magnet task create "
                       "--max-new-tokens sets it per task)."))
    synthetic_model: str = field(
        default="bundled", metadata=_help("Base model of synthetic tasks: a model directory or 'bundled'."))
    synthetic_rows: int = field(
        default=200, metadata=_help("Rows drawn from a dataset for one synthetic task."))

    # --- evaluation sandbox (validator.sandbox) ---
    eval_workers: int = field(
        default=0, metadata=_help("Evaluation worker processes at once; 0: one per two CPU cores."))
    eval_memory_bytes: int = field(
        default=6 * 1024**3, metadata=_help("Address-space cap (RLIMIT_AS) of an evaluation worker, bytes."))
    eval_cpu_seconds: int = field(
        default=1800, metadata=_help("CPU-time cap (RLIMIT_CPU) of an evaluation worker, seconds."))
    eval_timeout_s: float = field(
        default=900.0, metadata=_help("Wall-clock limit of one evaluation, seconds."))
    eval_threads: int = field(default=1, metadata=_help("Torch threads per evaluation worker."))

    # --- service loops, API (validator.service, validator.api) ---
    tick_s: float = field(default=0.25, metadata=_help("Seconds between task lifecycle steps."))
    reannounce_s: float = field(
        default=60.0, metadata=_help("Seconds between repeats of a task's announcement during its join "
                                     "window (gossip is lossy, miners come late); 0: announce once."))
    epoch_poll_s: float = field(default=1.0, metadata=_help("Seconds between epoch checks on chain."))
    join_answer_wait_s: float = field(
        default=10.0, metadata=_help("Most seconds a join request waits for the pool draw before the "
                                     "miner is told to ask again."))
    api_enabled: bool = field(default=True, metadata=_help("Serve the local HTTP API on 127.0.0.1."))
    api_port: int = field(default=0, metadata=_help("Port of the local HTTP API; 0: any free port."))

    def problems(self) -> list[str]:
        """What is inconsistent in these settings (empty when usable), each saying what to fix."""
        found = []
        if not 0 <= self.test_weight_bps <= 10_000:
            found.append(f"validator.test_weight_bps must be 0..10000, got {self.test_weight_bps}")
        scores = [*self.place_scores, self.middle_score, self.penalty_score]
        if any(a < b for a, b in itertools.pairwise(scores)):
            found.append("validator.place_scores, middle_score, penalty_score must not increase, got "
                         f"{scores}")
        if len(self.window_s) != len(self.window_weights) or abs(sum(self.window_weights) - 1) > 1e-9:
            found.append("validator.window_weights must have one entry per window_s and sum to 1")
        if len(self.data_bins_hours) != len(self.data_bins_rows) + 1:
            found.append("validator.data_bins_hours needs one more entry than data_bins_rows")
        if len(self.model_bins_factor) != len(self.model_bins_billions) + 1:
            found.append("validator.model_bins_factor needs one more entry than model_bins_billions")
        if not 1 <= self.min_pool_to_start <= self.ideal_min_pool <= self.pool_size:
            found.append("validator: need 1 <= min_pool_to_start <= ideal_min_pool <= pool_size")
        if self.time_scale <= 0 or self.day_s <= 0:
            found.append("validator.time_scale and validator.day_s must be positive")
        if self.synthetic_generator == "teacher" and not self.teacher_model:
            found.append("validator.synthetic_generator 'teacher' needs validator.teacher_model (a local "
                         "model directory)")
        if self.teacher_model and not (Path(self.teacher_model).expanduser() / "config.json").is_file():
            found.append(f"validator.teacher_model {self.teacher_model!r} is not a model directory "
                         "(no config.json)")
        if self.teacher_max_new_tokens < 1 or self.teacher_batch_size < 1:
            found.append("validator.teacher_max_new_tokens and teacher_batch_size must be at least 1")
        if self.grpo_max_new_tokens != 0 and not 8 <= self.grpo_max_new_tokens <= 1024:
            # trainer.rewards.MIN/MAX_COMPLETION_TOKENS (config imports nothing of ours)
            found.append("validator.grpo_max_new_tokens must be 0 (unset) or 8..1024 tokens")
        return found
