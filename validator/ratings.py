"""OpenSkill (Plackett-Luce) ratings per miner and task kind, kept over time.

Each task's outcome updates the ratings of the miners that took part: ranked miners in their rank
order, and every miner that took part but was not ranked (disqualified, missing) tied last. The
book serialises to plain JSON-able data (``to_dict`` / ``from_dict``) so the store keeps it; the
ordinal (``mu - 3 sigma``, a conservative skill estimate) is what the app shows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from openskill.models import PlackettLuce

FORMAT_VERSION = 1


@dataclass(frozen=True)
class Rating:
    mu: float
    sigma: float

    @property
    def ordinal(self) -> float:
        return self.mu - 3.0 * self.sigma


class RatingBook:
    """Ratings keyed by (task kind, miner address)."""

    def __init__(self) -> None:
        self._model = PlackettLuce()
        self._ratings: dict[tuple[str, str], Rating] = {}

    def get(self, kind: str, miner: str) -> Rating:
        """The miner's rating for ``kind``; the model's prior when it has none yet."""
        return self._ratings.get((kind, miner), Rating(self._model.mu, self._model.sigma))

    def update(self, kind: str, ranked: Sequence[str], unranked: Sequence[str] = ()) -> None:
        """Apply one task: ``ranked`` best first, ``unranked`` tied after them."""
        miners = [*ranked, *unranked]
        if len(set(miners)) != len(miners):
            raise ValueError("RatingBook.update: a miner appears twice")
        if len(miners) < 2:
            return  # a lone miner's result says nothing about its skill relative to others
        teams = [[self._model.rating(mu=r.mu, sigma=r.sigma, name=m)]
                 for m in miners for r in [self.get(kind, m)]]
        ranks = [float(i) for i in range(1, len(ranked) + 1)] + [float(len(ranked) + 1)] * len(unranked)
        for miner, (new,) in zip(miners, self._model.rate(teams, ranks=ranks), strict=True):
            self._ratings[(kind, miner)] = Rating(float(new.mu), float(new.sigma))

    def leaderboard(self, kind: str) -> list[tuple[str, Rating]]:
        """Miners rated for ``kind``, best ordinal first (ties by address)."""
        rows = [(m, r) for (k, m), r in self._ratings.items() if k == kind]
        return sorted(rows, key=lambda row: (-row[1].ordinal, row[0]))

    def to_dict(self) -> dict[str, Any]:
        rows = [[k, m, r.mu, r.sigma] for (k, m), r in sorted(self._ratings.items())]
        return {"version": FORMAT_VERSION, "ratings": rows}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RatingBook:
        if data.get("version") != FORMAT_VERSION:
            raise ValueError(f"RatingBook: unknown format version {data.get('version')!r}")
        book = cls()
        for kind, miner, mu, sigma in data["ratings"]:
            book._ratings[(str(kind), str(miner))] = Rating(float(mu), float(sigma))
        return book
