"""p2p benchmark: 20 real nodes in 4 processes on 127.0.0.1, with the real topic validators. Prints JSON.

Figures, each measured in this one run:

- ``gossip_5``: delivery ratio and latency p50 / p99 (issued_at to handler, ms) of signed Commitments
  published at 5 messages/s network-wide (targets: 100 % and p99 < 250 ms);
- ``sweep``: the same at rising rates; ``max_rate_full_delivery_1s`` is the highest rate at which every
  node received every message within 1 s;
- ``cpu_ms_per_msg_per_node``: CPU time of the 4 processes during a phase / (messages x 20 nodes);
- ``blob``: MB/s of a p2p blob fetch (``BlobService.fetch``: header, hash while receiving, file writes,
  atomic rename) against a bare py-libp2p stream copy of the same size between the same two processes
  (its baseline, 256 KiB writes), with the ratio (target >= 0.8). Other load makes MB/s swing, so it
  also reports ``ratio_pair_median`` (median over interleaved pairs), CPU ms per MB of each end and
  ``cpu_ratio`` (bare / p2p CPU per MB), and ``calls_per_fetch``: real calls of the libp2p layers the
  bytes cross (cProfile counts each resume of a waiting coroutine as a call: no measure of work).

Run: ``.venv/bin/python bench/p2p.py [--duration S] [--rates 10,15,20,30] [--blob-mb N]``; the blob
comparison alone: ``--only-blob [--blob-repeats 7]``.
Each worker is this file run with ``--worker``; they take commands as JSON lines on stdin.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from p2p.config import P2PConfig
from p2p.service import IDENTITY_REPEATS

NODES_PER_WORKER = 5
WORKERS = 4
BARE_PROTOCOL = "/magnet-bench/copy/1.0.0"
BARE_WRITE_BYTES = 262144  # the baseline's write size (blob_chunk_bytes' old default); --bare-write-bytes


# --- worker process -------------------------------------------------------------------------------

# Real calls (not coroutine resumes, which cProfile also counts as calls) of the layers a blob crosses,
# counted per process: stream reads/writes, yamux frames, Noise messages, socket reads/writes.
COUNTED = {
    "stream_reads": ("libp2p.network.stream.net_stream", "NetStream", "read"),
    "stream_writes": ("libp2p.network.stream.net_stream", "NetStream", "write"),
    "yamux_frames_sent": ("libp2p.stream_muxer.yamux.yamux", "Yamux", "_write_frame"),
    "yamux_data_frames_received": ("libp2p.stream_muxer.yamux.yamux", "Yamux", "_read_data_body"),
    "noise_encrypts": ("libp2p.security.noise.io", "NoiseTransportReadWriter", "encrypt"),
    "noise_decrypts": ("libp2p.security.noise.io", "NoiseTransportReadWriter", "decrypt"),
    "socket_reads": ("libp2p.io.trio", "TrioTCPStream", "read"),
    "socket_writes": ("libp2p.io.trio", "TrioTCPStream", "write"),
}
CALLS: dict[str, int] = dict.fromkeys(COUNTED, 0)


def install_call_counters() -> None:
    """Wrap the COUNTED methods so that each real call adds one to CALLS (a few ms per fetch)."""
    import functools
    import importlib
    import inspect

    for key, (module, cls_name, method) in COUNTED.items():
        cls = getattr(importlib.import_module(module), cls_name)
        original = getattr(cls, method)

        def make(key: str, original: Any) -> Any:
            if inspect.iscoroutinefunction(original):
                @functools.wraps(original)
                async def counted_async(*args: Any, **kwargs: Any) -> Any:
                    CALLS[key] += 1
                    return await original(*args, **kwargs)
                return counted_async

            @functools.wraps(original)
            def counted(*args: Any, **kwargs: Any) -> Any:
                CALLS[key] += 1
                return original(*args, **kwargs)
            return counted

        setattr(cls, method, make(key, original))


def worker_main(index: int, root: Path) -> None:
    import logging

    import trio

    if os.environ.get("BENCH_DEBUG"):
        logging.basicConfig(level=logging.WARNING, format=f"w{index} %(name)s %(message)s")
        logging.getLogger("magnet.p2p.gossip").setLevel(logging.DEBUG)

    install_call_counters()
    trio.run(Worker(index, root).run)


class Worker:
    """Five p2p services in one trio loop, driven by JSON commands on stdin."""

    def __init__(self, index: int, root: Path) -> None:
        self.index = index
        self.root = root
        self.deliveries: dict[int, list[float]] = {}
        self.sent_at: dict[int, list[float]] = {}  # per delivery: ms since the phase's first publish
        self.probes: dict[int, list[float]] = {}
        self.published: dict[int, int] = {}
        self.cpu_mark = 0.0
        self.rejections: dict[str, int] = {}

    async def run(self) -> None:
        import trio

        from p2p.config import P2PConfig
        from p2p.events import MessageRejected
        from p2p.service import LocalPeer, P2PService
        from p2p.validation import AllowListAuthorizer
        from protocol.messages import ROLE_MINER, Commitment
        from protocol.signing import Domain
        from wallet.signer import LocalSigner

        domain = Domain(chain_id=31337, verifying_contract="0x" + "11" * 20, salt=b"\x07" * 32)
        self.domain = domain
        config = P2PConfig(listen_addrs=["/ip4/127.0.0.1/tcp/0"], publish_rate=50.0, publish_burst=50,
                           max_message_bytes=65536)
        self.nodes = [P2PService(config, self.root / f"w{self.index}n{i}", domain,
                                 LocalPeer(LocalSigner.create(), ROLE_MINER),
                                 authorizer=AllowListAuthorizer(())) for i in range(NODES_PER_WORKER)]
        async with trio.open_nursery() as nursery:
            for node in self.nodes:
                await nursery.start(node.run)
                node.gossip.on(Commitment, self._on_commitment)
                node.bus.subscribe(self._on_rejected, [MessageRejected])
            self.reply({"addrs": [node.addrs()[0] for node in self.nodes]})
            if os.environ.get("BENCH_TRACE"):
                nursery.start_soon(self._trace)
            while True:
                line = await trio.to_thread.run_sync(sys.stdin.readline)
                if not line:
                    break
                command = json.loads(line)
                if command["cmd"] == "quit":
                    break
                try:
                    result = await getattr(self, "cmd_" + command["cmd"])(nursery, **command.get("args", {}))
                except Exception as exc:  # reported to the coordinator, which stops the run
                    result = {"error": f"{command['cmd']}: {exc!r}"}
                self.reply(result)
            nursery.cancel_scope.cancel()

    async def _trace(self) -> None:
        import trio

        last_conns = -1
        while True:
            before = time.time()
            await trio.sleep(0.01)
            lag = time.time() - before - 0.01
            conns = sum(len(n.host.get_network().connections) for n in self.nodes)
            if lag > 0.1 or conns != last_conns:
                sys.stderr.write(f"TRACE w{self.index} {time.time():.3f} lag={lag:.3f} conns={conns}\n")
                last_conns = conns

    def reply(self, value: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(value) + "\n")
        sys.stdout.flush()

    def _on_rejected(self, event: Any) -> None:
        self.rejections[event.reason] = self.rejections.get(event.reason, 0) + 1

    def _on_commitment(self, accepted: Any, _origin: str) -> None:
        message = accepted.signed.message
        phase = message.task_id[0]
        latency = time.time() * 1000 - message.issued_at
        if phase == 0:  # warm-up probes: kept per probe
            self.probes.setdefault(int.from_bytes(message.task_id[2:6], "big"), []).append(latency)
            return
        self.deliveries.setdefault(phase, []).append(latency)
        self.sent_at.setdefault(phase, []).append(message.issued_at)

    async def cmd_connect(self, nursery: Any, peers: list[list[str]]) -> dict[str, Any]:
        from libp2p.peer.peerinfo import info_from_p2p_addr
        from multiaddr import Multiaddr

        for node, targets in zip(self.nodes, peers, strict=True):
            for target in targets:
                await node.host.connect(info_from_p2p_addr(Multiaddr(target)))
        return {"ok": True}

    async def cmd_publish(self, nursery: Any, phase: int, rate: float, duration: float) -> dict[str, Any]:
        """Publish this worker's share (rate / WORKERS per second), round robin over its nodes."""
        import trio

        from protocol.messages import Commitment
        from protocol.signing import sign

        interval = WORKERS / rate
        start = trio.current_time() + (self.index / WORKERS) * interval  # stagger the workers
        count = int(duration * rate / WORKERS)
        for seq in range(count):
            await trio.sleep_until(start + seq * interval)
            node = self.nodes[seq % NODES_PER_WORKER]
            task_id = bytes([phase, self.index]) + seq.to_bytes(4, "big") + b"\x00" * 26
            message = Commitment(task_id=task_id, miner=node.local.signer.address, commitment=b"\x01" * 32,
                                 issued_at=int(time.time() * 1000))
            await node.gossip.publish(sign(message, self.domain, node.local.signer))
        self.published[phase] = count
        return {"published": count}

    async def cmd_probe(self, nursery: Any, seq: int) -> dict[str, Any]:
        """Publish warm-up probe ``seq`` (phase 0) from one of this worker's nodes."""
        from protocol.messages import Commitment
        from protocol.signing import sign

        node = self.nodes[seq % NODES_PER_WORKER]
        task_id = bytes([0, self.index]) + seq.to_bytes(4, "big") + b"\x00" * 26
        message = Commitment(task_id=task_id, miner=node.local.signer.address, commitment=b"\x01" * 32,
                             issued_at=int(time.time() * 1000))
        await node.gossip.publish(sign(message, self.domain, node.local.signer))
        return {"ok": True}

    async def cmd_probe_report(self, nursery: Any, seq: int) -> dict[str, Any]:
        return {"latencies": self.probes.get(seq, [])}

    async def cmd_profile(self, nursery: Any, path: str = "") -> dict[str, Any]:
        """Start cProfile on this worker's trio thread; with ``path``, stop and write stats there."""
        import cProfile

        if not path:
            self.profiler = cProfile.Profile()
            self.profiler.enable()
        else:
            self.profiler.disable()
            self.profiler.dump_stats(path)
        return {"ok": True}

    async def cmd_cpu_mark(self, nursery: Any) -> dict[str, Any]:
        # thread_time: the trio thread alone (process_time adds worker threads such as the blob writer)
        return {"cpu": time.process_time(), "loop_cpu": time.thread_time(), "calls": dict(CALLS)}

    async def cmd_report(self, nursery: Any, phase: int) -> dict[str, Any]:
        return {"latencies": self.deliveries.get(phase, []), "sent_at": self.sent_at.get(phase, []),
                "cpu": time.process_time(), "rejections": dict(self.rejections)}

    async def cmd_diag(self, nursery: Any) -> dict[str, Any]:
        """Per node: mesh size on the commitments topic, peers connected, identities known."""
        from p2p.validation import topic

        full = topic("commitments")
        return {"nodes": [{"mesh": len(node.gossip.router.mesh.get(full, ())),
                           "peers": len(node.host.get_network().connections),
                           "known": len(node.peerbook) - 1,
                           "sig_checks": node.gossip.checker.signature_checks}
                          for node in self.nodes]}

    async def cmd_blob_put(self, nursery: Any, size: int, bare_write_bytes: int) -> dict[str, Any]:
        data = os.urandom(size)
        self.payload = data
        node = self.nodes[0]
        blob_hash = node.store.put_bytes(data, public=True)

        async def copy_out(stream: Any) -> None:  # the baseline: bare stream copy of the same bytes
            chunk = bare_write_bytes
            for offset in range(0, len(data), chunk):
                await stream.write(data[offset:offset + chunk])
            await stream.close()

        from libp2p.custom_types import TProtocol

        node.host.set_stream_handler(TProtocol(BARE_PROTOCOL), copy_out)
        return {"hash": blob_hash, "peer": node.peer_id.to_string(), "addr": node.addrs()[0]}

    async def cmd_blob_fetch(self, nursery: Any, blob_hash: str, size: int, addr: str,
                             bare: bool) -> dict[str, Any]:
        from libp2p.custom_types import TProtocol
        from libp2p.peer.peerinfo import info_from_p2p_addr
        from multiaddr import Multiaddr

        node = self.nodes[0]
        info = info_from_p2p_addr(Multiaddr(addr))
        await node.host.connect(info)
        if not bare and node.store.has(blob_hash):
            node.store.delete(blob_hash)  # the last run's copy: setup, not part of the fetch
        calls_before = dict(CALLS)
        started = time.perf_counter()
        cpu_started = time.process_time()
        loop_cpu_started = time.thread_time()
        if bare:
            for attempt in range(3):  # as fetch() retries a provider; an overloaded host may not answer
                try:
                    stream = await node.host.new_stream(info.peer_id, [TProtocol(BARE_PROTOCOL)])
                    break
                except Exception:
                    if attempt == 2:
                        raise
            received = 0
            while received < size:
                data = await stream.read(1 << 20)
                if not data:
                    break
                received += len(data)
            await stream.close()
        else:
            await node.blobs.fetch(blob_hash, size, [info.peer_id])
            received = size
        return {"seconds": time.perf_counter() - started, "bytes": received,
                "cpu": time.process_time() - cpu_started, "loop_cpu": time.thread_time() - loop_cpu_started,
                "calls": {k: v - calls_before[k] for k, v in CALLS.items()}}


# --- coordinator ----------------------------------------------------------------------------------

class Fleet:
    def __init__(self, root: Path) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        debug = bool(os.environ.get("BENCH_DEBUG") or os.environ.get("BENCH_TRACE"))
        self.procs = [subprocess.Popen([sys.executable, __file__, "--worker", str(i), str(root)],
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                       stderr=None if debug else subprocess.DEVNULL,
                                       text=True, env=env)
                      for i in range(WORKERS)]
        self.addrs = [self.read(i)["addrs"] for i in range(WORKERS)]

    def read(self, i: int) -> dict[str, Any]:
        stdout = self.procs[i].stdout
        assert stdout is not None
        line = stdout.readline()
        if not line:
            raise RuntimeError(f"bench worker {i} exited")
        result: dict[str, Any] = json.loads(line)
        if "error" in result:
            raise RuntimeError(f"bench worker {i} failed: {result['error']}")
        return result

    def send(self, i: int, cmd: str, **args: Any) -> None:
        stdin = self.procs[i].stdin
        assert stdin is not None
        stdin.write(json.dumps({"cmd": cmd, "args": args}) + "\n")
        stdin.flush()

    def all(self, cmd: str, **args: Any) -> list[dict[str, Any]]:
        for i in range(WORKERS):
            self.send(i, cmd, **args)
        return [self.read(i) for i in range(WORKERS)]

    def close(self) -> None:
        for proc in self.procs:
            try:
                self.send(self.procs.index(proc), "quit")
                proc.wait(timeout=20)
            except Exception:
                proc.kill()
                proc.wait()
            for pipe in (proc.stdin, proc.stdout):
                if pipe is not None:
                    try:
                        pipe.close()
                    except OSError:
                        pass


def topology(addrs: list[str]) -> list[list[str]]:
    """Each node dials 3 others (offsets 1, 5, 11): a connected graph of degree ~6 across processes."""
    n = len(addrs)
    return [[addrs[(i + k) % n] for k in (1, 5, 11)] for i in range(n)]


def run_phase(fleet: Fleet, phase: int, rate: float, duration: float, drain: float) -> dict[str, Any]:
    diag = [n for r in fleet.all("diag") for n in r["nodes"]]
    cpu_before = sum(r["cpu"] for r in fleet.all("cpu_mark"))
    wall_before = time.time()
    published = sum(r["published"] for r in fleet.all("publish", phase=phase, rate=rate, duration=duration))
    time.sleep(drain)
    reports = fleet.all("report", phase=phase)
    cpu = sum(r["cpu"] for r in reports) - cpu_before
    wall = time.time() - wall_before
    latencies = sorted(lat for r in reports for lat in r["latencies"])
    expected = published * (WORKERS * NODES_PER_WORKER - 1)
    rejections: dict[str, int] = {}
    for report in reports:
        for reason, count in report["rejections"].items():
            rejections[reason] = rejections.get(reason, 0) + count
    within_1s = sum(1 for lat in latencies if lat <= 1000)
    pairs = [(sent, lat) for r in reports for sent, lat in zip(r["sent_at"], r["latencies"], strict=True)]
    first = min((sent for sent, _ in pairs), default=0.0)
    by_second: dict[int, list[float]] = {}
    for sent, lat in pairs:
        by_second.setdefault(int((sent - first) // 1000), []).append(lat)
    return {
        "first_publish_at": round(first / 1000, 3),
        "start_mesh_sizes": sorted(n["mesh"] for n in diag),
        "start_identities_known": sorted(n["known"] for n in diag),
        "p99_by_publish_second": {s: round(percentile(sorted(v), 99), 1)
                                  for s, v in sorted(by_second.items())},
        "rate": rate, "published": published, "expected_deliveries": expected,
        "delivered": len(latencies), "delivery_ratio": round(len(latencies) / expected, 4) if expected else 0,
        "delivered_within_1s_ratio": round(within_1s / expected, 4) if expected else 0,
        "latency_ms_p50": round(percentile(latencies, 50), 1),
        "latency_ms_p99": round(percentile(latencies, 99), 1),
        "cpu_ms_per_msg_per_node": round(1000 * cpu / max(1, published * WORKERS * NODES_PER_WORKER), 2),
        "rejections_so_far": rejections,
        # Cores the 4 processes got during the phase: far below the 2 cores when others load the machine.
        "cores_used": round(cpu / wall, 2),
    }


def warm_up(fleet: Fleet, connected_at: float, limit: float = 30.0) -> dict[str, Any]:
    """Seconds from the end of connecting until one message reaches all other nodes within 250 ms.

    A probe goes out every ~0.5 s from a different node (workers in turn); each is judged 0.4 s later.
    """
    nodes = WORKERS * NODES_PER_WORKER
    seq = 0
    while time.time() - connected_at < limit:
        sent = time.time()
        worker = seq % WORKERS
        fleet.send(worker, "probe", seq=seq)
        fleet.read(worker)
        time.sleep(0.4)
        latencies = [lat for r in fleet.all("probe_report", seq=seq) for lat in r["latencies"]]
        if len(latencies) == nodes - 1 and max(latencies) < 250:
            return {"warm_up_s": round(sent - connected_at, 2), "probes": seq + 1,
                    "probe_max_ms": round(max(latencies), 1)}
        seq += 1
        time.sleep(max(0.0, 0.5 - (time.time() - sent)))
    return {"warm_up_s": None, "probes": seq,
            "note": f"no probe reached all nodes within 250 ms in {limit} s"}


def cpu_rate(fleet: Fleet, seconds: float = 1.0) -> float:
    """CPU seconds per second used by all workers together, over ``seconds``."""
    before = sum(r["cpu"] for r in fleet.all("cpu_mark"))
    time.sleep(seconds)
    return (sum(r["cpu"] for r in fleet.all("cpu_mark")) - before) / seconds


def settle(fleet: Fleet, idle: float, limit: float = 60.0) -> float:
    """Wait until an overloaded phase's backlog is processed (CPU back near idle); seconds waited."""
    started = time.time()
    while time.time() - started < limit and cpu_rate(fleet) > max(2 * idle, idle + 0.1):
        pass
    return round(time.time() - started, 1)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    index = min(len(values) - 1, max(0, round(q / 100 * (len(values) - 1))))
    return values[index]


def blob_bench(fleet: Fleet, size: int, repeats: int,
               bare_write_bytes: int = BARE_WRITE_BYTES) -> dict[str, Any]:
    """p2p fetch vs bare stream copy of ``size`` bytes, in ``repeats`` interleaved pairs.

    Wall-clock MB/s swings with other load on the machine; the figures that load distorts least are
    the median of the per-pair ratios (both fetches of a pair run back to back, in alternating order)
    and CPU time per MB of each end, with the real call counts of the layers the bytes cross.
    """
    load_before = os.getloadavg()
    fleet.send(0, "blob_put", size=size, bare_write_bytes=bare_write_bytes)
    put = fleet.read(0)
    kinds = ("p2p", "bare")
    timings: dict[str, list[float]] = {k: [] for k in kinds}
    cpu: dict[str, dict[str, list[float]]] = {end: {k: [] for k in kinds} for end in ("fetcher", "server")}
    loop_cpu: dict[str, dict[str, list[float]]] = {end: {k: [] for k in kinds}
                                                  for end in ("fetcher", "server")}
    calls: dict[str, dict[str, list[dict[str, int]]]] = {end: {k: [] for k in kinds}
                                                         for end in ("fetcher", "server")}
    profile = os.environ.get("BENCH_PROFILE")  # a folder: cProfile stats of both ends of each fetch
    for kind in ("bare", "p2p"):  # warm-up: connection, TCP and yamux windows, page cache
        fleet.send(1, "blob_fetch", blob_hash=put["hash"], size=size, addr=put["addr"], bare=kind == "bare")
        fleet.read(1)
    for pair in range(repeats):
        # interleaved, so background load hits both alike; the order alternates so neither always goes first
        for kind in ("bare", "p2p") if pair % 2 == 0 else ("p2p", "bare"):
            if profile:
                for i in (0, 1):
                    fleet.send(i, "profile")
                    fleet.read(i)
            fleet.send(0, "cpu_mark")
            server_before = fleet.read(0)
            fleet.send(1, "blob_fetch", blob_hash=put["hash"], size=size, addr=put["addr"],
                       bare=kind == "bare")
            result = fleet.read(1)
            assert result["bytes"] == size, result
            timings[kind].append(result["seconds"])
            fleet.send(0, "cpu_mark")
            server_after = fleet.read(0)
            cpu["server"][kind].append(server_after["cpu"] - server_before["cpu"])
            loop_cpu["server"][kind].append(server_after["loop_cpu"] - server_before["loop_cpu"])
            calls["server"][kind].append({k: v - server_before["calls"][k]
                                          for k, v in server_after["calls"].items()})
            cpu["fetcher"][kind].append(result["cpu"])
            loop_cpu["fetcher"][kind].append(result["loop_cpu"])
            calls["fetcher"][kind].append(result["calls"])
            if profile:
                for i in (0, 1):
                    name = f"{kind}-w{i}-{len(timings[kind])}.prof"
                    fleet.send(i, "profile", path=str(Path(profile) / name))
                    fleet.read(i)
    mb = size / 1e6
    best = {k: mb / min(v) for k, v in timings.items()}
    median = {k: mb / statistics.median(v) for k, v in timings.items()}
    pair_ratios = [bare / p2p for p2p, bare in zip(timings["p2p"], timings["bare"], strict=True)]
    both = {k: [f + s for f, s in zip(cpu["fetcher"][k], cpu["server"][k], strict=True)] for k in kinds}
    cpu_per_mb = {end: {k: round(1000 * statistics.median(v) / mb, 2) for k, v in by_kind.items()}
                  for end, by_kind in (*cpu.items(), ("both", both))}
    return {
        "size_mb": round(mb, 1), "repeats": repeats, "bare_write_bytes": bare_write_bytes,
        "p2p_mb_s_best": round(best["p2p"], 1), "bare_mb_s_best": round(best["bare"], 1),
        "ratio_best": round(best["p2p"] / best["bare"], 3),
        "p2p_mb_s_median": round(median["p2p"], 1), "bare_mb_s_median": round(median["bare"], 1),
        "ratio_median": round(median["p2p"] / median["bare"], 3),
        # Median over pairs of (bare seconds / p2p seconds): each pair's two fetches see about the same load.
        "ratio_pair_median": round(statistics.median(pair_ratios), 3),
        "ratio_pairs": [round(r, 3) for r in pair_ratios],
        # CPU per fetch (ms, medians; the fetcher's includes its write/hash thread): less sensitive
        # to other load than MB/s. Both processes busy at once bound the rate on 2 cores.
        "cpu_ms_fetcher": {k: round(1000 * statistics.median(v)) for k, v in cpu["fetcher"].items()},
        "cpu_ms_server": {k: round(1000 * statistics.median(v)) for k, v in cpu["server"].items()},
        # The same per MB, and for both ends together; cpu_ratio = bare / p2p CPU per MB (1.0: same work).
        "cpu_ms_per_mb": cpu_per_mb,
        "cpu_ratio": round(cpu_per_mb["both"]["bare"] / cpu_per_mb["both"]["p2p"], 3),
        # The trio thread alone (the fetcher's p2p hashing and file writes run in a worker thread).
        "loop_cpu_ms": {end: {k: round(1000 * statistics.median(v)) for k, v in by_kind.items()}
                        for end, by_kind in loop_cpu.items()},
        # Median real calls per fetch in each process (the gossip of its other nodes included: a few).
        "calls_per_fetch": {end: {k: {name: round(statistics.median(c[name] for c in runs))
                                      for name in COUNTED}
                                  for k, runs in by_kind.items()}
                            for end, by_kind in calls.items()},
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of publishing per phase")
    parser.add_argument("--rates", default="10,15,20,30,40", help="sweep rates (messages/s network-wide)")
    parser.add_argument("--blob-mb", type=int, default=32)
    parser.add_argument("--blob-repeats", type=int, default=7, help="interleaved p2p/bare pairs")
    parser.add_argument("--bare-write-bytes", type=int, default=BARE_WRITE_BYTES,
                        help="write size of the bare copy (65507: one yamux frame per Noise message, as p2p)")
    parser.add_argument("--only-blob", action="store_true", help="skip the gossip phases")
    parser.add_argument("--skip-blob", action="store_true", help="skip the blob comparison")
    args = parser.parse_args()
    started = time.time()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="magnet-bench-p2p-") as tmp:
        fleet = Fleet(Path(tmp))
        try:
            flat = [a for addrs in fleet.addrs for a in addrs]
            links = topology(flat)
            for i in range(WORKERS):
                fleet.send(i, "connect", peers=links[i * NODES_PER_WORKER:(i + 1) * NODES_PER_WORKER])
            for i in range(WORKERS):
                fleet.read(i)
            connected_at = time.time()
            if args.only_blob:
                size = args.blob_mb * 1024 * 1024
                print(json.dumps(blob_bench(fleet, size, args.blob_repeats, args.bare_write_bytes)))
                return
            warm = warm_up(fleet, connected_at)
            # Steady state: every node re-gossips its Identity IDENTITY_REPEATS heartbeats after its
            # first connection. The 20 nodes here connect within ~1 s of each other, so the last round
            # is a burst of 20 Identities (380 EIP-712 checks) that delayed a 5 msg/s phase overlapping
            # it by up to ~2.5 s. A real network's nodes start at different times; wait the burst out.
            quiet_at = connected_at + IDENTITY_REPEATS[-1] * P2PConfig().gossip_heartbeat * 1.25 + 2.0
            time.sleep(max(0.0, quiet_at - time.time()))
            idle_cpu_per_s = cpu_rate(fleet, 3.0)
            # Blobs first: an overloaded gossip phase leaves a backlog that lasts long after it.
            try:
                size = args.blob_mb * 1024 * 1024
                blob = {} if args.skip_blob else blob_bench(fleet, size, args.blob_repeats,
                                                            args.bare_write_bytes)
            except RuntimeError as exc:
                blob = {"error": str(exc)}
            gossip_5 = run_phase(fleet, 1, 5.0, args.duration, drain=3.0)
            sweep, best_rate = [], 5.0 if gossip_5["delivered_within_1s_ratio"] >= 1.0 else 0.0
            for phase, rate in enumerate((float(r) for r in args.rates.split(",")), start=2):
                result = run_phase(fleet, phase, rate, args.duration * 0.6, drain=3.0)
                result["settle_s"] = settle(fleet, idle_cpu_per_s)
                sweep.append(result)
                if result["delivered_within_1s_ratio"] < 1.0:
                    break
                best_rate = rate
        finally:
            fleet.close()
    print(json.dumps({
        "bench": "p2p", "nodes": WORKERS * NODES_PER_WORKER, "processes": WORKERS,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "loadavg_before": [round(x, 2) for x in load_before],
                    "loadavg_after": [round(x, 2) for x in os.getloadavg()]},
        "idle_cpu_s_per_s_all_processes": round(idle_cpu_per_s, 3),
        "warm_up": warm, "measured_from_s_after_connect": round(quiet_at - connected_at, 1),
        "gossip_5": gossip_5, "sweep": sweep, "max_rate_full_delivery_1s": best_rate,
        "cpu_ms_per_msg_per_node": gossip_5["cpu_ms_per_msg_per_node"],
        "blob": blob, "wall_s": round(time.time() - started, 1),
    }, indent=2))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker_main(int(sys.argv[2]), Path(sys.argv[3]))
    else:
        main()
