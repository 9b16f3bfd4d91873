"""The miner's typed events (the desktop app and `magnet mine` show them; tests assert on them)."""

from __future__ import annotations

from node.events import Event, event

# The states the miner is in, in words a hobbyist reads (MinerService.state).
STOPPED = "stopped"
PAUSED = "paused"
LOOKING = "looking for tasks"
JOINING = "joining"
DOWNLOADING = "downloading"
SEARCHING = "searching hyperparameters"
TRAINING = "training"
SUBMITTING = "submitting"
WAITING = "waiting for results"
STATES = (STOPPED, PAUSED, LOOKING, JOINING, DOWNLOADING, SEARCHING, TRAINING, SUBMITTING, WAITING)


@event("miner.state_changed")
class StateChanged(Event):
    state: str
    task_id: str  # "" when no task
    detail: str  # why (e.g. the pause reason)


@event("miner.task_seen")
class TaskSeen(Event):
    task_id: str
    task_kind: str
    validator: str
    fits: bool
    reason: str  # why it fits or not, in words


@event("miner.progress")
class Progress(Event):
    task_id: str
    phase: str  # the worker's phase: autoresearch, train, export...
    percent: float
    eta_s: float
    loss: float | None
    step: int
    total_steps: int


@event("miner.joined")
class Joined(Event):
    task_id: str
    accepted: bool
    reason: str


@event("miner.committed")
class Committed(Event):
    task_id: str
    artifact_hash: str
    seconds_before_deadline: float


@event("miner.revealed")
class Revealed(Event):
    task_id: str
    accepted: bool
    reason: str


@event("miner.receipt_received")
class ReceiptReceived(Event):
    task_id: str
    rank: int
    pool_size: int
    amount: int
    epoch: int
    verified: bool
    reason: str  # why not verified, "" when it is


@event("miner.proof_received")
class ProofReceived(Event):
    epoch: int
    amount: int
    verified: bool
    reason: str


@event("miner.claimed")
class Claimed(Event):
    epoch: int
    amount: int
    tx_hash: str  # "" when someone else had claimed it already


@event("miner.task_given_up")
class TaskGivenUp(Event):
    task_id: str
    reason: str


@event("miner.watchdog")
class WatchdogAlert(Event):
    task_id: str
    problem: str  # "stalled job", "job crashed", "lost network"
    action: str  # what the miner does about it


@event("miner.newer_protocol")
class NewerProtocol(Event):
    peer_id: str
    version: int
    ours: int
