"""The checks every gossip message passes before it reaches the application or is relayed.

In order (cheapest first): size cap, strict decode, type allowed on the topic, timestamp inside
the clock-skew allowance and the validity window, EIP-712 signature (cached: each distinct
message is verified once per node), binding of the signer to the peer id the message originated
from, authorisation of validator-only messages, and replay (the same message published again
inside the validity window).

This module holds no network state: ``MessageChecker.check`` is a pure decision over bytes and
the peer book, so it is unit-tested without hosts; ``p2p.gossip`` wires it into GossipSub.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from p2p.peerbook import PeerBook
from protocol.encoding import decode, message_id
from protocol.errors import OversizeError, ProtocolError, SignatureError
from protocol.messages import (
    Commitment,
    DilocoContribution,
    DilocoRound,
    EpochRecord,
    Heartbeat,
    Identity,
    Receipt,
    TaskAnnouncement,
    TaskStatus,
)
from protocol.signing import Domain, SignedMessage, recover_signer

log = logging.getLogger("magnet.p2p")
UNKNOWN_SIGNERS_KEPT = 4096  # refused signers remembered for confirmed_outsider

TOPIC_PREFIX = "/magnet/1/"

# Which message types each topic carries. Direct-only messages (JoinRequest, Assignment, Reveal,
# ReceiptProof) never travel on gossip.
TOPIC_TYPES: dict[str, tuple[str, ...]] = {
    "identities": (Identity.TYPE,),
    "heartbeats": (Heartbeat.TYPE,),
    "tasks": (TaskAnnouncement.TYPE, TaskStatus.TYPE),
    "commitments": (Commitment.TYPE,),
    "receipts": (Receipt.TYPE,),
    "epochs": (EpochRecord.TYPE,),
    "diloco": (DilocoRound.TYPE, DilocoContribution.TYPE),
}
TYPE_TOPIC = {t: name for name, types in TOPIC_TYPES.items() for t in types}
# Only an authorised validator may publish these.
VALIDATOR_ONLY = frozenset(
    {TaskAnnouncement.TYPE, TaskStatus.TYPE, Receipt.TYPE, EpochRecord.TYPE, DilocoRound.TYPE}
)


def topic(name: str) -> str:
    """The full gossip topic of a short name: ``/magnet/1/<name>``."""
    if name not in TOPIC_TYPES:
        raise ValueError(f"unknown topic {name!r}; known: {', '.join(TOPIC_TYPES)}")
    return TOPIC_PREFIX + name


def topic_for(signed: SignedMessage) -> str:
    name = TYPE_TOPIC.get(signed.message.TYPE)
    if name is None:
        raise ValueError(f"{signed.message.TYPE} is a direct message; send it with a request, not gossip")
    return TOPIC_PREFIX + name


class Authorizer(Protocol):
    """Who may act as a validator: the profile's allow-list, or the chain registry (``ChainAuthorizer``)."""

    def is_validator(self, address: str) -> bool: ...


class AllowListAuthorizer:
    """Validators named in the network profile (checksummed addresses; compared case-insensitively)."""

    def __init__(self, addresses: Iterable[str]) -> None:
        self.addresses = {a.lower() for a in addresses}

    def is_validator(self, address: str) -> bool:
        return address.lower() in self.addresses


class ChainAuthorizer:
    """Validators read from the chain registry (``fetch``), plus a static allow-list.

    ``fetch()`` blocks (a JSON-RPC read: the node wiring passes ``node.core.RegistryValidators``,
    since p2p/ knows nothing of the chain) and returns the addresses that may act as validators
    now. Gossip validation stays synchronous: ``is_validator`` is set membership over the last set
    read. ``refresh()`` runs in a worker thread (``P2PService`` calls it every ``refresh_s`` and
    earlier, at most every ``recheck_s``, when an unknown signer showed up, so a newly registered
    validator is heard within seconds). A failed read keeps the last set and logs why. The static
    list (the network profile's ``validators``) is always accepted: networks without a chain, or
    an override while the chain is down.

    A refusal penalises the relaying peer only once a read that began after the signer was first
    refused still lacks it (``confirmed_outsider``): honest peers relaying a validator registered
    since our last read are not pushed towards a ban.
    """

    def __init__(self, fetch: Callable[[], Iterable[str]], static: Iterable[str] = (),
                 refresh_s: float = 60.0, recheck_s: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.fetch = fetch
        self.static = frozenset(a.lower() for a in static)
        self.refresh_s = refresh_s
        self.recheck_s = recheck_s
        self.clock = clock
        self.chain: frozenset[str] = frozenset()
        self.loaded_at: float | None = None  # clock() of the last successful read
        self.loaded_wall: float | None = None  # time.time() of it (for `magnet status`)
        self.last_error = ""
        self.reads = 0
        self.failures = 0
        self._attempted_at: float | None = None
        self._read_started: float | None = None  # clock() at the start of the last good read
        self._early = False
        self._unknown: OrderedDict[str, float] = OrderedDict()  # refused signer -> first refused
        self._unknown_lock = threading.Lock()  # is_validator (trio thread) vs refresh (worker)

    def is_validator(self, address: str) -> bool:
        key = address.lower()
        if key in self.chain or key in self.static:
            return True
        self._early = True  # perhaps registered since the last read: read again soon
        if key not in self._unknown:
            with self._unknown_lock:
                self._unknown[key] = self.clock()
                while len(self._unknown) > UNKNOWN_SIGNERS_KEPT:
                    self._unknown.popitem(last=False)
        return False

    def confirmed_outsider(self, address: str) -> bool:
        """True when a read that began after ``address`` was first refused did not list it."""
        first = self._unknown.get(address.lower())
        return first is not None and self._read_started is not None and self._read_started > first

    def due(self) -> bool:
        """Whether a read is wanted now: never done, ``refresh_s`` old, or asked for early."""
        if self._attempted_at is None:
            return True
        since = self.clock() - self._attempted_at
        return since >= self.refresh_s or (self._early and since >= self.recheck_s)

    def refresh(self) -> bool:
        """Read the set (blocking); on failure keep the last one. True when the read worked."""
        started = self._attempted_at = self.clock()
        self._early = False
        try:
            found = frozenset(a.lower() for a in self.fetch())
        except Exception as exc:  # any chain failure: the last set stays, the log says why
            self.failures += 1
            self.last_error = f"{type(exc).__name__}: {exc}"[:300]
            kept = "none read yet" if self.loaded_at is None else f"keeping the last {len(self.chain)}"
            log.warning("validator set not read from the chain (%s); %s; retry in %.0f s",
                        self.last_error, kept, self.refresh_s)
            return False
        if found != self.chain:
            log.info("validator set from the chain: %d (was %d)", len(found), len(self.chain))
        self.chain = found
        self._read_started = started
        with self._unknown_lock:
            for key in found.intersection(self._unknown):
                del self._unknown[key]  # a validator now: a later refusal starts afresh
        self.loaded_at = self.clock()
        self.loaded_wall = time.time()
        self.last_error = ""
        self.reads += 1
        return True

    def summary(self) -> dict[str, object]:
        """What ``magnet status`` shows: sizes, when read (unix time), the last error."""
        return {"chain": len(self.chain), "static": len(self.static), "read_at": self.loaded_wall,
                "reads": self.reads, "failures": self.failures, "error": self.last_error}


@dataclass(frozen=True)
class Accept:
    signed: SignedMessage
    signer: str
    msg_id: bytes


@dataclass(frozen=True)
class Reject:
    """``penalise`` is False where the relaying peer may be honest (e.g. we lack a binding yet)."""

    reason: str
    penalise: bool = True


@dataclass(frozen=True)
class NeedIdentity:
    """The originating peer's Identity is unknown here; fetch it, then check again."""

    peer_id: str


Verdict = Accept | Reject | NeedIdentity


class LruCache:
    """A small bounded mapping, oldest entries dropped first."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.data: OrderedDict[bytes, object] = OrderedDict()

    def get(self, key: bytes) -> object | None:
        value = self.data.get(key)
        if value is not None:
            self.data.move_to_end(key)
        return value

    def pop(self, key: bytes) -> object | None:
        return self.data.pop(key, None)

    def put(self, key: bytes, value: object) -> None:
        self.data[key] = value
        self.data.move_to_end(key)
        while len(self.data) > self.size:
            self.data.popitem(last=False)


class MessageChecker:
    """Decides on each gossip message; keeps the signature and replay caches."""

    def __init__(self, domain: Domain, peerbook: PeerBook, authorizer: Authorizer, max_bytes: int,
                 clock_skew: float, validity_window: float, cache_size: int = 50_000) -> None:
        self.domain = domain
        self.peerbook = peerbook
        self.authorizer = authorizer
        self.max_bytes = max_bytes
        self.skew_ms = int(clock_skew * 1000)
        self.window_ms = int(validity_window * 1000)
        self.signers = LruCache(cache_size)  # message id -> recovered signer
        self.first_seen = LruCache(cache_size)  # message id -> gossip key (origin peer, seqno) first seen
        self.accepted = LruCache(4096)  # message id + gossip key -> Accept, until delivered
        self.signature_checks = 0

    def check(self, data: bytes, topic_name: str, origin_peer: str, gossip_key: bytes,
              now_ms: int | None = None) -> Verdict:
        """Decide on ``data`` published on ``topic_name`` by ``origin_peer`` (libp2p-signed origin)."""
        if len(data) > self.max_bytes:
            return Reject("oversize")
        try:
            signed = decode(data, max_size=self.max_bytes)
        except OversizeError:
            return Reject("oversize")
        except ProtocolError:
            return Reject("undecodable")
        msg = signed.message
        if msg.TYPE not in TOPIC_TYPES.get(topic_name.removeprefix(TOPIC_PREFIX), ()):
            return Reject("wrong_topic")
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        issued_at = int(getattr(msg, "issued_at", 0))  # every registered type carries it
        if issued_at > now_ms + self.skew_ms:
            return Reject("from_future")
        if issued_at < now_ms - self.window_ms:
            return Reject("stale")
        msg_id = message_id(data)
        signer = self._signer(signed, msg_id)
        if signer is None:
            return Reject("bad_signature")
        binding = self._check_binding(signed, signer, origin_peer)
        if binding is not None:
            return binding
        if msg.TYPE in VALIDATOR_ONLY and not self.authorizer.is_validator(signer):
            confirmed = getattr(self.authorizer, "confirmed_outsider", None)
            return Reject("unauthorized", penalise=confirmed(signer) if callable(confirmed) else True)
        first = self.first_seen.get(msg_id)
        if first is not None and first != gossip_key:
            return Reject("replay")
        self.first_seen.put(msg_id, gossip_key)
        accepted = Accept(signed, signer, msg_id)
        self.accepted.put(msg_id + gossip_key, accepted)
        return accepted

    def recheck(self, data: bytes, gossip_key: bytes) -> Accept | None:
        """The verdict already reached for a message the validator accepted (no second decode)."""
        accepted = self.accepted.pop(message_id(data) + gossip_key)
        return accepted if isinstance(accepted, Accept) else None

    def _signer(self, signed: SignedMessage, msg_id: bytes) -> str | None:
        cached = self.signers.get(msg_id)
        if cached is not None:
            return str(cached)
        self.signature_checks += 1
        try:
            signer = recover_signer(signed, self.domain)
        except (SignatureError, ProtocolError):
            return None
        self.signers.put(msg_id, signer)
        return signer

    def _check_binding(self, signed: SignedMessage, signer: str, origin_peer: str) -> Verdict | None:
        msg = signed.message
        if isinstance(msg, Identity):
            return None if msg.peer_id == origin_peer else Reject("misbound")
        bound = self.peerbook.address_of(origin_peer)
        if bound is None:
            return NeedIdentity(origin_peer)
        return None if bound == signer else Reject("misbound")

    def check_identity(self, data: bytes, peer_id: str) -> Identity:
        """Verify an Identity fetched directly (any age, not from the future) for ``peer_id``."""
        signed = decode(data, max_size=self.max_bytes)
        msg = signed.message
        if not isinstance(msg, Identity) or msg.peer_id != peer_id:
            raise ProtocolError(f"reply is not an Identity for {peer_id}")
        if msg.issued_at > int(time.time() * 1000) + self.skew_ms:
            raise ProtocolError("Identity issued in the future")
        recover_signer(signed, self.domain)
        return msg
