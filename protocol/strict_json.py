"""Strict, crash-proof JSON parsing of untrusted bytes.

Why not plain ``json.loads``: importing ``eth_account`` (through py_ecc) raises the interpreter's
recursion limit from 1,000 to 100,000, so the C JSON scanner recurses on ``[[[[...`` until the C stack
overflows and the whole process dies with SIGSEGV (measured here: 200,000 brackets, exit code 139).
We therefore bound the nesting depth before parsing, with regex passes that run in C.
We also refuse duplicate keys (two parsers could disagree on which one wins), floats, NaN and Infinity
(EIP-712 has no floats; amounts are fixed point).
"""

from __future__ import annotations

import json
import re
from typing import Any

from protocol.errors import DecodeError, ProtocolError

MAX_DEPTH = 16

_ESCAPE = re.compile(r"\\.", re.DOTALL)
_STRING = re.compile(r'"[^"]*"')
_NOT_BRACKET = re.compile(r"[^\[\]{}]")
_INNERMOST_PAIR = re.compile(r"\[\]|\{\}")


def nesting_within(text: str, max_depth: int) -> bool:
    """True when the brackets of ``text`` are balanced and nest at most ``max_depth`` deep.

    Escapes are dropped first (so ``\\"`` cannot end a string), then strings, then everything but
    brackets; each pass then removes the innermost ``[]`` / ``{}`` pairs, one nesting level per pass.
    """
    skeleton = _NOT_BRACKET.sub("", _STRING.sub("", _ESCAPE.sub("", text)))
    for _ in range(max_depth):
        if not skeleton:
            return True
        skeleton = _INNERMOST_PAIR.sub("", skeleton)
    return not skeleton


def loads(
    data: bytes | str,
    what: str,
    error: type[ProtocolError] = DecodeError,
    max_depth: int = MAX_DEPTH,
    floats: bool = False,
) -> Any:
    """Parse UTF-8 JSON strictly; any problem raises ``error`` with a message naming ``what``.

    ``floats=True`` admits finite floats (documents that are not signed messages: losses in worker
    events, adapter configs, JSON-RPC bodies); NaN and Infinity are refused either way.
    """
    if isinstance(data, str):
        text = data
    else:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise error(f"{what} is not valid UTF-8") from None
    if not nesting_within(text, max_depth):
        raise error(f"{what} is not valid JSON or nests deeper than {max_depth} levels")

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        obj = dict(pairs)
        if len(obj) != len(pairs):
            raise error(f"{what} has a JSON object with duplicate keys")
        return obj

    def no_float(token: str) -> Any:
        raise error(f"{what}: JSON numbers must be integers (got {token[:20]}); use fixed point")

    try:
        return json.loads(
            text,
            object_pairs_hook=no_duplicates,
            parse_float=float if floats else no_float,
            parse_constant=no_float,
        )
    except ProtocolError:
        raise
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, and int digit limits
        raise error(f"{what} is not valid JSON: {str(exc)[:80]}") from None
