"""The nesting bound that keeps json's C scanner from overflowing the stack, checked exactly."""

from __future__ import annotations

import json
import sys
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.errors import BundleError, DecodeError
from protocol.strict_json import loads, nesting_within


def _depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    return 0


_tricky_text = st.text(alphabet='[]{}"\\,:ab \n\u00e9', max_size=12)
_values = st.recursive(
    st.none() | st.booleans() | st.integers() | _tricky_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_tricky_text, inner, max_size=3),
    max_leaves=30,
)


@settings(max_examples=400, deadline=None)
@given(value=_values, limit=st.integers(0, 8), ascii_only=st.booleans())
def test_nesting_bound_is_exact_for_any_json(value: Any, limit: int, ascii_only: bool) -> None:
    text = json.dumps(value, ensure_ascii=ascii_only)
    assert nesting_within(text, limit) == (_depth(value) <= limit)


def test_brackets_inside_strings_and_escapes_do_not_count() -> None:
    assert nesting_within(json.dumps({"a": "[[[[{{{{", "b": '\\"[[[['}), 1)
    assert nesting_within('["\\\\", [1]]', 2)
    assert not nesting_within('["\\\\", [1]]', 1)
    assert not nesting_within("[1, 2", 16)  # unbalanced is refused too


def test_deep_input_is_refused_without_crashing_even_with_a_raised_recursion_limit() -> None:
    # Reproduce what importing eth_account does (limit 100,000): plain json.loads would now segfault.
    saved = sys.getrecursionlimit()
    sys.setrecursionlimit(max(saved, 100_000))
    try:
        with pytest.raises(DecodeError, match="nests deeper than 16"):
            loads(b"[" * 300_000 + b"]" * 300_000, "message")
        with pytest.raises(BundleError, match="nests deeper than 16"):
            loads(b'{"a":' * 300_000 + b"1" + b"}" * 300_000, "manifest", BundleError)
    finally:
        sys.setrecursionlimit(saved)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b'{"a":1,"a":1}', "duplicate keys"),
        (b"[1.5]", "integers"),
        (b"[1e3]", "integers"),
        (b"[Infinity]", "integers"),
        (b"[-NaN]", "not valid JSON"),
        (b"\xc3\x28", "not valid UTF-8"),
        (b"[1] [2]", "not valid JSON"),
    ],
)
def test_strict_rules(data: bytes, match: str) -> None:
    with pytest.raises(DecodeError, match=match):
        loads(data, "message")


def test_accepts_ordinary_json() -> None:
    assert loads(b'{"a":[1,{"b":"x[]{}\\"y"}],"c":null}', "message") == {
        "a": [1, {"b": 'x[]{}"y'}],
        "c": None,
    }
