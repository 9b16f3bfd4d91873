"""The base of every wire message and the registry of every (type, version) ever released.

A message is a frozen dataclass whose fields are declared with :func:`protocol.schema.wire`. Building
one checks every field (so an invalid message cannot exist in memory) and then its cross-field rules
(:meth:`Message.check`). Registration with :func:`register` makes it decodable; a released
(type, version) is never removed or changed, so old messages and stored receipts stay readable.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Self, TypeVar

from protocol.errors import FieldError, UnknownMessageType
from protocol.schema import FieldSpec, check_value, field_specs, from_json_value, hash_struct, to_json_value


class Message:
    """A wire message: a frozen dataclass with EIP-712 typed fields.

    Subclasses set ``TYPE`` (the EIP-712 primary type name), ``VERSION`` and ``SIGNER_FIELD`` (the field
    holding the address that must have signed it), and may override :meth:`check`.
    """

    TYPE: ClassVar[str]
    VERSION: ClassVar[int]
    SIGNER_FIELD: ClassVar[str]
    FIELDS: ClassVar[tuple[FieldSpec, ...]] = ()

    def __post_init__(self) -> None:
        if "FIELDS" not in type(self).__dict__:
            raise TypeError(f"{type(self).__name__} is not registered: decorate it with @register")
        for spec in self.FIELDS:
            normal = check_value(spec, getattr(self, spec.name))
            # frozen dataclass: normalising (checksummed address, tuple for arrays) needs object.__setattr__
            object.__setattr__(self, spec.name, normal)
        self.check()

    def check(self) -> None:
        """Cross-field rules; raise FieldError with a clear message. The default has none."""

    @property
    def signer_address(self) -> str:
        """The address this message claims to be signed by."""
        value = getattr(self, self.SIGNER_FIELD)
        assert isinstance(value, str)
        return value

    def to_json(self) -> dict[str, Any]:
        """The message body as JSON values: the wire ``body`` and the typed-data ``message``."""
        return {spec.name: to_json_value(spec, getattr(self, spec.name)) for spec in self.FIELDS}

    @classmethod
    def from_json(cls, body: Any) -> Self:
        """Parse a body strictly: a JSON object with exactly this type's fields, every value checked."""
        if not isinstance(body, dict):
            raise FieldError(
                f"{cls.TYPE} v{cls.VERSION}: body must be a JSON object, got {type(body).__name__}"
            )
        expected = {spec.name for spec in cls.FIELDS}
        if set(body) != expected:
            missing = sorted(expected - set(body))
            extra = sorted(str(k)[:40] for k in set(body) - expected)
            raise FieldError(f"{cls.TYPE} v{cls.VERSION}: missing fields {missing}, unknown fields {extra}")
        values = {spec.name: from_json_value(spec, body[spec.name]) for spec in cls.FIELDS}
        return cls(**values)

    @classmethod
    def eip712_fields(cls) -> list[dict[str, str]]:
        """The type's member list as in ``eth_signTypedData_v4`` ``types``."""
        return [{"name": spec.name, "type": spec.eip712} for spec in cls.FIELDS]

    def struct_hash(self) -> bytes:
        """EIP-712 ``hashStruct(message)``; independent of the signing domain."""
        return hash_struct(self.TYPE, self.FIELDS, [getattr(self, s.name) for s in self.FIELDS])


_REGISTRY: dict[tuple[str, int], type[Message]] = {}

M = TypeVar("M", bound=type[Message])


def register(cls: M) -> M:
    """Class decorator: make a message dataclass decodable and freeze its field list."""
    key = (cls.TYPE, cls.VERSION)
    if key in _REGISTRY:
        raise TypeError(f"message {cls.TYPE} v{cls.VERSION} is already registered")
    specs = field_specs(cls)
    names = {s.name for s in specs}
    if (
        cls.SIGNER_FIELD not in names
        or next(s for s in specs if s.name == cls.SIGNER_FIELD).eip712 != "address"
    ):
        raise TypeError(f"{cls.__name__}.SIGNER_FIELD must name an address field")
    if "issued_at" not in names:
        raise TypeError(f"{cls.__name__} must carry issued_at so stale messages can be rejected")
    cls.FIELDS = specs
    _REGISTRY[key] = cls
    return cls


def lookup(type_name: Any, version: Any) -> type[Message]:
    """The class of a released (type, version); UnknownMessageType otherwise."""
    cls = _REGISTRY.get((type_name, version)) if isinstance(type_name, str) and _is_int(version) else None
    if cls is None:
        raise UnknownMessageType(
            f"unknown message type {str(type_name)[:40]!r} version {str(version)[:10]}: "
            "this node may be too old for it; upgrade MAGNET"
        )
    return cls


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def registry() -> Mapping[tuple[str, int], type[Message]]:
    """Every released (type, version) and its class (read-only view)."""
    return dict(_REGISTRY)


def latest(type_name: str) -> type[Message]:
    """The newest registered version of a type."""
    versions = [v for (t, v) in _REGISTRY if t == type_name]
    if not versions:
        raise UnknownMessageType(f"unknown message type {type_name!r}")
    return _REGISTRY[(type_name, max(versions))]


def rule(condition: bool, message: Callable[[], str] | str) -> None:
    """Raise FieldError(message) unless ``condition``; for cross-field rules in :meth:`Message.check`."""
    if not condition:
        raise FieldError(message() if callable(message) else message)
