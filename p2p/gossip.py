"""Typed gossip over GossipSub: publish signed protocol messages, receive only checked ones.

GossipSub is set up deliberately (see ../shared/NOTES.md): a 1 s heartbeat instead of 120 s,
``/meshsub/1.1.0`` only (v1.2's IDONTWANT for every message cost ~40 % more CPU here), spam
protection at a stated per-peer, per-topic rate, and libp2p message signing on, so the peer
id a message originated from is authentic and can be checked against its EIP-712 signer.

Every incoming message goes through ``MessageChecker`` in the topic validator; a rejection is
counted against the peer that handed it to us (the only peer we can blame), and a peer past the
threshold is disconnected and banned. Invalid messages are never relayed, so they die at the
first hop. ``publish()`` paces our own sends: py-libp2p never pushes back.
"""

from __future__ import annotations

import inspect
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

import trio
from libp2p.abc import IHost
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID
from libp2p.pubsub.gossipsub import GossipSub
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import Pubsub

from node.events import EventBus
from p2p.config import P2PConfig
from p2p.events import MessageReceived, MessageRejected, PeerBound, PublishThrottled
from p2p.peerbook import PeerBook, role_names
from p2p.reputation import Reputation, TokenBucket
from p2p.reqresp import RequestFailed, RequestRefused, RequestResponse
from p2p.validation import (
    TOPIC_PREFIX,
    TOPIC_TYPES,
    Accept,
    LruCache,
    MessageChecker,
    NeedIdentity,
    Reject,
    topic_for,
)
from protocol.base import Message
from protocol.encoding import encode
from protocol.errors import ProtocolError
from protocol.messages import Heartbeat, Identity
from protocol.signing import SignedMessage

log = logging.getLogger("magnet.p2p.gossip")

IDENTITY_REQUEST = "identity"
IDENTITY_FETCH_DEADLINE = 5.0  # seconds a background Identity request may take
ALL_TOPICS = frozenset(TOPIC_PREFIX + name for name in TOPIC_TYPES)

Handler = Callable[[Accept, str], Awaitable[None] | None]


class PublishRejected(ValueError):
    """Our own message failed the checks every peer would apply: it was not sent."""


def build_router(config: P2PConfig) -> GossipSub:
    return GossipSub(
        protocols=[TProtocol(p) for p in config.gossip_protocols],
        degree=config.gossip_degree,
        degree_low=config.gossip_degree_low,
        degree_high=config.gossip_degree_high,
        heartbeat_interval=config.gossip_heartbeat,  # type: ignore[arg-type]  # float works (trio.sleep)
        heartbeat_initial_delay=0.1,
        spam_protection_enabled=True,
        max_messages_per_topic_per_second=config.gossip_max_per_topic_per_second,
    )


class Gossip:
    """The gossip layer of one node."""

    def __init__(self, host: IHost, config: P2PConfig, checker: MessageChecker, peerbook: PeerBook,
                 reputation: Reputation, reqresp: RequestResponse, bus: EventBus) -> None:
        self.host = host
        self.config = config
        self.checker = checker
        self.peerbook = peerbook
        self.reputation = reputation
        self.reqresp = reqresp
        self.bus = bus
        self.router = build_router(config)
        self.pubsub = Pubsub(host, self.router, strict_signing=True,
                             max_inbound_rpc_size=4 * config.max_message_bytes + 65536,
                             allowed_topics=ALL_TOPICS)
        self.my_id = host.get_id()
        self.handlers: dict[str, list[Handler]] = defaultdict(list)
        self.publish_bucket = TokenBucket(config.publish_rate, config.publish_burst)
        self.own_identity: bytes | None = None
        self._local_seq = 0
        self._fetching: dict[str, trio.Event] = {}
        self._nursery: trio.Nursery | None = None
        self.received = 0
        self.rejected_by_reason: dict[str, int] = {}  # every refused message, by reason
        self._delivered = LruCache(8192)  # gossip keys already handed to the application
        # A node joining a busy network may ask one relay for many identities at once.
        reqresp.register(IDENTITY_REQUEST, self._serve_identity, max_request=256, rate=50.0, burst=200)

    # --- application API ------------------------------------------------------------------------
    def on(self, message_type: type[Message], handler: Handler) -> None:
        """Call ``handler(accepted, origin_peer_id)`` for each checked message of ``message_type``."""
        self.handlers[message_type.TYPE].append(handler)

    async def subscribe_all(self, nursery: trio.Nursery) -> None:
        """Join every MAGNET topic and start delivering to handlers."""
        self._nursery = nursery
        for name in TOPIC_TYPES:
            full = TOPIC_PREFIX + name
            self.pubsub.set_topic_validator(full, self._validate, is_async_validator=True)
            subscription = await self.pubsub.subscribe(full)
            nursery.start_soon(self._deliver, full, subscription)

    async def publish(self, signed: SignedMessage) -> None:
        """Check ``signed`` as peers will, wait for the send budget, and gossip it."""
        data = encode(signed)
        full = topic_for(signed)
        self._local_seq += 1
        verdict = self.checker.check(data, full, self.my_id.to_string(), b"local:%d" % self._local_seq)
        if isinstance(verdict, Reject):
            raise PublishRejected(f"{signed.message.TYPE} would be rejected by peers: {verdict.reason}")
        if isinstance(verdict, NeedIdentity):
            raise PublishRejected("set our own Identity (set_identity) before publishing")
        wait = self.publish_bucket.wait_time()
        if wait > 0:
            self.bus.emit(PublishThrottled(topic=full, waited=wait))
            await trio.sleep(wait)
        self.publish_bucket.try_take()
        await self.pubsub.publish(full, data)

    def set_identity(self, signed: SignedMessage) -> None:
        """Our own signed Identity: bound locally and served to peers that ask for it."""
        msg = signed.message
        if not isinstance(msg, Identity) or msg.peer_id != self.my_id.to_string():
            raise ValueError("our Identity must name this host's peer id")
        self.own_identity = encode(signed)
        self.peerbook.bind(msg, self.own_identity)

    def close(self) -> None:
        """Stop the thread py-libp2p's seen-message cache starts per Pubsub (nothing else does)."""
        self.pubsub.seen_messages.stop()

    # --- validation -----------------------------------------------------------------------------
    async def _validate(self, forwarder: ID, msg: rpc_pb2.Message) -> bool:
        if forwarder == self.my_id:
            return True  # checked in publish() already
        full = msg.topicIDs[0] if len(msg.topicIDs) == 1 else ""
        origin = ID(msg.from_id).to_string()
        key = bytes(msg.from_id) + bytes(msg.seqno)
        verdict = self.checker.check(bytes(msg.data), full, origin, key)
        if isinstance(verdict, NeedIdentity):
            await self._fetch_identity(verdict.peer_id, forwarder)
            verdict = self.checker.check(bytes(msg.data), full, origin, key)
            if isinstance(verdict, NeedIdentity):
                verdict = Reject("unbound", penalise=False)
        if isinstance(verdict, Reject):
            self._reject(forwarder.to_string(), full, verdict)
            return False
        return True

    def _reject(self, peer: str, full_topic: str, verdict: Reject) -> None:
        self.rejected_by_reason[verdict.reason] = self.rejected_by_reason.get(verdict.reason, 0) + 1
        count = (self.reputation.reject(peer, verdict.reason) if verdict.penalise
                 else self.reputation.rejections.get(peer, 0))
        log.info("rejected %s message from %s: %s", full_topic, peer, verdict.reason)
        self.bus.emit(MessageRejected(peer_id=peer, topic=full_topic, reason=verdict.reason,
                                      rejections=count))

    async def _fetch_identity(self, peer_id: str, forwarder: ID) -> None:
        """Have the origin's Identity fetched (from the origin if connected, else the relaying
        peer), waiting at most ``identity_fetch_timeout`` for it.

        The fetch runs in the background with a longer deadline: the validator holds up the
        stream it was reading from, and a peer slow to answer (or itself waiting on us) must not
        stall that stream for long. Later messages of the origin find the binding in place.
        """
        pending = self._fetching.get(peer_id)
        if pending is None and self._nursery is not None:
            pending = self._fetching[peer_id] = trio.Event()
            self._nursery.start_soon(self._fetch_in_background, peer_id, forwarder, pending)
        if pending is not None:
            with trio.move_on_after(self.config.identity_fetch_timeout):
                await pending.wait()

    async def _fetch_in_background(self, peer_id: str, forwarder: ID, done: trio.Event) -> None:
        try:
            origin = ID.from_base58(peer_id)
            sources = [origin, forwarder] if origin != forwarder else [origin]
            for source in sources:
                if await self._fetch_identity_from(source, peer_id, IDENTITY_FETCH_DEADLINE):
                    return
        finally:
            done.set()
            del self._fetching[peer_id]

    async def ask_identity(self, peer: ID) -> None:
        """Learn a neighbour's Identity from itself (a proven binding); retried once shortly after,
        since a connection is reported before its streams can open."""
        for delay in (0.2, 1.0):
            await trio.sleep(delay)
            if self.peerbook.get(peer.to_string()) is not None:
                return
            if await self._fetch_identity_from(peer, peer.to_string()):
                return

    async def _fetch_identity_from(self, source: ID, peer_id: str,
                                   timeout: float = IDENTITY_FETCH_DEADLINE) -> bool:
        try:
            raw = await self.reqresp.request(source, IDENTITY_REQUEST, peer_id.encode(), dial=False,
                                             timeout=timeout)
            identity = self.checker.check_identity(raw, peer_id)
        except (RequestFailed, RequestRefused, ProtocolError) as exc:
            log.debug("identity of %s not obtained from %s: %s", peer_id, source, exc)
            return False
        # Only the peer itself proves the binding (its connection is authenticated as peer_id).
        self._bind(identity, raw, proven=source.to_string() == peer_id)
        return True

    async def _serve_identity(self, _peer: str, payload: bytes) -> bytes:
        wanted = payload.decode("ascii", "replace")
        if wanted == self.my_id.to_string() and self.own_identity is not None:
            return self.own_identity
        record = self.peerbook.get(wanted)
        if record is None:
            raise RequestRefused("unknown peer")
        return record.identity_bytes

    def _bind(self, identity: Identity, raw: bytes, proven: bool = True) -> None:
        if self.peerbook.bind(identity, raw, proven):
            self.bus.emit(PeerBound(peer_id=identity.peer_id, address=identity.address,
                                    roles=role_names(identity.roles)))

    # --- delivery -------------------------------------------------------------------------------
    async def _deliver(self, full_topic: str, subscription: Any) -> None:
        while True:
            msg = await subscription.get()
            origin = ID(msg.from_id).to_string()
            key = bytes(msg.from_id) + bytes(msg.seqno)
            if origin == self.my_id.to_string():
                continue  # our own publish, already known to the caller
            verdict = self.checker.recheck(bytes(msg.data), key)
            if verdict is None or self._delivered.get(key) is not None:
                continue  # py-libp2p hands over a message twice when two relays validate it at once
            self._delivered.put(key, True)
            self.received += 1
            await self._dispatch(full_topic, verdict, origin)

    async def _dispatch(self, full_topic: str, accepted: Accept, origin: str) -> None:
        message = accepted.signed.message
        if isinstance(message, Identity):
            self._bind(message, encode(accepted.signed))
        elif isinstance(message, Heartbeat):
            self.peerbook.seen(origin, message.status)
        else:
            self.peerbook.seen(origin)
        self.bus.emit(MessageReceived(topic=full_topic, message_type=message.TYPE,
                                      sender=accepted.signer, origin_peer=origin))
        for handler in self.handlers.get(message.TYPE, []):
            try:
                result = handler(accepted, origin)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("handler %r failed on %s", handler, message.TYPE)
