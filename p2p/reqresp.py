"""Direct request/response over libp2p streams: ``/magnet/req/<name>/1.0.0``.

One stream per exchange. The requester writes one length-prefixed frame (an encoded protocol
message) and closes its write side; the responder answers with one frame whose first byte is
0 (ok: the rest is the reply) or 1 (refused: the rest is a UTF-8 reason). Every exchange has a
timeout and size caps both ways; each peer gets a token bucket of requests.

Miners sit behind NAT: they open every connection they use (join, reveal push, receipt and
proof pickup). ``request(..., dial=False)`` lets a validator answer or deliver only over a
connection the other side already opened, so nothing depends on dialling a miner.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio
from libp2p.abc import IHost, INetStream
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID

from p2p.config import P2PConfig
from p2p.reputation import PeerRateLimiter
from p2p.wire import StreamReader, WireError, frame

log = logging.getLogger("magnet.p2p.reqresp")

STATUS_OK = 0
STATUS_REFUSED = 1

Handler = Callable[[str, bytes], Awaitable[bytes]]


class RequestRefused(Exception):
    """Raised by a handler to answer with a reason; raised to a requester that got one."""


class RequestFailed(Exception):
    """The exchange failed: no connection, timeout, oversize or malformed reply."""


def protocol_id(name: str) -> TProtocol:
    if not name or not all(c.isalnum() or c in "-_" for c in name):
        raise ValueError(f"request name {name!r}: use letters, digits, '-' or '_'")
    return TProtocol(f"/magnet/req/{name}/1.0.0")


@dataclass
class Route:
    handler: Handler
    max_request: int
    limiter: PeerRateLimiter


class RequestResponse:
    """Registers request handlers on a host and sends requests to peers."""

    def __init__(self, host: IHost, config: P2PConfig,
                 is_banned: Callable[[str], bool] = lambda _peer: False) -> None:
        self.host = host
        self.config = config
        self.is_banned = is_banned
        self.routes: dict[str, Route] = {}

    def register(self, name: str, handler: Handler, max_request: int | None = None,
                 rate: float | None = None, burst: int | None = None) -> None:
        """Serve ``name``: ``handler(peer_id, payload) -> reply`` (raise RequestRefused to refuse).

        Each route has its own per-peer token bucket (``p2p.request_rate`` / ``request_burst``
        unless given), so cheap lookups cannot starve, or be starved by, task requests.
        """
        limiter = PeerRateLimiter(rate or self.config.request_rate, burst or self.config.request_burst)
        route = Route(handler, max_request or self.config.request_max_bytes, limiter)
        self.routes[name] = route

        async def on_stream(stream: INetStream) -> None:
            await self._serve(stream, route)

        self.host.set_stream_handler(protocol_id(name), on_stream)

    async def _serve(self, stream: INetStream, route: Route) -> None:
        peer = stream.muxed_conn.peer_id.to_string()
        try:
            with trio.fail_after(self.config.request_timeout):
                if self.is_banned(peer):
                    raise RequestRefused("banned")
                if not route.limiter.allow(peer):
                    raise RequestRefused("rate limited: slow down")
                payload = await StreamReader(stream).read_frame(route.max_request)
                reply = bytes([STATUS_OK]) + await route.handler(peer, payload)
        except RequestRefused as exc:
            reply = bytes([STATUS_REFUSED]) + str(exc).encode("utf-8")[:1024]
        except (WireError, trio.TooSlowError) as exc:
            log.debug("request from %s failed: %s", peer, exc)
            await stream.reset()
            return
        try:
            await stream.write(frame(reply))
            await stream.close()
        except Exception as exc:
            log.debug("reply to %s not delivered: %s", peer, exc)

    async def request(self, peer_id: ID | str, name: str, payload: bytes, *, dial: bool = True,
                      timeout: float | None = None, max_reply: int | None = None) -> bytes:
        """Send ``payload`` to ``peer_id`` under ``name`` and return the reply bytes."""
        peer = peer_id if isinstance(peer_id, ID) else ID.from_base58(peer_id)
        if len(payload) > self.config.request_max_bytes:
            raise RequestFailed(f"request of {len(payload)} bytes exceeds p2p.request_max_bytes")
        if not dial and not self.host.get_network().get_connections(peer):
            raise RequestFailed(f"no open connection to {peer}; the peer must connect first")
        limit = max_reply or self.config.request_max_bytes
        try:
            with trio.fail_after(timeout or self.config.request_timeout):
                stream = await self.host.new_stream(peer, [protocol_id(name)])
                try:
                    await stream.write(frame(payload))
                    reply = await StreamReader(stream).read_frame(limit + 1)
                finally:
                    await stream.close()
        except trio.TooSlowError as exc:
            raise RequestFailed(f"{name} request to {peer}: no reply within the timeout") from exc
        except WireError as exc:
            raise RequestFailed(f"{name} request to {peer}: {exc}") from exc
        except Exception as exc:
            raise RequestFailed(f"{name} request to {peer} failed: {exc!r}") from exc
        if not reply:
            raise RequestFailed(f"{name} request to {peer}: empty reply")
        if reply[0] == STATUS_REFUSED:
            raise RequestRefused(reply[1:].decode("utf-8", "replace"))
        if reply[0] != STATUS_OK:
            raise RequestFailed(f"{name} request to {peer}: unknown status byte {reply[0]}")
        return reply[1:]
