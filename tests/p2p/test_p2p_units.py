"""Blob store, stream framing and per-peer limits, without a network."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from p2p.blobstore import BlobError, BlobHashMismatch, BlobQuotaExceeded, BlobStore, check_hash
from p2p.host import HostConfigError, advertisable, load_or_create_peer_key, parse_addrs, peer_id_of
from p2p.reputation import PeerSlots, Reputation, TokenBucket
from p2p.wire import StreamReader, WireError, encode_varint, frame

# --- blob store ---------------------------------------------------------------------------------


def store(tmp_path: Path, quota: int = 10_000, cap: int = 5_000) -> BlobStore:
    return BlobStore(tmp_path / "blobs", quota, cap)


def test_put_and_read_back(tmp_path: Path) -> None:
    s = store(tmp_path)
    data = os.urandom(3000)
    h = s.put_bytes(data, public=True)
    assert h == hashlib.sha256(data).hexdigest()
    assert b"".join(s.read_range(h, 100, 900, chunk=128)) == data[100:1000]
    info = s.info(h)
    assert info is not None and info.public and info.size == 3000
    assert not os.access(s.path(h), os.W_OK) or os.geteuid() == 0  # read-only once visible


def test_partial_download_resumes_and_verifies(tmp_path: Path) -> None:
    s = store(tmp_path)
    data = os.urandom(4000)
    h = hashlib.sha256(data).hexdigest()
    first = s.partial(h, len(data))
    first.append(data[:1500])
    first.close()
    assert not s.has(h)  # nothing visible before the hash is checked
    resumed = s.partial(h, len(data))
    assert resumed.offset == 1500
    resumed.append(data[1500:])
    info = resumed.finish(public=False)
    assert info.size == 4000 and not info.public and s.has(h)


def test_batched_appends_resume_and_survive_a_failed_write(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """append_many (the fetch path: one writev per batch) keeps offset and hash exact: across a
    resume, over more buffers than one writev takes, short writes, and a write that fails."""
    import p2p.blobstore as blobstore

    monkeypatch.setattr(blobstore, "WRITEV_MAX", 3)
    s = store(tmp_path)
    data = os.urandom(4000)
    h = hashlib.sha256(data).hexdigest()
    first = s.partial(h, len(data))
    first.append_many([data[i:i + 100] for i in range(0, 1000, 100)])  # 10 buffers: 4 writev calls
    first.close()
    resumed = s.partial(h, len(data))
    assert resumed.offset == 1000

    real_writev = os.writev
    calls = {"n": 0}

    def flaky_writev(fd: int, buffers: list[memoryview]) -> int:
        calls["n"] += 1
        if calls["n"] == 2:
            real_writev(fd, [buffers[0][:7]])  # 7 bytes land, then the disk fails
            raise OSError(28, "No space left on device")
        return real_writev(fd, buffers[:1])  # short writes: one buffer at a time

    monkeypatch.setattr(blobstore.os, "writev", flaky_writev)
    with pytest.raises(OSError, match="No space"):
        resumed.append_many([data[1000:1500], data[1500:2000]])
    assert resumed.offset == 1507  # what reached the file, so a retry resumes exactly there
    monkeypatch.setattr(blobstore.os, "writev", real_writev)
    resumed.append_many([data[1507:3000], data[3000:]])
    with pytest.raises(BlobError, match="stated size"):
        resumed.append_many([b"x"])
    assert resumed.finish(public=True).size == 4000 and s.has(h)


def test_bytes_failing_the_hash_are_deleted(tmp_path: Path) -> None:
    s = store(tmp_path)
    data = os.urandom(1000)
    h = hashlib.sha256(data).hexdigest()
    partial = s.partial(h, 1000)
    partial.append(os.urandom(1000))
    with pytest.raises(BlobHashMismatch):
        partial.finish(public=True)
    assert not s.has(h) and not partial.path.exists()


def test_size_cap_and_overrun_are_refused(tmp_path: Path) -> None:
    s = store(tmp_path)
    with pytest.raises(BlobError, match="cap"):
        s.partial("ab" * 32, 6000)
    partial = s.partial("ab" * 32, 10)
    with pytest.raises(BlobError, match="stated size"):
        partial.append(b"x" * 11)


def test_gc_drops_least_recently_used_unpinned_blobs(tmp_path: Path) -> None:
    s = store(tmp_path, quota=10_000)
    pinned = s.put_bytes(os.urandom(4000), public=True, pinned=True)
    old = s.put_bytes(os.urandom(4000), public=True)
    s.put_bytes(os.urandom(4000), public=True)  # needs room: the unpinned old one goes
    assert s.has(pinned) and not s.has(old)
    for info in s.all():
        s.pin(info.blob_hash)
    with pytest.raises(BlobQuotaExceeded, match="quota"):
        s.put_bytes(os.urandom(4900), public=True)  # 8000 pinned + 4900 > 10000
    assert s.used_bytes() == 8000


@pytest.mark.parametrize("bad", ["", "AB" * 32, "ab" * 31, "../" + "a" * 61, "g" * 64])
def test_blob_ids_are_checked(bad: str) -> None:
    with pytest.raises(BlobError):
        check_hash(bad)


# --- framing ------------------------------------------------------------------------------------


class ChunkedStream:
    """Returns the bytes a few at a time, as a real stream may."""

    def __init__(self, data: bytes, step: int = 3) -> None:
        self.data, self.step = data, step

    async def read(self, n: int | None = None) -> bytes:
        size = min(self.step, n or self.step)
        out, self.data = self.data[:size], self.data[size:]
        return out

    async def write(self, data: bytes) -> None:
        raise NotImplementedError


@given(st.lists(st.binary(max_size=300), max_size=5))
def test_frames_round_trip_over_a_chunked_stream(payloads: list[bytes]) -> None:
    async def main() -> list[bytes]:
        reader = StreamReader(ChunkedStream(b"".join(frame(p) for p in payloads)))
        return [await reader.read_frame(300) for _ in payloads]

    assert trio.run(main) == payloads


def test_oversize_frame_and_truncated_stream_are_refused() -> None:
    async def read(data: bytes, cap: int) -> bytes:
        return await StreamReader(ChunkedStream(data)).read_frame(cap)

    with pytest.raises(WireError, match="exceeds"):
        trio.run(read, frame(b"x" * 100), 99)
    with pytest.raises(WireError, match="ended"):
        trio.run(read, frame(b"x" * 100)[:50], 1000)
    with pytest.raises(WireError, match="9 bytes"):
        trio.run(read, b"\xff" * 12, 1000)
    assert encode_varint(300) == b"\xac\x02"


# --- limits and reputation ----------------------------------------------------------------------


def test_token_bucket_paces() -> None:
    bucket = TokenBucket(rate=2.0, burst=2, stamp=0.0)
    assert bucket.try_take(0.0) and bucket.try_take(0.0) and not bucket.try_take(0.0)
    assert bucket.wait_time(0.0) == pytest.approx(0.5)
    assert bucket.try_take(0.5)


def test_peer_slots_limit_concurrency() -> None:
    slots = PeerSlots(2)
    assert slots.try_acquire("p") and slots.try_acquire("p") and not slots.try_acquire("p")
    assert slots.try_acquire("q")
    slots.release("p")
    assert slots.try_acquire("p")


def test_reputation_bans_past_threshold_and_forgives_after_the_ban() -> None:
    now = [0.0]
    banned: list[tuple[str, str]] = []
    rep = Reputation(threshold=3, ban_seconds=10.0, on_ban=lambda p, r: banned.append((p, r)),
                     clock=lambda: now[0])
    rep.reject("p", "replay")
    rep.reject("p", "misbound")
    assert not rep.is_banned("p")
    rep.reject("p", "misbound")
    assert rep.is_banned("p") and banned == [("p", "misbound")]
    assert rep.reason_counts("p") == {"replay": 1, "misbound": 2}
    now[0] = 11.0
    assert rep.expired_bans() == ["p"] and not rep.is_banned("p")


# --- host configuration -------------------------------------------------------------------------


def test_peer_key_is_persistent_and_private(tmp_path: Path) -> None:
    path = tmp_path / "p2p" / "peer_key"
    first = load_or_create_peer_key(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert peer_id_of(load_or_create_peer_key(path)) == peer_id_of(first)
    path.chmod(0o600)
    path.write_bytes(b"short")
    with pytest.raises(HostConfigError, match="delete it"):
        load_or_create_peer_key(path)


def test_unspecified_address_is_never_advertised() -> None:
    addrs = advertisable(parse_addrs(["/ip4/0.0.0.0/tcp/4001", "/ip4/10.1.2.3/tcp/5"], "test"))
    texts = [str(a) for a in addrs]
    assert "/ip4/127.0.0.1/tcp/4001" in texts and "/ip4/10.1.2.3/tcp/5" in texts
    assert not any("0.0.0.0" in t for t in texts)


@pytest.mark.parametrize("bad", ["not an addr", "/ip4/127.0.0.1/udp/5/quic-v1"])
def test_bad_listen_addresses_say_how_to_fix(bad: str) -> None:
    with pytest.raises(HostConfigError, match=r"/ip4/|TCP"):
        parse_addrs([bad], "p2p.listen_addrs")
