"""Pluggable synthetic evaluation data: data the miners have never seen, made per task.

Generators register by name (``@register_generator("name")``) and are built with
``make_generator(name)``; each turns a ``SyntheticRequest`` into rows, deterministically for its
seed. Two come built in:

* ``arithmetic``: NEW arithmetic word problems in GSM8K format (``question``; ``answer`` with the
  worked steps, each calculation annotated ``<<a*b=c>>``, ending in ``#### N``). Numbers are drawn
  from the seeded RNG and every answer is computed, never looked up; questions in
  ``request.exclude`` (e.g. the task's train split) are never produced.
* ``held_back``: rows from a private pool that are not in the rows the miners saw, compared by the
  sha256 of their canonical JSON, sampled with the seeded RNG.

* ``teacher``: held-back rows (picked as ``held_back`` picks them) answered afresh by a teacher
  model (``request.teacher``: the validator's configured ``teacher_model``, run in the evaluation
  sandbox by ``validator.sandbox.run_teacher``): each row keeps its prompt columns and its answer
  column (``output``, ``answer`` or ``completion``) becomes the teacher's greedy answer. Rows the
  teacher answers with nothing are left out.
"""

from __future__ import annotations

import hashlib
import json
import operator
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

Row = dict[str, Any]


@dataclass(frozen=True)
class SyntheticRequest:
    count: int
    seed: int
    pool: Sequence[Row] = ()  # candidate rows, for generators that select rather than make
    seen: Sequence[Row] = ()  # rows the miners were given (train split)
    exclude: frozenset[str] = field(default_factory=frozenset)  # questions never to produce
    # The teacher model: instruct rows -> its answers, one per row (the ``teacher`` generator).
    teacher: Callable[[list[Row]], list[str]] | None = None


class SyntheticGenerator(Protocol):
    def generate(self, request: SyntheticRequest) -> list[Row]: ...


_GENERATORS: dict[str, Callable[[], SyntheticGenerator]] = {}
F = TypeVar("F", bound=Callable[[], SyntheticGenerator])


def register_generator(name: str) -> Callable[[F], F]:
    """Register a generator factory (a class with no required arguments) under ``name``."""

    def register(factory: F) -> F:
        if name in _GENERATORS:
            raise ValueError(f"synthetic generator {name!r} registered twice")
        _GENERATORS[name] = factory
        return factory

    return register


def generator_names() -> list[str]:
    return sorted(_GENERATORS)


def make_generator(name: str) -> SyntheticGenerator:
    if name not in _GENERATORS:
        raise KeyError(f"unknown synthetic generator {name!r}; known: {', '.join(generator_names())}")
    return _GENERATORS[name]()


NAMES = ["Ava", "Ben", "Chloe", "Dev", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jonas", "Kemi", "Liam",
         "Maya", "Noah", "Olga", "Priya", "Quinn", "Rosa", "Sami", "Tariq", "Uma", "Viktor", "Wen", "Yara"]
ITEMS = ["notebook", "pencil", "apple", "ticket", "candle", "marble", "sticker", "cookie", "eraser",
         "plant pot"]
FRUIT = ["apples", "pears", "plums", "lemons", "peaches", "oranges"]


OPS: dict[str, Callable[[int, int], int]] = {
    "+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.floordiv}


class _Steps:
    """Worked solution lines with calculator annotations, GSM8K style."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def calc(self, text: str, a: int, op: str, b: int) -> int:
        if op == "/" and (b == 0 or a % b):
            raise ValueError("non-integer division in a generated problem")
        value: int = OPS[op](a, b)
        self.lines.append(f"{text} {a}{op}{b} = <<{a}{op}{b}={value}>>{value}.")
        return value

    def answer(self, final: int) -> str:
        return "\n".join([*self.lines, f"#### {final}"])


def _shopping(rng: random.Random) -> tuple[str, str]:
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    count, price = rng.randint(2, 19), rng.randint(2, 45)
    bill = ((count * price) // 50 + 1) * 50
    s = _Steps()
    cost = s.calc(f"The {item}s cost", count, "*", price)
    change = s.calc(f"{name} gets back", bill, "-", cost)
    return (f"{name} buys {count} {item}s at ${price} each and pays with ${bill}. "
            f"How many dollars of change does {name} get?", s.answer(change))


def _harvest(rng: random.Random) -> tuple[str, str]:
    name, fruit = rng.choice(NAMES), rng.choice(FRUIT)
    monday, times = rng.randint(3, 60), rng.randint(2, 5)
    fewer = rng.randint(1, monday * times - 1)
    s = _Steps()
    tuesday = s.calc("On Tuesday", monday, "*", times)
    wednesday = s.calc("On Wednesday", tuesday, "-", fewer)
    first_two = s.calc("Monday and Tuesday together", monday, "+", tuesday)
    total = s.calc("In all", first_two, "+", wednesday)
    return (f"{name} picks {monday} {fruit} on Monday and {times} times as many on Tuesday. On Wednesday "
            f"{name} picks {fewer} fewer than on Tuesday. "
            f"How many {fruit} does {name} pick in the three days?",
            s.answer(total))


def _sharing(rng: random.Random) -> tuple[str, str]:
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    friends, each, kept = rng.randint(2, 12), rng.randint(2, 30), rng.randint(1, 25)
    total = friends * each + kept
    s = _Steps()
    shared = s.calc("Shared out:", total, "-", kept)
    per_friend = s.calc("Each friend gets", shared, "/", friends)
    return (f"{name} has {total} {item}s, keeps {kept} and shares the rest equally among {friends} friends. "
            f"How many {item}s does each friend get?", s.answer(per_friend))


def _factory(rng: random.Random) -> tuple[str, str]:
    rate, hours, days = rng.randint(5, 90), rng.randint(2, 16), rng.randint(2, 9)
    defective = rng.randint(0, rate * hours)
    s = _Steps()
    per_day = s.calc("Each day the machine makes", rate, "*", hours)
    made = s.calc("Over all the days it makes", per_day, "*", days)
    good = s.calc("Good widgets:", made, "-", defective)
    return (f"A machine makes {rate} widgets an hour and runs {hours} hours a day for {days} days. "
            f"{defective} of the widgets are defective. How many good widgets does it make?", s.answer(good))


def _discount(rng: random.Random) -> tuple[str, str]:
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    price, percent, count = rng.randint(1, 30) * 20, rng.choice([10, 20, 25, 50]), rng.randint(2, 9)
    s = _Steps()
    scaled = s.calc("The discount times 100 is", price, "*", percent)
    off = s.calc("The discount is", scaled, "/", 100)
    sale = s.calc("Each one costs", price, "-", off)
    paid = s.calc(f"{name} pays", sale, "*", count)
    return (f"A {item} costs ${price} and is on sale for {percent}% off. {name} buys {count} of them. "
            f"How many dollars does {name} pay?", s.answer(paid))


def _ages(rng: random.Random) -> tuple[str, str]:
    a, b = rng.sample(NAMES, 2)
    age, times, years = rng.randint(2, 20), rng.randint(2, 4), rng.randint(1, 15)
    s = _Steps()
    other = s.calc(f"{b} is", age, "*", times)
    a_later = s.calc(f"In {years} years {a} will be", age, "+", years)
    b_later = s.calc(f"and {b} will be", other, "+", years)
    total = s.calc("Together", a_later, "+", b_later)
    return (f"{a} is {age} years old and {b} is {times} times as old. In {years} years, "
            f"what will the sum of their ages be?", s.answer(total))


TEMPLATES: list[Callable[[random.Random], tuple[str, str]]] = [
    _shopping, _harvest, _sharing, _factory, _discount, _ages]


@register_generator("arithmetic")
class ArithmeticWordProblems:
    """New GSM8K-format problems with computed answers (module docstring)."""

    MAX_TRIES_PER_ROW = 50

    def generate(self, request: SyntheticRequest) -> list[Row]:
        rng = random.Random(request.seed)
        rows: list[Row] = []
        made: set[str] = set()
        for _ in range(request.count * self.MAX_TRIES_PER_ROW):
            if len(rows) == request.count:
                break
            question, answer = rng.choice(TEMPLATES)(rng)
            if question in made or question in request.exclude:
                continue
            made.add(question)
            rows.append({"question": question, "answer": answer})
        return rows


def row_digest(row: Row) -> str:
    """sha256 of the row's canonical JSON (sorted keys, no spaces)."""
    return hashlib.sha256(json.dumps(row, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@register_generator("held_back")
class HeldBackSplit:
    """Rows of ``request.pool`` never given to miners; fewer than asked when the pool runs short."""

    def generate(self, request: SyntheticRequest) -> list[Row]:
        seen = {row_digest(r) for r in request.seen}
        unseen: dict[str, Row] = {}
        for row in request.pool:
            digest = row_digest(row)
            if digest not in seen:
                unseen.setdefault(digest, row)
        digests = sorted(unseen)  # canonical order, so the pool's order does not matter
        picked = random.Random(request.seed).sample(digests, min(request.count, len(digests)))
        return [unseen[d] for d in picked]


ANSWER_COLUMNS = ("output", "answer", "completion")  # trainer.data.sft_example's answer columns


@register_generator("teacher")
class TeacherAnswers:
    """Held-back prompts answered by the teacher model (module docstring)."""

    def generate(self, request: SyntheticRequest) -> list[Row]:
        if request.teacher is None:
            raise ValueError("the teacher generator needs a teacher model: set validator.teacher_model")
        picked = HeldBackSplit().generate(request)
        usable = [r for r in picked if any(c in r for c in ANSWER_COLUMNS)]
        answers = request.teacher(usable) if usable else []
        if len(answers) != len(usable):
            raise ValueError(f"the teacher answered {len(answers)} of {len(usable)} prompts")
        rows = []
        for row, answer in zip(usable, answers, strict=True):
            if answer.strip():
                column = next(c for c in ANSWER_COLUMNS if c in row)
                rows.append({**row, column: answer})
        return rows


def final_answer(answer: str) -> int:
    """The ``#### N`` number of a GSM8K answer."""
    tail = answer.rsplit("####", 1)
    if len(tail) != 2:
        raise ValueError("answer has no '#### N' line")
    return int(tail[1].strip().replace(",", ""))


def questions(rows: Iterable[Row]) -> frozenset[str]:
    """The ``question`` texts of rows, for ``SyntheticRequest.exclude``."""
    return frozenset(str(r["question"]) for r in rows if "question" in r)
