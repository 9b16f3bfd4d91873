"""The vetted registry of GRPO reward functions, chosen by name.

A task names its rewards and their weights (for example {"exact_answer": 1.0, "format": 0.2}); the
functions themselves are built in here and reviewed with the code. Nothing from the network is ever
executed: an unknown name is refused. Every reward is a pure function of the completion text and the
example's reference answer, so miner and validator compute the same numbers.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

RewardFn = Callable[[str, str | None], float]

# GSM8K references end with "#### <number>"; the number may carry commas, a sign, a decimal part.
_MARKED_ANSWER = re.compile(r"####\s*(-?[\d,]*\.?\d+)")
_NUMBER = re.compile(r"-?\d[\d,]*\.?\d*|-?\.\d+")
MAX_COMPLETION_CHARS = 400  # beyond this the length penalty starts
# The rewards of a grpo task that names none (an announcement whose params_json has no "rewards").
DEFAULT_REWARDS = "exact_answer:1.0,format:0.2"
# A grpo task may fix the completion length it is judged (and so trained) at, within these bounds:
# below 8 tokens no reasoning fits, above 1024 one evaluation of a few rows takes minutes on a CPU.
MIN_COMPLETION_TOKENS, MAX_COMPLETION_TOKENS = 8, 1024


@dataclass(frozen=True)
class Reward:
    """One built-in reward: its function, range and what it is for."""

    name: str
    fn: RewardFn
    low: float
    high: float
    help: str


_REWARDS: dict[str, Reward] = {}


def _register(name: str, low: float, high: float, help: str) -> Callable[[RewardFn], RewardFn]:
    def wrap(fn: RewardFn) -> RewardFn:
        _REWARDS[name] = Reward(name, fn, low, high, help)
        return fn

    return wrap


def normalise_number(text: str) -> str | None:
    """'1,234.50' -> '1234.5'; '$7' is not a number here (callers strip units first); None if not numeric."""
    cleaned = text.replace(",", "").strip().rstrip(".")
    try:
        value = float(cleaned)
    except ValueError:
        return None
    return str(int(value)) if value.is_integer() else repr(value)


def extract_answer(text: str) -> str | None:
    """The answer a completion gives: the number after the last '####', else its last number."""
    marked = _MARKED_ANSWER.findall(text)
    candidates = marked or _NUMBER.findall(text.replace("$", ""))
    for candidate in reversed(candidates):
        number = normalise_number(candidate)
        if number is not None:
            return number
    return None


@_register("exact_answer", 0.0, 1.0, "1 when the completion's final number equals the reference answer")
def exact_answer(completion: str, reference: str | None) -> float:
    if reference is None:
        return 0.0
    expected = extract_answer(reference)
    return float(expected is not None and extract_answer(completion) == expected)


@_register("format", 0.0, 1.0, "1 when the completion ends its reasoning with a '#### <number>' line")
def answer_format(completion: str, reference: str | None) -> float:
    return float(_MARKED_ANSWER.search(completion) is not None)


@_register("numeric_answer", 0.0, 1.0, "1 when the completion states any number at all (shaping reward)")
def numeric_answer(completion: str, reference: str | None) -> float:
    return float(extract_answer(completion) is not None)


@_register("length_penalty", -1.0, 0.0, f"0 up to {MAX_COMPLETION_CHARS} chars, falling to -1 at twice that")
def length_penalty(completion: str, reference: str | None) -> float:
    excess = max(0, len(completion) - MAX_COMPLETION_CHARS)
    return -min(1.0, excess / MAX_COMPLETION_CHARS)


@_register("no_repetition", 0.0, 1.0, "share of distinct word 3-grams: penalises degenerate loops")
def no_repetition(completion: str, reference: str | None) -> float:
    words = completion.split()
    grams = [tuple(words[i : i + 3]) for i in range(len(words) - 2)]
    if not grams:
        return 1.0
    return len(set(grams)) / len(grams)


class UnknownReward(ValueError):
    """A task named a reward that is not in the built-in registry."""


def reward_names() -> list[str]:
    return sorted(_REWARDS)


def get_reward(name: str) -> Reward:
    try:
        return _REWARDS[name]
    except KeyError:
        raise UnknownReward(f"unknown reward {name!r}; built-in rewards: {reward_names()}") from None


def check_reward_spec(spec: Mapping[str, float]) -> dict[str, float]:
    """Validate {name: weight}: known names, finite weights, not empty. Returns a plain copy."""
    if not spec:
        raise UnknownReward(f"no reward named; pick from {reward_names()}")
    checked: dict[str, float] = {}
    for name, weight in spec.items():
        get_reward(name)
        value = float(weight)
        if value != value or abs(value) == float("inf"):
            raise UnknownReward(f"reward {name!r} has a non-finite weight {weight!r}")
        checked[name] = value
    return checked


def parse_reward_spec(spec: str | Mapping[str, float]) -> dict[str, float]:
    """'exact_answer:1.0,format:0.2' (or a mapping) -> checked {name: weight}; UnknownReward when bad."""
    if isinstance(spec, Mapping):
        return check_reward_spec(spec)
    if not isinstance(spec, str):
        raise UnknownReward(f"a rewards spec must be a string like 'exact_answer:1.0', got {spec!r}")
    try:
        pairs = [part.split(":") for part in spec.split(",") if part.strip()]
        return check_reward_spec({p[0].strip(): float(p[1]) if len(p) > 1 else 1.0 for p in pairs})
    except (IndexError, ValueError) as exc:
        if isinstance(exc, UnknownReward):
            raise
        raise UnknownReward(f"bad rewards spec {spec!r} (write 'name:weight,...'): {exc}") from None


def canonical_reward_spec(spec: str | Mapping[str, float]) -> str:
    """The checked spec in its one written form, 'name:weight,...' (UnknownReward when bad)."""
    return ",".join(f"{name}:{weight!r}" for name, weight in parse_reward_spec(spec).items())


def grpo_rewards(kind: str, hparams: Mapping[str, Any]) -> str | None:
    """The reward spec a train job's hparams name, as EvalJob.rewards wants it (None unless grpo)."""
    if kind != "grpo" or hparams.get("rewards") is None:
        return None
    return canonical_reward_spec(hparams["rewards"])


class BadCompletionLength(ValueError):
    """A task's max_new_tokens is not a whole number of tokens within the bounds."""


def check_max_new_tokens(value: Any) -> int:
    """A grpo task's completion length in tokens: an integer in [MIN_COMPLETION_TOKENS,
    MAX_COMPLETION_TOKENS] (a whole float such as 24.0 is accepted); BadCompletionLength otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | float) or float(value) != int(value):
        raise BadCompletionLength(f"max_new_tokens must be a whole number of tokens, got {value!r}")
    tokens = int(value)
    if not MIN_COMPLETION_TOKENS <= tokens <= MAX_COMPLETION_TOKENS:
        raise BadCompletionLength(
            f"max_new_tokens must be between {MIN_COMPLETION_TOKENS} and {MAX_COMPLETION_TOKENS} "
            f"tokens, got {tokens}"
        )
    return tokens


def grpo_eval_length(kind: str, hparams: Mapping[str, Any]) -> int | None:
    """The completion length a grpo train job's hparams name, as EvalJob.max_new_tokens wants it:
    a job trains at its task's length (the miner puts it in the hparams), so its own validation
    samples at that length too. None unless grpo with max_new_tokens set."""
    if kind != "grpo" or hparams.get("max_new_tokens") is None:
        return None
    return int(hparams["max_new_tokens"])


def reward_ceiling(spec: Mapping[str, float]) -> float:
    """The highest combined reward the spec allows (each reward at the end of its range that its
    weight favours). `ceiling - mean reward` is a shortfall >= 0: what GRPO evaluation reports as its
    loss, so that it ranks like every other kind's loss (lower is better) and fits the receipt's
    unsigned fixed-point loss fields."""
    total = 0.0
    for name, weight in check_reward_spec(spec).items():
        r = get_reward(name)
        total += weight * (r.high if weight >= 0 else r.low)
    return total


def combined_reward(spec: Mapping[str, float]) -> RewardFn:
    """One function giving the weighted sum of the named rewards."""
    parts = [(get_reward(name).fn, weight) for name, weight in check_reward_spec(spec).items()]

    def total(completion: str, reference: str | None) -> float:
        return sum(weight * fn(completion, reference) for fn, weight in parts)

    return total
