"""DiLoCo rounds over the real p2p network: a miner's side.

On each gossiped ``DilocoRound`` from the validator it follows (the gossip layer has already checked
the signature, the age and that the signer is an authorised validator): fetch the global model blob
from the announcing peer (the blob layer checks its sha256; it is checked again here and loaded with
``params_from_bytes``, which refuses other names, shapes, dtypes and non-finite values), work out
its shard with ``shards.shard_for``, run H inner steps with ``trainer.diloco``, compress with error
feedback, store the encoded pseudo-gradient as a **private** blob, push it to the validator and then
gossip a signed ``DilocoContribution`` notice naming its hash.

Where the inner steps run: the miner service (``MinerRounds``) runs them in a training child,
``ChildWorker`` (``python -m trainer.diloco.child``: the miner's thread cap and niceness, no GIL
shared with the host, a crash costs the child only); the devnet's scripted miners and the tests run
a ``DilocoMiner`` in a worker thread of their own process.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from miner.db import MinerDB
from miner.rewards import RewardRejected, accept_proof
from node.child import child_command
from p2p.reqresp import RequestRefused
from p2p.service import P2PService, now_ms
from p2p.validation import Accept
from protocol.encoding import decode
from protocol.messages import DilocoContribution, DilocoRound, Receipt, receipt_hash
from protocol.retired import DilocoRoundV1
from protocol.routes import PROOF, RECEIPT
from protocol.signing import SignedMessage, SignerLike, sign
from trainer.config import DilocoConfig
from trainer.diloco.config import CompressionConfig, InnerConfig, check_base_model
from trainer.diloco.data import datasets_folder
from trainer.diloco.miner import DilocoMiner
from trainer.diloco.params import Params, params_from_bytes
from trainer.diloco.shards import shard_for
from trainer.diloco.spec import RoundSpec, spec_to_json
from wallet.receipts import verify_receipt

if TYPE_CHECKING:
    from wallet.rewards import ClaimOutcome

log = logging.getLogger("magnet.diloco")


def spec_from_round(msg: DilocoRound | DilocoRoundV1, miner: str, inner: InnerConfig) -> RoundSpec:
    """The in-process RoundSpec a miner trains against, from the signed round (rounds count from 1
    in process, from 0 on the wire). A v2 round names the inner lr, batch size and compression
    block; from a v1 round the miner's own ``inner`` and the compression default are used."""
    fraction = msg.topk_bps / 10_000 if msg.compression == "topk" else 0.1
    inner = replace(inner, inner_steps=msg.inner_steps)
    block = CompressionConfig().block
    if isinstance(msg, DilocoRound):
        inner = replace(inner, inner_lr=msg.inner_lr_e9 / 1e9, batch_size=msg.batch_size)
        block = msg.block
    compression = CompressionConfig(scheme=msg.compression, topk_fraction=fraction, block=block)
    return RoundSpec(
        round=msg.round + 1, base_model_sha256=msg.model_sha256.hex(), deadline_ms=msg.deadline,
        shard_seed=int.from_bytes(msg.shard_seed, "big"), n_shards=msg.shard_count,
        assignment={miner: shard_for(miner, msg.round, msg.shard_seed, msg.shard_count)},
        inner=inner, compression=compression,
    )  # fmt: skip


@dataclass
class RoundLog:
    round: int
    shard: int
    delta_bytes: int
    seconds: float


@dataclass
class NetworkMiner:
    """One miner on its own host. ``validator`` is the address whose rounds it follows."""

    worker: DilocoMiner | ChildWorker
    signer: SignerLike
    validator: str
    template: Params  # names, shapes and dtypes the global model must have
    inner: InnerConfig = field(default_factory=InnerConfig)
    p2p: P2PService | None = None
    done: list[RoundLog] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    on_round: Callable[[DilocoRound], None] | None = None
    receipts: list[SignedMessage] = field(default_factory=list)  # round receipts from ``validator``
    db: MinerDB | None = None  # the receipt book: receipts and proofs kept here are claimed as usual

    def attach(self, p2p: P2PService, nursery: trio.Nursery, serve_routes: bool = True) -> None:
        """Follow the rounds; with ``serve_routes`` also serve RECEIPT and PROOF (a miner service
        that serves them itself hands DiLoCo receipts to ``take_receipt`` instead)."""
        self.p2p = p2p
        self._nursery = nursery
        p2p.gossip.on(DilocoRound, self._on_round)
        if serve_routes:
            p2p.requests.register(RECEIPT, self._on_receipt, max_request=4096)
            p2p.requests.register(PROOF, self._on_proof, max_request=16384)

    async def _on_proof(self, _peer: str, payload: bytes) -> bytes:
        """Keep the epoch proof of a round receipt held in the book (checked against it)."""
        if self.db is None or self.p2p is None:
            raise RequestRefused("this miner keeps no receipt book")
        try:
            proof, new = accept_proof(self.db, payload, self.p2p.domain)
        except RewardRejected as exc:
            raise RequestRefused(str(exc)) from None
        if new:
            log.info("diloco proof for epoch %d: %d units", proof.epoch, proof.amount)
        return b""

    async def _on_receipt(self, _peer: str, payload: bytes) -> bytes:
        self.take_receipt(payload)
        return b""

    def take_receipt(self, payload: bytes) -> SignedMessage:
        """Keep a round receipt signed by the followed validator for this miner (in memory and in the
        receipt book ``db``); refuse anything else with ``RequestRefused``."""
        assert self.p2p is not None
        try:
            signed = decode(payload)
            signer = verify_receipt(signed, self.p2p.domain)
        except Exception as exc:
            raise RequestRefused(f"receipt does not verify: {exc}") from None
        receipt = signed.message
        if not isinstance(receipt, Receipt) or receipt.miner.lower() != self.signer.address.lower():
            raise RequestRefused("the receipt names another miner")
        if signer.lower() != self.validator.lower():
            raise RequestRefused("the receipt is from a validator this miner does not follow")
        digest = receipt_hash(receipt)
        if all(digest != receipt_hash(r.message) for r in self.receipts):  # type: ignore[arg-type]
            self.receipts.append(signed)
            log.info("diloco receipt: rank %d of %d, %d units in epoch %d",
                     receipt.rank, receipt.pool_size, receipt.amount, receipt.epoch)  # fmt: skip
        if self.db is not None:
            self.db.add_receipt("0x" + receipt.task_id.hex(), receipt.validator, receipt.epoch, receipt.rank,
                                receipt.pool_size, receipt.amount, digest.hex(), payload)  # fmt: skip
        return signed

    def _on_round(self, accepted: Accept, origin: str) -> None:
        msg = accepted.signed.message
        followed = accepted.signer.lower() == self.validator.lower()
        if not isinstance(msg, DilocoRound | DilocoRoundV1) or not followed:
            return
        self._nursery.start_soon(self._contribute, msg, origin)

    def claimed_shard(self, spec: RoundSpec) -> int:
        """The shard named in the notice: the one the rule gives (dishonest test miners override it)."""
        return spec.assignment[self.worker.address]

    async def _contribute(self, msg: DilocoRound | DilocoRoundV1, origin: str) -> None:
        assert self.p2p is not None
        started = time.monotonic()
        try:
            await self.p2p.fetch_blob(msg.model_sha256.hex(), msg.model_size, hints=[origin])
            model_file = self.p2p.store.path(msg.model_sha256.hex())
            spec = spec_from_round(msg, self.worker.address, self.inner)
            blob = await trio.to_thread.run_sync(self._train, spec, model_file)
            blob_hash = self.p2p.store.put_bytes(blob, public=False)
            await self.p2p.blobs.push(origin, blob_hash)
            shard = self.claimed_shard(spec)
            window = self._window(shard)
            notice = DilocoContribution(
                task_id=msg.task_id, miner=self.signer.address, round=msg.round,
                model_sha256=msg.model_sha256, shard=shard, delta_sha256=bytes.fromhex(blob_hash),
                delta_size=len(blob), tokens=spec.inner.inner_steps * spec.inner.batch_size * window,
                issued_at=now_ms(),
            )  # fmt: skip
            await self.p2p.gossip.publish(sign(notice, self.p2p.domain, self.signer))
            self.done.append(RoundLog(msg.round, shard, len(blob), time.monotonic() - started))
        except Exception as exc:  # one failed round must not stop the miner; the validator marks it missing
            log.warning("diloco round %d failed: %s", msg.round, exc)
            self.errors.append(f"round {msg.round}: {exc}")

    def _train(self, spec: RoundSpec, model_file: Path) -> bytes:
        """The encoded contribution (blocking: run in a worker thread): by the training child, or here."""
        if isinstance(self.worker, ChildWorker):
            return self.worker.contribute_file(spec, model_file)
        data = model_file.read_bytes()
        if hashlib.sha256(data).hexdigest() != spec.base_model_sha256:
            raise ValueError("the global model blob does not match the round's sha256")
        return self.worker.contribute(spec, params_from_bytes(data, self.template))

    def _window(self, shard: int) -> int:
        if isinstance(self.worker, ChildWorker):
            return self.worker.window
        return int(self.worker.shards.shards[shard].shape[1]) if self.worker.shards.shards else 0


class ChildWorker:
    """A DiLoCo miner's inner loop in a training child (``python -m trainer.diloco.child``), alive for
    the run: it keeps the miner's AdamW moments and compression residual between rounds. One round
    at a time; a child that died is started again before the next round (fresh moments, as a newly
    joined miner has). Blocking calls: run them in a worker thread."""

    def __init__(self, cfg: DilocoConfig, address: str, folder: Path, threads: int | None = None,
                 nice: int = 0, command: list[str] | None = None) -> None:  # fmt: skip
        self.cfg, self.address, self.folder = cfg, address, folder
        self.threads, self.nice = threads, nice
        self.command = command or child_command("trainer.diloco.child")
        self.window = 0
        self.starts = 0  # children started (a restart after a crash counts)
        self._proc: subprocess.Popen[str] | None = None
        self._lock = threading.Lock()
        self._closed = False

    def start(self) -> None:
        """Start the child and wait until it has built the run's world ("ready")."""
        with self._lock:
            self._ensure()

    def _ensure(self) -> subprocess.Popen[str]:
        if self._proc is not None and self._proc.poll() is None:
            return self._proc
        if self._closed:
            raise RuntimeError("the DiLoCo training child was stopped")
        if self._proc is not None:  # it died: its pipes go with it
            _close_pipes(self._proc)
        self.folder.mkdir(parents=True, exist_ok=True)
        setup = self.folder / "child-setup.json"
        run = {"base_model": self.cfg.base_model, "datasets": self.cfg.datasets, "texts": self.cfg.texts}
        setup.write_text(json.dumps({
            "diloco": run, "folder": str(self.folder / "world"), "address": self.address,
            "threads": self.threads or None,
        }), encoding="utf-8")  # fmt: skip
        cmd = [*self.command, str(setup)]
        if self.nice > 0 and os.name == "posix":
            cmd = ["nice", "-n", str(self.nice), *cmd]
        env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "TOKENIZERS_PARALLELISM": "false",
            "TORCHDYNAMO_DISABLE": "1",
        }
        with (self.folder / "child.stderr.log").open("ab") as log:
            self._proc = subprocess.Popen(
                cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True, encoding="utf-8",
                cwd=str(Path(__file__).resolve().parent.parent), env=env,
            )  # fmt: skip
        self.starts += 1
        if self._closed:  # close() ran while this child was starting: it must not outlive the miner
            self.close()
            raise RuntimeError("the DiLoCo training child was stopped")
        ready = self._event()
        self.window = int(ready.get("window", 0))
        return self._proc

    def _event(self) -> dict[str, Any]:
        """The child's next event; an error event or a dead child raises RuntimeError with why."""
        assert self._proc is not None and self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line:
            code = self._proc.wait()
            raise RuntimeError(
                f"the DiLoCo training child exited ({code}); see {self.folder / 'child.stderr.log'}"
            )
        event = json.loads(line)
        if not isinstance(event, dict) or event.get("event") == "error":
            message = event.get("message") if isinstance(event, dict) else line.strip()
            raise RuntimeError(f"DiLoCo training child: {message}")
        return event

    def contribute_file(self, spec: RoundSpec, model_file: Path) -> bytes:
        """Train this round against the global model in ``model_file``; the encoded contribution."""
        with self._lock:
            proc = self._ensure()
            assert proc.stdin is not None
            out = self.folder / f"delta-{spec.round}-{uuid.uuid4().hex[:8]}.bin"
            request = {
                "op": "round",
                "spec": spec_to_json(spec),
                "model_file": str(model_file),
                "out_file": str(out),
            }
            proc.stdin.write(json.dumps(request) + "\n")
            proc.stdin.flush()
            self._event()
            try:
                return out.read_bytes()
            finally:
                out.unlink(missing_ok=True)

    def close(self, grace_s: float = 5.0) -> None:
        """End the child: close its stdin, then terminate it if it does not leave."""
        self._closed = True
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            if proc.stdin is not None:
                proc.stdin.close()  # end of requests: the child leaves
            proc.wait(timeout=grace_s)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait()
        finally:
            _close_pipes(proc)


def _close_pipes(proc: subprocess.Popen[str]) -> None:
    for pipe in (proc.stdin, proc.stdout):
        if pipe is not None:
            try:
                pipe.close()
            except OSError:  # a pipe to a dead child may fail to flush
                pass


def claim_held(db: MinerDB, registry: Any) -> list[ClaimOutcome]:
    """Claim every unclaimed proof in the receipt book through ``wallet.rewards.claim_proofs`` (as
    ``MinerService`` does) and mark the claimed ones; for a miner run without the service."""
    from wallet.rewards import claim_proofs  # web3 underneath: imported when there is a claim

    proofs = [decode(bytes(row["signed"])).message for row in db.proofs(claimed=False)]
    outcomes = claim_proofs(registry, proofs)  # type: ignore[arg-type]  # rows hold ReceiptProofs only
    for outcome in outcomes:
        if outcome.status != "refused":
            tx = str(getattr(outcome.result, "tx_hash", "")) or "claimed by someone else"
            db.mark_claimed(outcome.proof.receipt_hash.hex(), tx)
    return outcomes


class MinerRounds:
    """The miner side of a DiLoCo run inside ``MinerService`` (``[diloco] enabled = true``): starts
    its training child (``ChildWorker``: it builds the run's world, the same texts, tokenizer and
    shards as the validator's, and runs the inner steps under ``threads`` and ``nice``), then follows
    ``validator``'s rounds with a ``NetworkMiner`` on the service's host, keeping round receipts and
    their proofs in the service's receipt book (the service claims them with its other proofs)."""

    def __init__(self, cfg: DilocoConfig, signer: SignerLike, validator: str, folder: Path,
                 threads: int | None = None, nice: int = 0) -> None:  # fmt: skip
        CompressionConfig(scheme=cfg.compression)  # a bad setting fails at start, before any work
        check_base_model(cfg.base_model)
        datasets_folder(cfg.datasets)  # the shards' files are there
        if not validator:
            raise ValueError("[diloco] validator is empty and the network profile names no validator")
        self.cfg, self.signer, self.validator, self.folder = cfg, signer, validator, folder
        self.child = ChildWorker(cfg, signer.address, folder, threads=threads, nice=nice)
        self.miner: NetworkMiner | None = None
        self.ready = trio.Event()

    def owns(self, receipt: Receipt) -> bool:
        """A round receipt of the followed validator (its task id is not a task the miner took)."""
        return self.miner is not None and receipt.validator.lower() == self.validator.lower()

    async def run(self, p2p: P2PService, db: MinerDB, nursery: trio.Nursery) -> None:
        """Follow the rounds at once, then start the training child; the child ends when this task is
        cancelled. A round announced while the child is still starting (torch, the run's world: 10-30 s
        on a busy 2-core machine) is not missed: its training waits for the child (``ChildWorker``'s
        lock) and still has the round's deadline to meet. The validator announces each round once."""
        try:
            inner = InnerConfig(inner_steps=self.cfg.inner_steps)
            self.miner = NetworkMiner(self.child, self.signer, self.validator, {}, inner, db=db)
            self.miner.attach(p2p, nursery, serve_routes=False)
            log.info("diloco: following the rounds of validator %s", self.validator)
            await trio.to_thread.run_sync(self.child.start, abandon_on_cancel=True)  # type: ignore[call-arg]
            self.ready.set()
            await trio.sleep_forever()
        finally:
            self.child.close()

    def take(self, payload: bytes, db: MinerDB) -> bool:
        """The service's RECEIPT route hands every receipt here first: True when it was a round
        receipt of the followed validator, now in the book (``RequestRefused`` when it does not
        verify); False for anything else (a task receipt), which the service takes as before."""
        try:
            receipt = decode(payload).message
        except Exception:
            return False
        if not isinstance(receipt, Receipt) or self.miner is None or not self.owns(receipt):
            return False
        if db.task("0x" + receipt.task_id.hex()) is not None:
            return False
        self.miner.take_receipt(payload)
        return True
