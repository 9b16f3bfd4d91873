"""Blob transfer between real hosts: ranged fetch, resume across providers, bad bytes, private blobs."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import multiaddr
import pytest
import trio
from libp2p.abc import INetStream
from libp2p.peer.peerinfo import PeerInfo, info_from_p2p_addr
from p2p_netutil import connect, make_service, start, wait_for

from p2p.blobs import BLOB_PROTOCOL, STREAM_WRITE_BYTES, BlobUnavailable
from p2p.blobstore import BlobError
from p2p.events import BlobCompleted, BlobFailed, BlobReceivedByPush
from p2p.service import P2PService
from p2p.wire import StreamReader, json_frame

pytestmark = pytest.mark.network
HERE = Path(__file__).resolve().parent


def put(node: P2PService, data: bytes, public: bool = True) -> str:
    return node.store.put_bytes(data, public=public)


def test_public_blob_is_fetched_and_verified(tmp_path: Path) -> None:
    data = os.urandom(3_000_000)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            provider = await start(nursery, make_service(tmp_path, "provider"))
            fetcher = await start(nursery, make_service(tmp_path, "fetcher"))
            await connect(fetcher, provider)
            done: list[BlobCompleted] = []
            fetcher.bus.subscribe(done.append, [BlobCompleted])  # type: ignore[arg-type]
            blob = put(provider, data)
            info = await fetcher.blobs.fetch(blob, len(data), [provider.peer_id])
            assert info.public and info.size == len(data)
            assert fetcher.store.path(blob).read_bytes() == data
            assert done[0].blob_hash == blob and done[0].providers_tried == 1
            with pytest.raises(BlobError, match="cap"):
                await fetcher.blobs.fetch("ab" * 32, fetcher.config.blob_max_bytes + 1, [provider.peer_id])
            nursery.cancel_scope.cancel()

    trio.run(main)


def test_stream_write_size_is_one_yamux_frame_in_one_noise_message() -> None:
    """STREAM_WRITE_BYTES restates two limits of the installed py-libp2p: if either moves, this fails."""
    from libp2p.security.noise.io import MAX_PLAINTEXT_LENGTH
    from libp2p.stream_muxer.yamux.yamux import HEADER_SIZE, MAX_MESSAGE_SIZE

    assert min(MAX_PLAINTEXT_LENGTH, MAX_MESSAGE_SIZE) == STREAM_WRITE_BYTES + HEADER_SIZE


def test_served_blob_goes_out_as_one_noise_message_per_yamux_frame(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The provider's writes fit one yamux frame in one Noise message: about size / 65,507 data messages,
    where 256 KiB writes cost two per 64 KiB frame (65,519 + 17 bytes) plus a short frame per write."""
    from libp2p.security.noise.io import NoiseTransportReadWriter

    data = os.urandom(4_000_000)
    sizes: list[int] = []
    encrypt = NoiseTransportReadWriter.encrypt

    def counting_encrypt(self: NoiseTransportReadWriter, plaintext: bytes) -> bytes:
        sizes.append(len(plaintext))
        return encrypt(self, plaintext)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            provider = await start(nursery, make_service(tmp_path, "provider"))
            fetcher = await start(nursery, make_service(tmp_path, "fetcher"))
            await connect(fetcher, provider)
            blob = put(provider, data)
            monkeypatch.setattr(NoiseTransportReadWriter, "encrypt", counting_encrypt)
            await fetcher.blobs.fetch(blob, len(data), [provider.peer_id])
            monkeypatch.undo()
            assert fetcher.store.path(blob).read_bytes() == data
            nursery.cancel_scope.cancel()

    trio.run(main)
    carrying_data = [n for n in sizes if n > 1024]  # window updates and headers are a few dozen bytes
    frames = -(-len(data) // STREAM_WRITE_BYTES)  # 62
    assert sum(carrying_data) >= len(data)
    assert max(carrying_data) <= STREAM_WRITE_BYTES + 12
    assert len(carrying_data) <= frames + 6  # a send window that runs short may split a few writes
    assert sizes.count(17) == 0  # the tail of a 64 KiB frame cut in two


def test_provider_drops_a_fetcher_that_stops_reading(tmp_path: Path) -> None:
    """A fetcher that asks and then reads nothing is dropped after the stall timeout: the provider's
    writes wait on the yamux window, its one stall deadline expires, and its transfer slot is freed."""
    data = os.urandom(3_000_000)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            provider = await start(nursery, make_service(tmp_path, "provider", blob_stall_timeout=0.5))
            fetcher = await start(nursery, make_service(tmp_path, "fetcher"))
            await connect(fetcher, provider)
            blob = put(provider, data)
            stream = await fetcher.host.new_stream(provider.peer_id, [BLOB_PROTOCOL])
            await stream.write(json_frame({"op": "get", "hash": blob, "offset": 0, "length": len(data)}))
            peer = fetcher.peer_id.to_string()
            await wait_for(lambda: provider.blobs.serving.active.get(peer, 0) == 1, 5, "serving")
            started = time.monotonic()
            await wait_for(lambda: provider.blobs.serving.active.get(peer, 0) == 0, 6, "slot freed")
            assert time.monotonic() - started < 4  # the 0.5 s stall timeout, not yamux's own 5 s wait
            received = 0
            try:
                while chunk := await stream.read(1 << 20):
                    received += len(chunk)
            except Exception:  # StreamReset / StreamEOF: the provider reset the stream
                pass
            assert received < len(data)  # dropped, not served to the end
            nursery.cancel_scope.cancel()

    trio.run(main)


def test_private_blob_is_refused_to_a_peer_that_asks(tmp_path: Path) -> None:
    async def main() -> None:
        async with trio.open_nursery() as nursery:
            owner = await start(nursery, make_service(tmp_path, "owner"))
            asker = await start(nursery, make_service(tmp_path, "asker"))
            await connect(asker, owner)
            blob = put(owner, b"artifact bytes" * 1000, public=False)
            with pytest.raises(BlobUnavailable, match="not_found"):
                await asker.blobs.fetch(blob, 14_000, [owner.peer_id])
            assert not asker.store.has(blob)
            nursery.cancel_scope.cancel()

    trio.run(main)


def test_provider_serving_wrong_bytes_is_detected_and_penalised(tmp_path: Path) -> None:
    data = os.urandom(500_000)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            liar = await start(nursery, make_service(tmp_path, "liar"))
            honest = await start(nursery, make_service(tmp_path, "honest"))
            fetcher = await start(nursery, make_service(tmp_path, "fetcher"))
            await connect(fetcher, liar)
            await connect(fetcher, honest)
            blob = put(liar, data)
            put(honest, data)
            path = liar.store.path(blob)
            path.chmod(0o644)
            path.write_bytes(os.urandom(len(data)))  # same size, wrong bytes
            failed: list[BlobFailed] = []
            fetcher.bus.subscribe(failed.append, [BlobFailed])  # type: ignore[arg-type]
            await fetcher.blobs.fetch(blob, len(data), [liar.peer_id, honest.peer_id])
            assert hashlib.sha256(fetcher.store.path(blob).read_bytes()).hexdigest() == blob
            liar_id = liar.peer_id.to_string()
            assert [(e.peer_id, e.reason) for e in failed] == [(liar_id, "hash_mismatch")]
            penalty = fetcher.config.blob_provider_penalty
            assert fetcher.reputation.reason_counts(liar_id) == {"blob_hash_mismatch": penalty}
            assert fetcher.reputation.reason_counts(honest.peer_id.to_string()) == {}
            nursery.cancel_scope.cancel()

    trio.run(main)


def test_stalled_provider_is_dropped_and_the_next_resumes(tmp_path: Path) -> None:
    data = os.urandom(1_000_000)
    blob = hashlib.sha256(data).hexdigest()
    half = 400_000
    asked_offsets: list[int] = []

    async def stall_after_half(stream: INetStream) -> None:
        header = await StreamReader(stream).read_json()
        await stream.write(json_frame({"ok": True, "size": len(data), "offset": 0, "length": len(data)}))
        await stream.write(data[:half])
        asked_offsets.append(header["offset"])
        await trio.sleep_forever()

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            staller = await start(nursery, make_service(tmp_path, "staller"))
            staller.host.set_stream_handler(BLOB_PROTOCOL, stall_after_half)
            good = await start(nursery, make_service(tmp_path, "good"))
            fetcher = await start(nursery, make_service(tmp_path, "fetcher", blob_stall_timeout=0.5))
            await connect(fetcher, staller)
            await connect(fetcher, good)
            put(good, data)
            served: list[int] = []
            original = good.store.read_range

            def spy(blob_hash: str, offset: int, length: int, chunk: int):  # type: ignore[no-untyped-def]
                served.append(offset)
                return original(blob_hash, offset, length, chunk)

            good.store.read_range = spy  # type: ignore[method-assign]
            started = time.monotonic()
            await fetcher.blobs.fetch(blob, len(data), [staller.peer_id, good.peer_id])
            assert time.monotonic() - started < 5
            assert asked_offsets == [0] and served == [half]  # resumed at the byte where it stalled
            assert fetcher.store.path(blob).read_bytes() == data
            nursery.cancel_scope.cancel()

    trio.run(main)


def test_per_peer_transfer_limit_refuses_extra_transfers(tmp_path: Path) -> None:
    async def main() -> None:
        async with trio.open_nursery() as nursery:
            provider = await start(nursery, make_service(tmp_path, "provider", blob_transfers_per_peer=1))
            fetcher = await start(nursery, make_service(tmp_path, "fetcher"))
            await connect(fetcher, provider)
            blob = put(provider, b"x" * 1000)
            assert provider.blobs.serving.try_acquire(fetcher.peer_id.to_string())  # one transfer running
            with pytest.raises(BlobUnavailable, match="busy"):
                await fetcher.blobs.fetch(blob, 1000, [provider.peer_id])
            provider.blobs.serving.release(fetcher.peer_id.to_string())
            await fetcher.blobs.fetch(blob, 1000, [provider.peer_id])
            nursery.cancel_scope.cancel()

    trio.run(main)


def test_private_blob_is_pushed_only_to_a_peer_that_accepts(tmp_path: Path) -> None:
    artifact = os.urandom(200_000)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            miner = await start(nursery, make_service(tmp_path, "miner"))
            refuser = await start(nursery, make_service(tmp_path, "refuser"))
            validator = await start(nursery, make_service(tmp_path, "validator"))
            blob = put(miner, artifact, public=False)

            async def expect_this_one(peer: str, blob_hash: str, size: int) -> bool:
                return peer == miner.peer_id.to_string() and blob_hash == blob and size == len(artifact)

            validator.blobs.push_policy = expect_this_one
            pushed: list[BlobReceivedByPush] = []
            validator.bus.subscribe(pushed.append, [BlobReceivedByPush])  # type: ignore[arg-type]
            await connect(miner, refuser)  # the miner opens every connection it uses
            await connect(miner, validator)
            with pytest.raises(BlobError, match="refused"):
                await miner.blobs.push(refuser.peer_id, blob)
            await miner.blobs.push(validator.peer_id, blob)
            info = validator.store.info(blob)
            assert info is not None and not info.public and pushed[0].size == len(artifact)
            assert not refuser.store.has(blob)
            nursery.cancel_scope.cancel()

    trio.run(main)


def test_push_resumes_at_the_bytes_the_receiver_already_holds(tmp_path: Path) -> None:
    artifact = os.urandom(3_000_000)
    held = 1_234_567  # not a multiple of the write or read sizes

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            miner = await start(nursery, make_service(tmp_path, "miner"))
            validator = await start(nursery, make_service(tmp_path, "validator"))
            blob = put(miner, artifact, public=False)
            validator.blobs.push_policy = lambda *_: _accept()
            (validator.store.partial_dir / f"{blob}.part").write_bytes(artifact[:held])
            sent: list[tuple[int, int]] = []
            original = miner.store.read_range

            def spy(blob_hash: str, offset: int, length: int, chunk: int):  # type: ignore[no-untyped-def]
                sent.append((offset, length))
                return original(blob_hash, offset, length, chunk)

            miner.store.read_range = spy  # type: ignore[method-assign]
            await connect(miner, validator)
            await miner.blobs.push(validator.peer_id, blob)
            assert sent == [(held, len(artifact) - held)]
            assert validator.store.path(blob).read_bytes() == artifact
            nursery.cancel_scope.cancel()

    trio.run(main)


async def _accept() -> bool:
    return True


@pytest.mark.slow
def test_fifty_megabytes_resume_from_a_second_provider_after_the_first_is_killed(tmp_path: Path) -> None:
    size = 50 * 1024 * 1024
    blob_file = tmp_path / "blob.bin"
    blob_file.write_bytes(os.urandom(size))
    blob = hashlib.sha256(blob_file.read_bytes()).hexdigest()
    env = {**os.environ, "PYTHONPATH": str(HERE.parent.parent)}
    provider = subprocess.Popen([sys.executable, str(HERE / "blob_provider.py"), str(tmp_path / "a"),
                                 str(blob_file)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    try:
        assert provider.stdout is not None
        hello = json.loads(provider.stdout.readline())
        assert hello["blob"] == blob
        trio.run(_fetch_while_killing, tmp_path, blob, size, blob_file, hello, provider)
    finally:
        provider.kill()
        provider.wait()
        if provider.stdout is not None:
            provider.stdout.close()


async def _fetch_while_killing(tmp_path: Path, blob: str, size: int, blob_file: Path,
                               hello: dict[str, object], provider: subprocess.Popen[bytes]) -> None:
    async with trio.open_nursery() as nursery:
        second = await start(nursery, make_service(tmp_path, "second"))
        fetcher = await start(nursery, make_service(tmp_path, "fetcher"))
        second.store.put_file(blob_file, public=True)
        served: list[tuple[int, int]] = []
        original = second.store.read_range

        def spy(blob_hash: str, offset: int, length: int, chunk: int):  # type: ignore[no-untyped-def]
            served.append((offset, length))
            return original(blob_hash, offset, length, chunk)

        second.store.read_range = spy  # type: ignore[method-assign]
        first_info = info_from_p2p_addr(multiaddr.Multiaddr(str(hello["addrs"][0])))  # type: ignore[index]
        await fetcher.host.connect(first_info)
        await fetcher.host.connect(PeerInfo(second.peer_id, second.host.get_addrs()))
        partial = fetcher.store.partial_dir / f"{blob}.part"

        async def kill_midway() -> None:
            await wait_for(lambda: partial.exists() and partial.stat().st_size > size // 3, 30, "a third")
            os.kill(provider.pid, signal.SIGKILL)

        nursery.start_soon(kill_midway)
        info = await fetcher.blobs.fetch(blob, size, [first_info.peer_id, second.peer_id])
        assert info.size == size
        assert hashlib.sha256(fetcher.store.path(blob).read_bytes()).hexdigest() == blob
        assert len(served) == 1
        offset, length = served[0]
        assert size // 3 < offset < size and offset + length == size  # resumed where the first stopped
        nursery.cancel_scope.cancel()


def test_connected_peers_that_hold_a_public_blob_are_found_as_providers(tmp_path: Path) -> None:
    data, secret = os.urandom(100_000), os.urandom(1000)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            holder = await start(nursery, make_service(tmp_path, "holder"))
            owner = await start(nursery, make_service(tmp_path, "owner"))
            empty = await start(nursery, make_service(tmp_path, "empty"))
            fetcher = await start(nursery, make_service(tmp_path, "fetcher"))
            for peer in (holder, owner, empty):
                await connect(fetcher, peer)
            blob = put(holder, data)
            private = put(owner, secret, public=False)
            assert await fetcher.blobs.find_providers(fetcher.requests, blob) == [holder.peer_id]
            assert await fetcher.blobs.find_providers(fetcher.requests, private) == []  # never revealed
            info = await fetcher.fetch_blob(blob, len(data))  # no hint: found by asking
            assert info.size == len(data) and fetcher.store.path(blob).read_bytes() == data
            nursery.cancel_scope.cancel()

    trio.run(main)
