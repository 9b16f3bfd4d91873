"""OpenSkill (Plackett-Luce) ratings per miner and kind."""

from __future__ import annotations

import json

import pytest

from validator.ratings import RatingBook


def test_the_winner_rises_and_the_loser_falls() -> None:
    book = RatingBook()
    prior = book.get("instruct", "a")
    book.update("instruct", ["a", "b", "c"])
    a, b, c = (book.get("instruct", m) for m in "abc")
    assert a.mu > prior.mu > c.mu
    assert a.ordinal > b.ordinal > c.ordinal
    assert a.sigma < prior.sigma  # more certain after a task


def test_repeated_wins_order_the_leaderboard_and_kinds_are_separate() -> None:
    book = RatingBook()
    for _ in range(5):
        book.update("instruct", ["strong", "medium", "weak"])
    book.update("image", ["weak", "strong"])
    assert [m for m, _ in book.leaderboard("instruct")] == ["strong", "medium", "weak"]
    assert [m for m, _ in book.leaderboard("image")] == ["weak", "strong"]


def test_unranked_miners_tie_last() -> None:
    book = RatingBook()
    book.update("dpo", ["a"], unranked=["cheat1", "cheat2"])
    assert book.get("dpo", "cheat1") == book.get("dpo", "cheat2")
    assert book.get("dpo", "a").mu > book.get("dpo", "cheat1").mu


def test_a_lone_miner_changes_nothing_and_duplicates_are_refused() -> None:
    book = RatingBook()
    book.update("instruct", ["a"])
    assert book.leaderboard("instruct") == []
    with pytest.raises(ValueError):
        book.update("instruct", ["a", "a"])


def test_serialisation_round_trips_through_json() -> None:
    book = RatingBook()
    book.update("instruct", ["a", "b", "c"])
    book.update("grpo", ["c", "a"])
    restored = RatingBook.from_dict(json.loads(json.dumps(book.to_dict())))
    assert restored.to_dict() == book.to_dict()
    restored.update("instruct", ["c", "b"])
    book.update("instruct", ["c", "b"])
    assert restored.get("instruct", "c") == book.get("instruct", "c")
    with pytest.raises(ValueError, match="version"):
        RatingBook.from_dict({"version": 99, "ratings": []})
