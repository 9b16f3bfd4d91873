"""The typed event catalogue and the bus that carries events.

Each event is a small frozen dataclass declared with ``@event("component.name")``; its fields
and their types are the event's contract. Building one with a missing, unknown or mistyped
field raises ``EventFieldError`` at once (no string-keyed dicts travel on the bus).

Components declare their events in their own module (``p2p/events.py``...) by subclassing
``Event``; ``catalogue()`` lists every registered type. The bus calls subscribers in the
emitting thread; a subscriber that lives on another thread (the Qt bridge) hands the event
over itself. A failing subscriber is logged and never breaks the emitter.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import types
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar, dataclass_transform

log = logging.getLogger("magnet.events")

_REGISTRY: dict[str, type[Event]] = {}
E = TypeVar("E", bound="Event")


class EventFieldError(TypeError):
    """An event was built with a field of the wrong type."""


@dataclass(frozen=True, kw_only=True)
class Event:
    """Base of every event. ``at`` is the wall-clock time it was made."""

    kind: ClassVar[str] = "event"
    at: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if not _matches(value, hints[f.name]):
                raise EventFieldError(
                    f"event {self.kind}: field {f.name!r} must be {hints[f.name]!r}, got {value!r}"
                )

    def fields(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


@dataclass_transform(kw_only_default=True, frozen_default=True)
def event(kind: str) -> Callable[[type[E]], type[E]]:
    """Register an ``Event`` subclass under ``kind`` (``component.what_happened``)."""

    def register(cls: type[E]) -> type[E]:
        if kind in _REGISTRY and _REGISTRY[kind].__qualname__ != cls.__qualname__:
            raise ValueError(f"event kind {kind!r} registered twice")
        cls.kind = kind
        made = dataclass(frozen=True, kw_only=True)(cls)
        _REGISTRY[kind] = made
        return made

    return register


def catalogue() -> dict[str, type[Event]]:
    """Every registered event type by kind."""
    return dict(_REGISTRY)


def _matches(value: Any, hint: Any) -> bool:
    if hint is Any:
        return True
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, a) for a in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if origin in (list, tuple):
        args = typing.get_args(hint)
        if not isinstance(value, origin):
            return False
        if not args or (origin is tuple and len(args) == 2 and args[1] is Ellipsis):
            item = args[0] if args else Any
            return all(_matches(v, item) for v in value)
        if origin is tuple:
            return len(args) == len(value) and all(_matches(v, a) for v, a in zip(value, args, strict=True))
        return all(_matches(v, args[0]) for v in value)
    if origin is dict:
        key_t, val_t = typing.get_args(hint) or (Any, Any)
        return isinstance(value, dict) and all(
            _matches(k, key_t) and _matches(v, val_t) for k, v in value.items()
        )
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True


Subscriber = Callable[[Event], None]


class EventBus:
    """Fan events out to subscribers; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subs: list[tuple[Subscriber, tuple[type[Event], ...] | None]] = []

    def subscribe(
        self, callback: Subscriber, kinds: Iterable[type[Event]] | None = None
    ) -> Callable[[], None]:
        """Call ``callback`` for each event (of ``kinds`` only, if given). Returns an unsubscribe."""
        entry = (callback, tuple(kinds) if kinds is not None else None)
        with self._lock:
            self._subs.append(entry)

        def unsubscribe() -> None:
            with self._lock:
                if entry in self._subs:
                    self._subs.remove(entry)

        return unsubscribe

    def emit(self, ev: Event) -> None:
        with self._lock:
            subs = list(self._subs)
        for callback, kinds in subs:
            if kinds is not None and not isinstance(ev, kinds):
                continue
            try:
                callback(ev)
            except Exception:
                log.exception("event subscriber %r failed on %s", callback, ev.kind)


# --- the node core's own events -----------------------------------------------------------------


@event("node.started")
class NodeStarted(Event):
    """The core is running: data dir locked, store open, every service started."""

    address: str  # the signer's EVM address, "" when the node runs without a wallet
    data_dir: str
    services: tuple[str, ...]


@event("node.service_started")
class ServiceStarted(Event):
    name: str


@event("node.service_failed")
class ServiceFailed(Event):
    """A service raised; the node stops (its error is in ``NodeCore.failure``)."""

    name: str
    error: str


@event("node.stopping")
class NodeStopping(Event):
    reason: str


@event("node.stopped")
class NodeStopped(Event):
    clean: bool  # False when a service or the trio thread missed the stop deadline
