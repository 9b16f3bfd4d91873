"""Blob transfer over ``/magnet/blob/1.0.0``: ranged fetch of public blobs, push of private ones.

Every exchange opens with one JSON header frame from the side that opened the stream:

* ``{"op": "get", "hash": h, "offset": o, "length": n}``: the server answers a header
  ``{"ok": true, "size": total, "offset": o, "length": n}`` and then exactly ``n`` raw bytes, or
  ``{"ok": false, "error": "not_found" | "busy" | "bad_request"}``. Private blobs answer
  ``not_found``: their existence is not revealed.
* ``{"op": "push", "hash": h, "size": s}``: the receiver answers ``{"ok": true, "offset": o}``
  (bytes it already holds: the push resumes there) or a refusal; the pusher sends ``s - o`` raw
  bytes and closes; the receiver checks the hash and answers ``{"ok": true}`` or
  ``{"ok": false, "error": "hash_mismatch"}``.

A download states its size before bytes flow and is held to the cap; bytes land in a partial
file hashed as they arrive and become visible only when the hash matches. A provider that makes
no progress for ``blob_stall_timeout`` seconds is dropped and the next resumes at the byte where
it stopped; bytes that fail the hash are deleted and their provider penalised.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any

import trio
from libp2p.abc import IHost, INetStream
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID

from node.events import EventBus
from p2p.blobstore import HASH_RE, BlobError, BlobHashMismatch, BlobInfo, BlobStore, PartialBlob, check_hash
from p2p.config import P2PConfig
from p2p.events import BlobCompleted, BlobFailed, BlobReceivedByPush
from p2p.reputation import PeerSlots, Reputation
from p2p.reqresp import RequestFailed, RequestRefused, RequestResponse
from p2p.wire import StreamReader, WireError, header_int, header_str, json_frame
from protocol import strict_json

log = logging.getLogger("magnet.p2p.blobs")

BLOB_PROTOCOL = TProtocol("/magnet/blob/1.0.0")
WRITE_BATCH = 4 << 20
# Bytes per stream write when sending a blob. py-libp2p (0.8.1) cuts a write into yamux DATA frames of
# at most 64 KiB, 12-byte header included, and sends each frame as Noise messages of at most 65,519
# plaintext bytes: a full frame costs two Noise messages (the second 17 bytes long), two encryptions,
# two decryptions and the reads to join them again. A write of 65,519 - 12 bytes is one frame in one
# Noise message: half the Noise work per byte at both ends. (tests/p2p/test_p2p_blobs.py checks the
# two limits against the installed libp2p.)
NOISE_MAX_PLAINTEXT = 65519
YAMUX_HEADER_BYTES = 12
STREAM_WRITE_BYTES = NOISE_MAX_PLAINTEXT - YAMUX_HEADER_BYTES
HAVE_REQUEST = "have"
MAX_HAVE_QUERY = 64

# Decides whether to accept a private blob pushed by a peer: (peer id, blob id, size) -> bool.
PushPolicy = Callable[[str, str, int], Awaitable[bool]]


class BlobUnavailable(BlobError):
    """No provider delivered the blob; the message lists what each one did."""


class ProviderFailed(Exception):
    """One provider failed one attempt (the next provider is tried)."""


async def refuse_all_pushes(_peer: str, _blob_hash: str, _size: int) -> bool:
    return False


class BlobService:
    """Serves and fetches blobs for one host."""

    def __init__(self, host: IHost, store: BlobStore, config: P2PConfig, reputation: Reputation,
                 bus: EventBus | None = None, push_policy: PushPolicy = refuse_all_pushes) -> None:
        self.host = host
        self.store = store
        self.config = config
        self.reputation = reputation
        self.bus = bus or EventBus()
        self.push_policy = push_policy
        self.serving = PeerSlots(config.blob_transfers_per_peer)
        self.fetching = PeerSlots(config.blob_transfers_per_peer)
        host.set_stream_handler(BLOB_PROTOCOL, self._on_stream)

    # --- serving ------------------------------------------------------------------------------
    async def _on_stream(self, stream: INetStream) -> None:
        peer = stream.muxed_conn.peer_id.to_string()
        if self.reputation.is_banned(peer) or not self.serving.try_acquire(peer):
            await self._answer(stream, {"ok": False, "error": "busy"})
            return
        try:
            reader = StreamReader(stream)
            with trio.fail_after(self.config.blob_stall_timeout):
                header = await reader.read_json()
            op = header.get("op")
            if op == "get":
                await self._serve_get(stream, header)
            elif op == "push":
                await self._receive_push(stream, reader, peer, header)
            else:
                await self._answer(stream, {"ok": False, "error": "bad_request"})
        except (WireError, BlobError, trio.TooSlowError) as exc:
            log.info("blob stream from %s failed: %s", peer, exc)
            await stream.reset()
        finally:
            self.serving.release(peer)

    async def _answer(self, stream: INetStream, header: dict[str, Any]) -> None:
        try:
            await stream.write(json_frame(header))
            await stream.close()
        except Exception as exc:
            log.debug("blob answer not delivered: %s", exc)

    async def _serve_get(self, stream: INetStream, header: dict[str, Any]) -> None:
        blob_hash = check_hash(header_str(header, "hash"))
        info = self.store.info(blob_hash)
        if info is None or not info.public:
            await self._answer(stream, {"ok": False, "error": "not_found"})
            return
        offset = header_int(header, "offset", 0, info.size)
        length = header_int(header, "length", 0, info.size - offset)
        await stream.write(json_frame({"ok": True, "size": info.size, "offset": offset, "length": length}))
        await self._send_range(stream, blob_hash, offset, length)
        await stream.close()

    async def _send_range(self, stream: INetStream, blob_hash: str, offset: int, length: int) -> None:
        """Write bytes ``[offset, offset + length)`` of a stored blob to ``stream``.

        The file is read in a worker thread, ``blob_chunk_bytes`` at a time, so a slow disk never
        stalls the event loop; the bytes go out in writes of STREAM_WRITE_BYTES (one yamux frame in
        one Noise message each). One stall deadline, moved on at each write, replaces a cancel scope
        per write: trio.TooSlowError when the peer takes no bytes for ``blob_stall_timeout``.
        """
        stall = self.config.blob_stall_timeout
        per_read = max(1, self.config.blob_chunk_bytes // STREAM_WRITE_BYTES)
        pieces = self.store.read_range(blob_hash, offset, length, STREAM_WRITE_BYTES)
        # closing(): a send that ends early (stall, peer gone) closes the file now, not at collection.
        with contextlib.closing(pieces), trio.CancelScope(deadline=trio.current_time() + stall) as scope:
            while batch := await trio.to_thread.run_sync(_take, pieces, per_read):
                for piece in batch:
                    scope.deadline = trio.current_time() + stall
                    await stream.write(piece)
        if scope.cancelled_caught:
            raise trio.TooSlowError(f"blob {blob_hash[:12]}: the peer took no bytes for {stall} s")

    async def _receive_push(self, stream: INetStream, reader: StreamReader, peer: str,
                            header: dict[str, Any]) -> None:
        blob_hash = check_hash(header_str(header, "hash"))
        size = header_int(header, "size", 0, self.config.blob_max_bytes)
        if self.store.has(blob_hash):
            await self._answer(stream, {"ok": True, "offset": size})
            return
        if not await self.push_policy(peer, blob_hash, size):
            await self._answer(stream, {"ok": False, "error": "refused"})
            return
        partial = self.store.partial(blob_hash, size)
        await stream.write(json_frame({"ok": True, "offset": partial.offset}))
        try:
            await self._receive_bytes(reader, partial, size - partial.offset)
            info = partial.finish(public=False)
        except BlobHashMismatch:
            self.reputation.reject(peer, "blob_hash_mismatch", self.config.blob_provider_penalty)
            await self._answer(stream, {"ok": False, "error": "hash_mismatch"})
            return
        finally:
            partial.close()
        self.bus.emit(BlobReceivedByPush(blob_hash=blob_hash, peer_id=peer, size=info.size))
        await self._answer(stream, {"ok": True})

    async def _receive_bytes(self, reader: StreamReader, partial: PartialBlob, length: int) -> None:
        """Append exactly ``length`` bytes; WireError when no byte arrives for the stall timeout.

        Hashing and writing run in a worker thread behind the receiving loop, in batches of
        WRITE_BATCH bytes written with one ``writev`` each, so a disk that blocks never stalls the
        event loop and the GIL changes hands once per batch, not per chunk (per chunk it cost the
        loop more than the work itself). One stall deadline, moved on at each chunk, replaces a
        cancel scope per read. When the provider fails or stalls, what arrived is still written,
        so ``partial.offset`` (where a resumed download starts) counts every byte received in order.
        """
        stall = self.config.blob_stall_timeout
        send, receive = trio.open_memory_channel[list[bytes]](2)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_write_behind, receive, partial)
            async with send:
                left, pending, pending_bytes = length, [], 0
                with trio.CancelScope(deadline=trio.current_time() + stall) as scope:
                    try:
                        while left > 0:
                            chunk = await reader.read_some(min(left, 1 << 20))
                            scope.deadline = trio.current_time() + stall
                            left -= len(chunk)
                            pending.append(chunk)
                            pending_bytes += len(chunk)
                            if pending_bytes >= WRITE_BATCH or left == 0:
                                await send.send(pending)  # waits while the disk is behind
                                pending, pending_bytes = [], 0
                                scope.deadline = trio.current_time() + stall
                    except WireError:
                        with trio.CancelScope(shield=True):
                            await send.send(pending)  # keep what arrived: the next provider resumes there
                        raise
                if scope.cancelled_caught:
                    with trio.CancelScope(shield=True):
                        await send.send(pending)
                    raise WireError(f"stalled: no bytes for {stall} s")

    # --- fetching -----------------------------------------------------------------------------
    async def fetch(self, blob_hash: str, size: int, providers: Sequence[ID | str],
                    public: bool = True) -> BlobInfo:
        """Get ``blob_hash`` (``size`` bytes, as announced) from its providers, resuming across them."""
        check_hash(blob_hash)
        if not 0 <= size <= self.config.blob_max_bytes:
            raise BlobError(f"blob {blob_hash[:12]} is announced at {size} bytes; the cap is "
                            f"{self.config.blob_max_bytes} (raise p2p.blob_max_bytes to accept it)")
        existing = self.store.info(blob_hash)
        if existing is not None:
            return existing
        started = time.monotonic()
        peers = [p if isinstance(p, ID) else ID.from_base58(p) for p in providers]
        failures: list[str] = []
        partial: PartialBlob | None = None
        contributors: set[str] = set()
        resume_across = True  # cleared once mixed bytes failed the hash: then blame one provider at a time
        for attempt, peer in enumerate(self._rotation(peers)):
            name = peer.to_string()
            if partial is not None and not resume_across and partial.offset and name not in contributors:
                partial.truncate(0)
                contributors.clear()
            try:
                partial = await self._fetch_from(peer, blob_hash, size, partial, contributors)
            except ProviderFailed as exc:
                failures.append(f"{name[-8:]}: {exc}")
                self.bus.emit(BlobFailed(blob_hash=blob_hash, peer_id=name, reason=str(exc)))
                continue
            try:
                info = partial.finish(public=public)
            except BlobHashMismatch as exc:
                resume_across = self._blame(blob_hash, contributors, exc, failures)
                partial, contributors = None, set()
                continue
            self.bus.emit(BlobCompleted(blob_hash=blob_hash, size=info.size, providers_tried=attempt + 1,
                                        seconds=time.monotonic() - started))
            return info
        if partial is not None:
            partial.close()
        tried = "; ".join(failures) or "none given"
        raise BlobUnavailable(f"blob {blob_hash[:12]} could not be fetched from {len(peers)} provider(s): "
                              f"{tried}. Try again when more peers have it.")

    def _rotation(self, peers: list[ID]) -> list[ID]:
        """Each provider gets two chances, so a blamed round can re-check the others alone."""
        return [p for p in peers if not self.reputation.is_banned(p.to_string())] * 2

    def _blame(self, blob_hash: str, contributors: set[str], exc: BlobHashMismatch,
               failures: list[str]) -> bool:
        """Penalise a lone contributor of bad bytes; with several, retry them one at a time."""
        failures.append(str(exc))
        if len(contributors) == 1:
            (peer,) = contributors
            self.reputation.reject(peer, "blob_hash_mismatch", self.config.blob_provider_penalty)
            self.bus.emit(BlobFailed(blob_hash=blob_hash, peer_id=peer, reason="hash_mismatch"))
        return False

    async def _fetch_from(self, peer: ID, blob_hash: str, size: int, partial: PartialBlob | None,
                          contributors: set[str]) -> PartialBlob:
        name = peer.to_string()
        if not self.fetching.try_acquire(name):
            raise ProviderFailed("too many transfers from this provider already")
        stream: INetStream | None = None
        try:
            if partial is None:
                partial = self.store.partial(blob_hash, size)
            with trio.fail_after(self.config.blob_stall_timeout):
                stream = await self.host.new_stream(peer, [BLOB_PROTOCOL])
                await stream.write(json_frame({"op": "get", "hash": blob_hash, "offset": partial.offset,
                                               "length": size - partial.offset}))
                reader = StreamReader(stream)
                header = await reader.read_json()
            length = self._check_offer(header, size, partial.offset)
            contributors.add(name)
            await self._receive_bytes(reader, partial, length)
            return partial
        except ProviderFailed:
            raise
        except (WireError, BlobError, trio.TooSlowError) as exc:
            raise ProviderFailed(str(exc) or type(exc).__name__) from exc
        except Exception as exc:  # dial failures, stream resets: the next provider is tried
            raise ProviderFailed(repr(exc)) from exc
        finally:
            self.fetching.release(name)
            if partial is not None:
                partial.close()
            if stream is not None:
                await _close_quietly(stream)

    def _check_offer(self, header: dict[str, Any], size: int, offset: int) -> int:
        """The provider's stated size, held to the expected one, before any byte flows."""
        if not header.get("ok"):
            raise ProviderFailed(f"refused: {str(header.get('error'))[:64]}")
        stated = header_int(header, "size", 0, self.config.blob_max_bytes)
        if stated != size:
            raise ProviderFailed(f"states {stated} bytes, expected {size}")
        if header_int(header, "offset", 0, size) != offset:
            raise ProviderFailed(f"offered another offset than the {offset} asked for")
        length = header_int(header, "length", 0, size - offset)
        if length != size - offset:
            raise ProviderFailed(f"offered {length} bytes, asked for {size - offset}")
        return length

    # --- provider discovery -------------------------------------------------------------------
    async def serve_have(self, _peer: str, payload: bytes) -> bytes:
        """``have`` request: which of the asked blob ids (JSON list, at most 64) we serve publicly."""
        try:
            wanted = strict_json.loads(payload, "have query")
        except ValueError:
            raise RequestRefused("payload must be a JSON list of blob ids") from None
        if not isinstance(wanted, list) or len(wanted) > MAX_HAVE_QUERY:
            raise RequestRefused(f"ask about at most {MAX_HAVE_QUERY} blob ids at once")
        held = []
        for blob_hash in wanted:
            if isinstance(blob_hash, str) and HASH_RE.match(blob_hash):
                info = self.store.info(blob_hash)
                if info is not None and info.public:
                    held.append(blob_hash)
        return json.dumps(held).encode("utf-8")

    async def find_providers(self, requests: RequestResponse, blob_hash: str,
                             timeout: float = 5.0) -> list[ID]:
        """Connected peers that say they serve ``blob_hash`` (asked at once, over their connections)."""
        check_hash(blob_hash)
        found: list[ID] = []
        payload = json.dumps([blob_hash]).encode("utf-8")

        async def ask(peer: ID) -> None:
            try:
                reply = await requests.request(peer, HAVE_REQUEST, payload, dial=False, timeout=timeout)
                if blob_hash in strict_json.loads(reply, "have reply"):
                    found.append(peer)
            except (RequestFailed, RequestRefused, UnicodeDecodeError, ValueError, TypeError) as exc:
                log.debug("have query to %s failed: %s", peer, exc)

        async with trio.open_nursery() as nursery:
            for peer in list(self.host.get_network().get_connections_map()):
                if not self.reputation.is_banned(peer.to_string()):
                    nursery.start_soon(ask, peer)
        return found

    # --- pushing ------------------------------------------------------------------------------
    async def push(self, peer_id: ID | str, blob_hash: str) -> None:
        """Push one of our private blobs to ``peer_id``, which must accept it (resumes if it holds part)."""
        peer = peer_id if isinstance(peer_id, ID) else ID.from_base58(peer_id)
        info = self.store.info(check_hash(blob_hash))
        if info is None:
            raise BlobError(f"blob {blob_hash[:12]} is not in the local store; nothing to push")
        stream = await self.host.new_stream(peer, [BLOB_PROTOCOL])
        try:
            reader = StreamReader(stream)
            await stream.write(json_frame({"op": "push", "hash": blob_hash, "size": info.size}))
            with trio.fail_after(self.config.request_timeout):
                answer = await reader.read_json()
            if not answer.get("ok"):
                raise BlobError(f"{peer} refused blob {blob_hash[:12]}: {str(answer.get('error'))[:64]}")
            offset = header_int(answer, "offset", 0, info.size)
            await self._send_range(stream, blob_hash, offset, info.size - offset)
            if offset < info.size:
                with trio.fail_after(self.config.request_timeout):
                    verdict = await reader.read_json()
                if not verdict.get("ok"):
                    reason = str(verdict.get("error"))[:64]
                    raise BlobError(f"{peer} rejected blob {blob_hash[:12]}: {reason}")
        except (WireError, trio.TooSlowError) as exc:
            raise BlobError(f"push of blob {blob_hash[:12]} to {peer} failed: {exc}") from exc
        finally:
            await _close_quietly(stream)


async def _write_behind(batches: trio.MemoryReceiveChannel[list[bytes]], partial: PartialBlob) -> None:
    async with batches:
        async for batch in batches:
            await trio.to_thread.run_sync(partial.append_many, batch)


def _take(pieces: Iterator[bytes], count: int) -> list[bytes]:
    """The next ``count`` items of ``pieces`` (fewer at its end); runs in a worker thread."""
    return list(itertools.islice(pieces, count))


async def _close_quietly(stream: INetStream) -> None:
    try:
        await stream.close()
    except Exception:
        pass
