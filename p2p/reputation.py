"""Per-peer limits and reputation: token buckets, concurrency caps, rejection counts and bans."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up."""

    rate: float
    burst: float
    tokens: float = -1.0
    stamp: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        if self.tokens < 0:
            self.tokens = self.burst

    def _refill(self, now: float) -> None:
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    def try_take(self, now: float | None = None) -> bool:
        self._refill(time.monotonic() if now is None else now)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def wait_time(self, now: float | None = None) -> float:
        """Seconds until one token is available (0 if one is now)."""
        self._refill(time.monotonic() if now is None else now)
        return 0.0 if self.tokens >= 1.0 else (1.0 - self.tokens) / self.rate


class PeerRateLimiter:
    """One token bucket per peer id."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self.buckets: dict[str, TokenBucket] = {}

    def allow(self, peer_id: str) -> bool:
        bucket = self.buckets.get(peer_id)
        if bucket is None:
            bucket = self.buckets[peer_id] = TokenBucket(self.rate, self.burst)
        return bucket.try_take()


class PeerSlots:
    """At most ``limit`` concurrent operations per peer (non-blocking: acquire or refuse)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.active: dict[str, int] = defaultdict(int)

    def try_acquire(self, peer_id: str) -> bool:
        if self.active[peer_id] >= self.limit:
            return False
        self.active[peer_id] += 1
        return True

    def release(self, peer_id: str) -> None:
        self.active[peer_id] -= 1
        if self.active[peer_id] <= 0:
            del self.active[peer_id]


class Reputation:
    """Counts rejections per peer by reason; past ``threshold`` the peer is banned for a time.

    ``on_ban`` does the actual disconnect (it is the network's job, not this bookkeeping's).
    """

    def __init__(self, threshold: int, ban_seconds: float,
                 on_ban: Callable[[str, str], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.threshold = threshold
        self.ban_seconds = ban_seconds
        self.on_ban = on_ban
        self.clock = clock
        self.rejections: dict[str, int] = defaultdict(int)
        self.reasons: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.banned_until: dict[str, float] = {}

    def reject(self, peer_id: str, reason: str, weight: int = 1) -> int:
        """Count a rejection; ban when past the threshold. Returns the peer's total."""
        self.rejections[peer_id] += weight
        self.reasons[peer_id][reason] += weight
        total = self.rejections[peer_id]
        if total >= self.threshold and not self.is_banned(peer_id):
            self.banned_until[peer_id] = self.clock() + self.ban_seconds
            if self.on_ban is not None:
                self.on_ban(peer_id, reason)
        return total

    def is_banned(self, peer_id: str) -> bool:
        until = self.banned_until.get(peer_id)
        return until is not None and self.clock() < until

    def expired_bans(self) -> list[str]:
        """Peers whose ban ran out (forgotten here, with their count reset)."""
        now = self.clock()
        done = [p for p, until in self.banned_until.items() if until <= now]
        for peer_id in done:
            del self.banned_until[peer_id]
            self.rejections.pop(peer_id, None)
        return done

    def reason_counts(self, peer_id: str) -> dict[str, int]:
        return dict(self.reasons.get(peer_id, {}))
