"""Join admission, weighted pool selection and the too-few-joiners rule.

Admission (``JoinGate``): each join request takes a token from its peer id's bucket and its
address's bucket (capacity ``join_burst_*``, refilled at ``join_rate_*_s`` per second); a request
finding either empty is refused, as is a repeat from a queued address or one arriving when the
task's queue holds ``join_queue_cap`` requests. Every refusal carries a ``Refusal`` and a message.

Selection (``select_pool``), after the Gradients validator: a known miner's selection score is
``first_task_of_day_score`` (2.0) when it has had no task yet this day (days are
``floor(t / day_s)``), otherwise its average quality floored at ``quality_floor`` (0.01; the floor
too when it has no scored task yet); the
known miner(s) with the highest positive average quality get ``top_rank_multiplier`` (3x). A
brand-new identity (no task, no score) gets the exploration score (2.0) only while the day's
exploration budget lasts (``fresh_explorations_per_day``, first come first served); the others
only fill slots that no known or exploring miner took. So a swarm of fresh addresses cannot
crowd out known miners. The draw is weighted sampling without replacement (Efraimidis-Spirakis
keys ``u^(1/w)``) from a ``random.Random(seed)`` over the candidates sorted by address, so the same
seed and candidates give the same pool whatever order they are listed in.
"""

from __future__ import annotations

import enum
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from validator.config import ValidatorConfig


class Refusal(enum.Enum):
    RATE_LIMITED_PEER = "rate_limited_peer"
    RATE_LIMITED_ADDRESS = "rate_limited_address"
    ALREADY_QUEUED = "already_queued"
    QUEUE_FULL = "queue_full"
    NOT_SELECTED = "not_selected"
    NO_FREE_SLOT = "no_free_slot"


@dataclass(frozen=True)
class Admission:
    accepted: bool
    refusal: Refusal | None
    message: str


@dataclass
class TokenBucket:
    """``capacity`` tokens, refilled at ``rate`` per second; ``take`` spends one if there is one."""

    capacity: float
    rate: float
    tokens: float
    updated: float

    def level(self, now: float) -> float:
        return min(self.capacity, self.tokens + max(0.0, now - self.updated) * self.rate)

    def take(self, now: float) -> bool:
        self.tokens, self.updated = self.level(now), max(now, self.updated)
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


@dataclass(frozen=True)
class QueuedJoin:
    peer_id: str
    address: str
    arrival: int  # admission order, across tasks


class JoinGate:
    """Rate limits per peer and per address, and one capped queue of joiners per task."""

    PRUNE_AT = 10_000  # buckets kept before the full (idle) ones are dropped

    def __init__(self, cfg: ValidatorConfig) -> None:
        self.cfg = cfg
        self._peers: dict[str, TokenBucket] = {}
        self._addresses: dict[str, TokenBucket] = {}
        self._queues: dict[str, list[QueuedJoin]] = {}
        self._arrivals = 0

    def _bucket(self, table: dict[str, TokenBucket], key: str, burst: float, rate: float,
                now: float) -> TokenBucket:
        if key not in table:
            if len(table) >= self.PRUNE_AT:
                for k in [k for k, b in table.items() if b.level(now) >= b.capacity]:
                    del table[k]
            table[key] = TokenBucket(burst, rate, burst, now)
        return table[key]

    def admit(self, task_id: str, peer_id: str, address: str, now: float) -> Admission:
        cfg = self.cfg
        peer = self._bucket(self._peers, peer_id, cfg.join_burst_per_peer, cfg.join_rate_per_peer_s, now)
        if not peer.take(now):
            wait = 1 / cfg.join_rate_per_peer_s
            return Admission(False, Refusal.RATE_LIMITED_PEER,
                             f"too many join requests from peer {peer_id}; retry in {wait:.0f} s")
        addr = self._bucket(self._addresses, address, cfg.join_burst_per_address,
                            cfg.join_rate_per_address_s, now)
        if not addr.take(now):
            wait = 1 / cfg.join_rate_per_address_s
            return Admission(False, Refusal.RATE_LIMITED_ADDRESS,
                             f"too many join requests from {address}; retry in {wait:.0f} s")
        queue = self._queues.setdefault(task_id, [])
        if any(q.address == address for q in queue):
            return Admission(False, Refusal.ALREADY_QUEUED, f"{address} has already joined this task")
        if len(queue) >= cfg.join_queue_cap:
            return Admission(False, Refusal.QUEUE_FULL,
                             f"this task's join queue is full ({cfg.join_queue_cap})")
        queue.append(QueuedJoin(peer_id, address, self._arrivals))
        self._arrivals += 1
        return Admission(True, None, "queued for selection")

    def queued(self, task_id: str) -> list[QueuedJoin]:
        return list(self._queues.get(task_id, []))

    def close(self, task_id: str) -> list[QueuedJoin]:
        """Forget the task's queue (selection done) and return it."""
        return self._queues.pop(task_id, [])


@dataclass(frozen=True)
class Candidate:
    """A queued joiner and what this validator knows of it."""

    miner: str  # address
    arrival: int  # admission order
    last_task_at: float | None  # last time it was assigned a task here; None: never
    average_quality: float | None  # mean rank score over the scoring window; None: never scored

    @property
    def fresh(self) -> bool:
        return self.last_task_at is None and self.average_quality is None


@dataclass
class ExplorationBudget:
    """How many brand-new identities got the exploration score on ``day`` (serialisable)."""

    day: int = -1
    used: int = 0

    def left(self, now: float, cfg: ValidatorConfig) -> int:
        if math.floor(now / cfg.day_s) != self.day:
            return cfg.fresh_explorations_per_day
        return max(0, cfg.fresh_explorations_per_day - self.used)

    def spend(self, count: int, now: float, cfg: ValidatorConfig) -> None:
        today = math.floor(now / cfg.day_s)
        if today != self.day:
            self.day, self.used = today, 0
        self.used += count


def selection_score(c: Candidate, now: float, is_top: bool, cfg: ValidatorConfig) -> float:
    """Selection weight of a known miner, or of a fresh one granted exploration."""
    today = math.floor(now / cfg.day_s)
    first_today = c.last_task_at is None or math.floor(c.last_task_at / cfg.day_s) < today
    if first_today:
        score = cfg.first_task_of_day_score
    elif c.average_quality is None:  # a second task today before any result: nothing to go on yet
        score = cfg.quality_floor
    else:
        score = max(cfg.quality_floor, c.average_quality)
    return score * (cfg.top_rank_multiplier if is_top else 1.0)


@dataclass(frozen=True)
class Selection:
    selected: tuple[str, ...]  # in draw order
    explored: tuple[str, ...]  # fresh identities given the exploration score (spend these)
    refused: dict[str, Admission] = field(default_factory=dict)


def _draw(weights: dict[str, float], k: int, rng: random.Random) -> list[str]:
    """Weighted sampling without replacement of ``k`` names (canonical order: sorted names)."""
    keys = []
    for name in sorted(weights):
        u = 1.0 - rng.random()  # in (0, 1]
        keys.append((math.log(u) / max(weights[name], 1e-300), name))
    keys.sort(key=lambda kv: (-kv[0], kv[1]))
    return [name for _, name in keys[:k]]


def select_pool(candidates: Sequence[Candidate], now: float, seed: int, explorations_left: int,
                cfg: ValidatorConfig, pool_size: int | None = None) -> Selection:
    """Draw the task's pool (module docstring: the rule); every candidate not drawn is refused."""
    size = cfg.pool_size if pool_size is None else pool_size
    if len({c.miner for c in candidates}) != len(candidates):
        raise ValueError("select_pool: a miner appears twice")
    ordered = sorted(candidates, key=lambda c: (c.arrival, c.miner))
    fresh = [c for c in ordered if c.fresh]
    explore = fresh[:max(0, explorations_left)]
    overflow = fresh[len(explore):]
    known = [c for c in ordered if not c.fresh]
    best = max((c.average_quality for c in known if c.average_quality is not None), default=0.0)
    weights = {c.miner: selection_score(c, now, best > 0 and c.average_quality == best, cfg) for c in known}
    weights.update({c.miner: cfg.first_task_of_day_score for c in explore})
    rng = random.Random(seed)
    chosen = _draw(weights, size, rng)
    chosen += _draw({c.miner: 1.0 for c in overflow}, size - len(chosen), rng) if len(chosen) < size else []
    taken = set(chosen)
    refused: dict[str, Admission] = {}
    for c in known + explore:
        if c.miner not in taken:
            refused[c.miner] = Admission(
                False, Refusal.NOT_SELECTED,
                f"not drawn into the pool of {size} (selection weight {weights[c.miner]:.2f})")
    for c in overflow:
        if c.miner not in taken:
            refused[c.miner] = Admission(False, Refusal.NO_FREE_SLOT,
                                         "today's slots for new identities are used up and the pool is full")
    explored = tuple(c.miner for c in explore if c.miner in taken)
    return Selection(tuple(chosen), explored, refused)


class Outcome(enum.Enum):
    START = "start"
    DELAY = "delay"
    FAIL = "fail"


@dataclass(frozen=True)
class JoinWindowDecision:
    outcome: Outcome
    extend_s: float  # for DELAY: how much later join_by (and every later deadline) moves
    reason: str


def after_join_window(joined: int, retries_done: int, join_window_s: float,
                      cfg: ValidatorConfig) -> JoinWindowDecision:
    """What to do when a task's join window closes with ``joined`` admitted miners."""
    if joined >= cfg.ideal_min_pool:
        return JoinWindowDecision(Outcome.START, 0.0, f"{joined} miners joined")
    if retries_done < cfg.join_retries:
        extend = join_window_s * cfg.join_retry_growth ** (retries_done + 1)
        return JoinWindowDecision(
            Outcome.DELAY, extend,
            f"only {joined} of {cfg.ideal_min_pool} miners joined; waiting {extend:.0f} s more "
            f"(retry {retries_done + 1} of {cfg.join_retries})")
    if joined >= cfg.min_pool_to_start:
        return JoinWindowDecision(Outcome.START, 0.0,
                                  f"starting with {joined} miners after {retries_done} retries")
    return JoinWindowDecision(
        Outcome.FAIL, 0.0,
        f"too few miners joined: {joined}, at least {cfg.min_pool_to_start} needed, "
        f"after {retries_done} retries")
