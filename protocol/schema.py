"""Field specifications of wire messages: EIP-712 types, caps, validation and the JSON value form.

A message class declares each field with :func:`wire`, naming its EIP-712 type and caps. From that one
declaration this module derives: the check of a Python value (range, length, checksum, allowed text),
its JSON form on the wire and in ``eth_signTypedData_v4`` (one form for both), the strict parse of that
JSON form, and the EIP-712 ``hashStruct`` encoding.

JSON value form (the same in the wire body and in the typed-data ``message``):
  * ``address``: EIP-55 checksummed ``0x`` + 40 hex digits;
  * ``uintN`` / ``intN``: a decimal string (no sign for zero or positives, no leading zeros), because JSON
    numbers above 2^53 lose precision in JavaScript and every EIP-712 library accepts decimal strings;
  * ``bool``: JSON ``true`` / ``false``;
  * ``bytes32`` / ``bytes``: ``0x`` + lowercase hex;
  * ``string``: a JSON string (UTF-8, no control characters);
  * ``T[]``: a JSON array of the element form.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Any

from eth_abi.abi import encode as abi_encode
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from protocol.errors import FieldError, OversizeError

DEFAULT_STRING_BYTES = 256
DEFAULT_BYTES_LEN = 4096
DEFAULT_ARRAY_ITEMS = 32

_ADDRESS_RE = re.compile(r"0x[0-9a-fA-F]{40}\Z")
_INT_TEXT_RE = re.compile(r"(0|-?[1-9][0-9]{0,77})\Z")
_HEX_RE = re.compile(r"0x(?:[0-9a-f]{2})*\Z")
_INT_TYPE_RE = re.compile(r"(u?)int([0-9]{1,3})\Z")
# C0 controls and DEL: a reason string is shown in UIs and written to logs; escape sequences from a
# remote peer must never reach a terminal.
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")

ATOMIC_TYPES = frozenset(
    {"address", "bool", "bytes32", "bytes", "string"}
    | {f"uint{n}" for n in range(8, 257, 8)}
    | {f"int{n}" for n in range(8, 257, 8)}
)


@dataclass(frozen=True)
class FieldSpec:
    """One field of a message: its name, EIP-712 type, caps and meaning."""

    name: str
    eip712: str
    help: str
    max_len: int
    max_items: int
    choices: tuple[str, ...] = ()
    pattern: str = ""

    @cached_property
    def element(self) -> str:
        """The EIP-712 type of one element (the type itself for a non-array field)."""
        return self.eip712[:-2] if self.is_array else self.eip712

    @cached_property
    def is_array(self) -> bool:
        return self.eip712.endswith("[]")


def wire(
    eip712: str,
    help: str,
    *,
    max_len: int | None = None,
    max_items: int = DEFAULT_ARRAY_ITEMS,
    choices: Sequence[str] = (),
    pattern: str = "",
) -> Any:
    """Declare a dataclass field as a wire field of EIP-712 type ``eip712``.

    ``max_len`` caps a string (UTF-8 bytes) or ``bytes`` value (bytes); ``max_items`` caps an array;
    ``choices`` or ``pattern`` (a full-match regex) restrict a string.
    """
    element = eip712[:-2] if eip712.endswith("[]") else eip712
    if element not in ATOMIC_TYPES:
        raise TypeError(f"unsupported EIP-712 field type {eip712!r}")
    if max_len is None:
        max_len = DEFAULT_BYTES_LEN if element == "bytes" else DEFAULT_STRING_BYTES
    meta = {
        "eip712": eip712,
        "help": help,
        "max_len": max_len,
        "max_items": max_items,
        "choices": tuple(choices),
        "pattern": pattern,
    }
    return dataclasses.field(metadata=meta)


def field_specs(cls: type) -> tuple[FieldSpec, ...]:
    """The wire fields of a message dataclass, in declaration (and EIP-712) order."""
    specs = []
    for f in dataclasses.fields(cls):
        m = f.metadata
        if "eip712" not in m:
            raise TypeError(f"{cls.__name__}.{f.name} is not declared with wire()")
        specs.append(
            FieldSpec(
                f.name, m["eip712"], m["help"], m["max_len"], m["max_items"], m["choices"], m["pattern"]
            )
        )
    return tuple(specs)


# ---------------------------------------------------------------------------------------------------
# Checking Python values


def check_value(spec: FieldSpec, value: Any) -> Any:
    """Check ``value`` for ``spec`` and return its normal form (checksummed address, tuple for arrays).

    Raises FieldError (or OversizeError for a length cap) naming the field and what is wrong.
    """
    if not spec.is_array:
        return _check_atomic(spec, spec.eip712, value)
    if not isinstance(value, (list, tuple)):
        raise FieldError(
            f"field {spec.name!r}: expected a list of {spec.element}, got {type(value).__name__}"
        )
    if len(value) > spec.max_items:
        raise OversizeError(f"field {spec.name!r}: {len(value)} items, at most {spec.max_items} allowed")
    return tuple(_check_atomic(spec, spec.element, item) for item in value)


def _check_atomic(spec: FieldSpec, type_: str, value: Any) -> Any:
    if type_ == "address":
        return check_address(value, spec.name)
    if type_ == "bool":
        if not isinstance(value, bool):
            raise FieldError(f"field {spec.name!r}: expected a bool, got {type(value).__name__}")
        return value
    if type_ == "bytes32":
        if not isinstance(value, bytes) or len(value) != 32:
            raise FieldError(f"field {spec.name!r}: expected exactly 32 bytes, got {_describe(value)}")
        return value
    if type_ == "bytes":
        if not isinstance(value, bytes):
            raise FieldError(f"field {spec.name!r}: expected bytes, got {type(value).__name__}")
        if len(value) > spec.max_len:
            raise OversizeError(f"field {spec.name!r}: {len(value)} bytes, at most {spec.max_len} allowed")
        return value
    if type_ == "string":
        return _check_string(spec, value)
    return _check_int(spec, type_, value)


def check_address(value: Any, name: str = "address") -> str:
    """Return the EIP-55 checksummed form of an address; reject a mixed-case one with a wrong checksum."""
    if not isinstance(value, str) or not _ADDRESS_RE.match(value):
        raise FieldError(
            f"field {name!r}: expected an 0x-prefixed 20-byte hex address, got {_describe(value)}"
        )
    checksummed = _checksummed(value.lower())
    digits = value[2:]
    if value != checksummed and digits not in (digits.lower(), digits.upper()):
        raise FieldError(f"field {name!r}: address {value} has a wrong EIP-55 checksum (typo?)")
    return checksummed


@lru_cache(maxsize=8192)
def _checksummed(lower: str) -> str:
    """EIP-55 form of a lowercase address; cached, as a network sees the same few addresses often."""
    return str(to_checksum_address(lower))


def _check_string(spec: FieldSpec, value: Any) -> str:
    if not isinstance(value, str):
        raise FieldError(f"field {spec.name!r}: expected a string, got {type(value).__name__}")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise FieldError(f"field {spec.name!r}: string is not valid Unicode (lone surrogate)") from None
    if size > spec.max_len:
        raise OversizeError(f"field {spec.name!r}: {size} UTF-8 bytes, at most {spec.max_len} allowed")
    if _CONTROL_RE.search(value):
        raise FieldError(f"field {spec.name!r}: control characters are not allowed in strings")
    if spec.choices and value not in spec.choices:
        raise FieldError(f"field {spec.name!r}: {value[:40]!r} is not one of {', '.join(spec.choices)}")
    if spec.pattern and not re.fullmatch(spec.pattern, value):
        raise FieldError(f"field {spec.name!r}: {value[:40]!r} does not match {spec.pattern}")
    return value


def _check_int(spec: FieldSpec, type_: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise FieldError(f"field {spec.name!r}: expected an integer ({type_}), got {type(value).__name__}")
    low, high = int_bounds(type_)
    if not low <= value <= high:
        raise FieldError(f"field {spec.name!r}: {value} is out of range for {type_} [{low}, {high}]")
    return value


@lru_cache(maxsize=128)
def int_bounds(type_: str) -> tuple[int, int]:
    """Inclusive bounds of an EIP-712 ``uintN`` / ``intN`` type."""
    m = _INT_TYPE_RE.match(type_)
    if not m:
        raise TypeError(f"not an integer type: {type_}")
    bits = int(m.group(2))
    if m.group(1):
        return 0, 2**bits - 1
    return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1


def _describe(value: Any) -> str:
    if isinstance(value, (bytes, str)):
        return f"{type(value).__name__} of length {len(value)}"
    return type(value).__name__


# ---------------------------------------------------------------------------------------------------
# JSON value form


def to_json_value(spec: FieldSpec, value: Any) -> Any:
    """The JSON form of an already checked value (see the module docstring)."""
    if spec.is_array:
        return [_atomic_to_json(spec.element, v) for v in value]
    return _atomic_to_json(spec.eip712, value)


def _atomic_to_json(type_: str, value: Any) -> Any:
    if type_ in ("bytes32", "bytes"):
        return "0x" + value.hex()
    if type_.startswith(("uint", "int")):
        return str(value)
    return value  # address (already checksummed), bool, string


def from_json_value(spec: FieldSpec, raw: Any) -> Any:
    """Parse the JSON form strictly; the result still goes through :func:`check_value`."""
    if spec.is_array:
        if not isinstance(raw, list):
            raise FieldError(f"field {spec.name!r}: expected a JSON array, got {type(raw).__name__}")
        if len(raw) > spec.max_items:
            raise OversizeError(f"field {spec.name!r}: {len(raw)} items, at most {spec.max_items} allowed")
        return [_atomic_from_json(spec, spec.element, item) for item in raw]
    return _atomic_from_json(spec, spec.eip712, raw)


def _atomic_from_json(spec: FieldSpec, type_: str, raw: Any) -> Any:
    if type_ in ("bytes32", "bytes"):
        if not isinstance(raw, str):
            raise FieldError(f"field {spec.name!r}: expected a 0x-hex string, got {type(raw).__name__}")
        if len(raw) > 2 + 2 * max(spec.max_len, 32):
            raise OversizeError(f"field {spec.name!r}: hex string of {len(raw)} characters is too long")
        if not _HEX_RE.match(raw):
            raise FieldError(f"field {spec.name!r}: expected 0x followed by lowercase hex byte pairs")
        return bytes.fromhex(raw[2:])
    if type_.startswith(("uint", "int")):
        if not isinstance(raw, str) or not _INT_TEXT_RE.match(raw):
            raise FieldError(f"field {spec.name!r}: expected a canonical decimal string for {type_}")
        return int(raw)
    return raw  # address, bool and string are checked by check_value


# ---------------------------------------------------------------------------------------------------
# EIP-712 hashStruct


def type_string(type_name: str, specs: Sequence[FieldSpec]) -> str:
    """The EIP-712 ``encodeType`` string, e.g. ``Commitment(bytes32 task_id,address miner,...)``."""
    return f"{type_name}({','.join(f'{s.eip712} {s.name}' for s in specs)})"


def hash_struct(type_name: str, specs: Sequence[FieldSpec], values: Sequence[Any]) -> bytes:
    """EIP-712 ``hashStruct`` of a flat struct: keccak256(typeHash || encodeData)."""
    abi_types = ["bytes32"]
    abi_values: list[Any] = [keccak(text=type_string(type_name, specs))]
    for spec, value in zip(specs, values, strict=True):
        if spec.is_array:
            abi_types.append("bytes32")
            abi_values.append(keccak(b"".join(_encode_element(spec.element, v) for v in value)))
        elif spec.eip712 in ("bytes", "string"):
            abi_types.append("bytes32")
            abi_values.append(_encode_element(spec.eip712, value))
        else:
            abi_types.append(spec.eip712)
            abi_values.append(value)
    return bytes(keccak(abi_encode(abi_types, abi_values)))


def _encode_element(type_: str, value: Any) -> bytes:
    """The 32-byte ``encodeData`` word of one atomic value."""
    if type_ == "string":
        return bytes(keccak(value.encode("utf-8")))
    if type_ == "bytes":
        return bytes(keccak(value))
    return bytes(abi_encode([type_], [value]))
