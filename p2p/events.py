"""Typed events of the p2p layer (see node.events): connections, bindings, rejections, bans, blobs.

Each class also carries ``@typed_fields`` under ``@event``: a no-op at runtime that mypy reads as
``@dataclass``, so that it sees the fields (``event`` makes the dataclass at runtime).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from node.events import Event, event

T = TypeVar("T")

if TYPE_CHECKING:
    from dataclasses import dataclass as typed_fields
else:

    def typed_fields(**_options: Any) -> Callable[[T], T]:
        """What mypy sees as @dataclass; at runtime ``event`` makes the dataclass itself."""
        return lambda cls: cls



@event("p2p.started")
@typed_fields(frozen=True, kw_only=True)
class HostStarted(Event):
    peer_id: str
    addrs: list[str]


@event("p2p.peer_connected")
@typed_fields(frozen=True, kw_only=True)
class PeerConnected(Event):
    peer_id: str


@event("p2p.peer_disconnected")
@typed_fields(frozen=True, kw_only=True)
class PeerDisconnected(Event):
    peer_id: str


@event("p2p.connection_refused")
@typed_fields(frozen=True, kw_only=True)
class ConnectionRefused(Event):
    """An inbound connection failed the security handshake (no Noise, or a broken handshake)."""

    remote: str
    reason: str
    count: int


@event("p2p.peer_bound")
@typed_fields(frozen=True, kw_only=True)
class PeerBound(Event):
    """A signed Identity bound ``peer_id`` to an EVM ``address``."""

    peer_id: str
    address: str
    roles: list[str]


@event("p2p.message_received")
@typed_fields(frozen=True, kw_only=True)
class MessageReceived(Event):
    """A gossip message passed every check and reached the application."""

    topic: str
    message_type: str
    sender: str
    origin_peer: str


@event("p2p.message_rejected")
@typed_fields(frozen=True, kw_only=True)
class MessageRejected(Event):
    """A message from ``peer_id`` (the peer that handed it to us) failed a check."""

    peer_id: str
    topic: str
    reason: str
    rejections: int


@event("p2p.peer_banned")
@typed_fields(frozen=True, kw_only=True)
class PeerBanned(Event):
    peer_id: str
    reason: str
    seconds: float


@event("p2p.peer_unbanned")
@typed_fields(frozen=True, kw_only=True)
class PeerUnbanned(Event):
    peer_id: str


@event("p2p.publish_throttled")
@typed_fields(frozen=True, kw_only=True)
class PublishThrottled(Event):
    """Our own publish waited for the rate limiter (the network never pushes back)."""

    topic: str
    waited: float


@event("p2p.bootstrap_failed")
@typed_fields(frozen=True, kw_only=True)
class BootstrapFailed(Event):
    addr: str
    error: str
    retry_in: float


@event("p2p.blob_completed")
@typed_fields(frozen=True, kw_only=True)
class BlobCompleted(Event):
    blob_hash: str
    size: int
    providers_tried: int
    seconds: float


@event("p2p.blob_failed")
@typed_fields(frozen=True, kw_only=True)
class BlobFailed(Event):
    blob_hash: str
    peer_id: str
    reason: str


@event("p2p.blob_pushed")
@typed_fields(frozen=True, kw_only=True)
class BlobReceivedByPush(Event):
    """A private blob pushed by its owner was accepted and verified."""

    blob_hash: str
    peer_id: str
    size: int
