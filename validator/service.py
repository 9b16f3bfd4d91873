"""The validator as a node service: intake routes, gossip, the task lifecycle, epochs and the API.

``create_service(core)`` builds it from the node's config, network profile and signer (the
profile's domain signs every message; its JSON-RPC URL and registry are the chain). The service
uses the node's p2p service when one is plugged in and offers gossip, blobs and requests;
otherwise it runs its own ``p2p.service.P2PService`` inside its task (the p2p package has no
``create_service`` yet).

Loops, all in the core's trio thread (blocking work goes to worker threads):

* lifecycle: every ``tick_s``, one step of every active task (validator.lifecycle);
* epochs: every ``epoch_poll_s``, close past epochs (validator.epoch_close);
* delivery: receipts, proofs and assignments not yet delivered, over connections miners opened;
* synthetic tasks: one every ``synthetic_interval_s`` when that is positive.
"""

from __future__ import annotations

import json
import logging
import random
import time
from pathlib import Path
from typing import Any

import trio

from node.service import CoreContext, TaskStatus
from p2p.gossip import PublishRejected
from p2p.reqresp import RequestFailed, RequestRefused
from p2p.validation import Accept
from protocol.encoding import decode
from protocol.messages import Commitment
from protocol.routes import JOIN, PROOF, PROOF_PICKUP, RECEIPT, RECEIPT_PICKUP, REVEAL, TASK_STATUS
from protocol.signing import Domain, SignerLike
from validator.config import ValidatorConfig
from validator.db import ValidatorDB
from validator.intake import Intake, IntakeRefused
from validator.lifecycle import ChainAccess, TaskEngine
from validator.selection import JoinGate
from validator.tasks import TaskInputError, draw_synthetic_source, sample_rows

log = logging.getLogger("magnet.validator")
DELIVERY_TIMEOUT_S = 5.0


class P2PNet:
    """validator.lifecycle.Net over a P2PService (or any object with gossip, requests, store, peerbook)."""

    def __init__(self, p2p: Any) -> None:
        self.p2p = p2p

    async def publish(self, signed: bytes) -> None:
        try:
            await self.p2p.gossip.publish(decode(signed))
        except PublishRejected as exc:
            log.error("gossip publish refused: %s", exc)

    async def send(self, peer_id: str, route: str, payload: bytes) -> bool:
        """Deliver over a connection the peer opened (never dialling it); False when not possible now."""
        try:
            await self.p2p.requests.request(peer_id, route, payload, dial=False, timeout=DELIVERY_TIMEOUT_S)
            return True
        except (RequestFailed, RequestRefused, ValueError) as exc:
            log.debug("delivery of %s to %s postponed: %s", route, peer_id, exc)
            return False

    def put_public_file(self, path: Path) -> str:
        return str(self.p2p.store.put_file(path, public=True, pinned=True))

    def blob_path(self, blob_hash: str) -> Path | None:
        return Path(self.p2p.store.path(blob_hash)) if self.p2p.store.has(blob_hash) else None

    def payout_of(self, address: str) -> str:
        peer = self.p2p.peerbook.peer_of(address)
        record = self.p2p.peerbook.get(peer) if peer else None
        return str(record.payout_address) if record is not None else address


class ValidatorService:
    """The validator role of a node."""

    name = "validator"

    def __init__(
        self,
        cfg: ValidatorConfig,
        root: Path,
        domain: Domain,
        signer: SignerLike,
        p2p: Any,
        chain: ChainAccess | None = None,
        own_p2p: bool = False,
        diloco: Any = None,
    ) -> None:
        problems = cfg.problems()
        if problems:
            raise ValueError("validator settings: " + "; ".join(problems))
        self.cfg = cfg
        self.root = root
        self.domain = domain
        self.signer = signer
        self.p2p = p2p
        self.own_p2p = own_p2p
        self.chain = chain
        self.net = P2PNet(p2p)
        self.db: ValidatorDB | None = None
        self.engine: TaskEngine | None = None
        self.api: Any = None
        self._stopping = trio.Event()
        self.gate = JoinGate(cfg)
        self.diloco_cfg = diloco  # trainer.config.DilocoConfig: DiLoCo rounds when enabled
        self.rounds: Any = None  # validator.diloco.role.ValidatorRounds while they run

    # --- lifecycle -------------------------------------------------------------------------------
    async def run(self, core: CoreContext, task_status: TaskStatus[None]) -> None:
        self.db = ValidatorDB(core.store)
        intake = Intake(self.db, self.domain, self.signer, self.gate, self.net.payout_of, self.net.blob_path)
        self.engine = TaskEngine(
            self.db, self.cfg, self.domain, self.signer, intake, self.net, self.root / "tasks", self.chain
        )
        async with trio.open_nursery() as nursery:
            if self.own_p2p:
                await nursery.start(self.p2p.run)
            self.engine.nursery = nursery
            self._wire(intake)
            self._start_rounds(nursery)
            for loop in (self._lifecycle_loop, self._delivery_loop, self._epoch_loop, self._synthetic_loop):
                nursery.start_soon(loop)
            self._start_api()
            task_status.started()
            log.info("validator %s serving (data in %s)", self.signer.address, self.root)
            await self._stopping.wait()
            self._stop_api()
            if self.own_p2p:
                self.p2p.stop()
            nursery.cancel_scope.cancel()

    async def stop(self) -> None:
        self._stopping.set()

    def identity(self) -> dict[str, str]:
        port = self.api.port if self.api is not None else 0
        return {"validator_api": f"http://127.0.0.1:{port}" if port else "off"}

    # --- wiring ---------------------------------------------------------------------------------
    def _wire(self, intake: Intake) -> None:
        requests = self.p2p.requests
        requests.register(JOIN, self._on_join, max_request=4096)
        requests.register(REVEAL, self._guard(intake.on_reveal), max_request=4096)
        requests.register(TASK_STATUS, self._on_task_status, max_request=64)
        requests.register(RECEIPT_PICKUP, self._on_receipt_pickup, max_request=64)
        requests.register(PROOF_PICKUP, self._on_proof_pickup, max_request=64)
        self.p2p.gossip.on(Commitment, self._on_commitment)

        async def push_policy(peer: str, blob_hash: str, size: int) -> bool:
            if intake.accept_push(peer, size):
                return True
            return self.rounds is not None and bool(await self.rounds.allow_push(peer, blob_hash, size))

        self.p2p.blobs.push_policy = push_policy

    def _start_rounds(self, nursery: trio.Nursery) -> None:
        """DiLoCo rounds (validator/diloco/role.py) when ``[diloco] enabled``."""
        if self.diloco_cfg is None or not self.diloco_cfg.enabled:
            return
        from validator.diloco.role import ValidatorRounds

        assert self.db is not None
        chain = self.chain
        epoch_of = chain.current_epoch if chain is not None else (lambda: 0)
        self.rounds = ValidatorRounds(self.diloco_cfg, self.db, self.signer, self.root / "diloco", epoch_of)
        nursery.start_soon(self.rounds.run, self.p2p)

    @staticmethod
    def _guard(handler: Any) -> Any:
        async def guarded(peer: str, payload: bytes) -> bytes:
            try:
                return bytes(handler(peer, payload))
            except IntakeRefused as exc:
                raise RequestRefused(str(exc)) from None

        return guarded

    async def _on_join(self, peer: str, payload: bytes) -> bytes:
        assert self.engine is not None and self.db is not None
        try:
            answer = self.engine.intake.on_join(peer, payload)
        except IntakeRefused as exc:
            raise RequestRefused(str(exc)) from None
        if answer.assignment is not None:
            return answer.assignment
        request = decode(payload).message
        task_id, miner = "0x" + request.task_id.hex(), request.signer_address  # type: ignore[attr-defined]
        event = self.engine.drawn.setdefault(task_id, trio.Event())
        with trio.move_on_after(min(self.cfg.join_answer_wait_s, self.p2p.config.request_timeout - 1.0)):
            await event.wait()
        joiner = self.db.joiner(task_id, miner)
        if joiner is not None and joiner["assignment"] is not None:
            self.db.mark("val_joiner", "delivered", {"task_id": task_id, "miner": miner})
            return bytes(joiner["assignment"])
        task = self.db.task(task_id)
        when = time.strftime("%H:%M:%S", time.gmtime(task.join_by)) if task else "?"
        raise RequestRefused(
            f"queued: the pool is drawn at join_by ({when} UTC); ask again after it "
            "(the Assignment is also sent on the 'assignment' route)"
        )

    def _on_commitment(self, accepted: Accept, _origin: str) -> None:
        assert self.engine is not None
        if self.engine.intake.on_commitment(accepted.signed):
            log.info("commitment from %s stored", accepted.signer)

    async def _on_task_status(self, _peer: str, payload: bytes) -> bytes:
        assert self.engine is not None and self.db is not None
        task = self.db.task("0x" + payload.hex()) if len(payload) == 32 else None
        if task is None:
            raise RequestRefused("unknown task: send the 32-byte task id")
        return bytes(task.status_msg) if task.status_msg else self.engine.intake.status(task, task.reason)

    async def _on_receipt_pickup(self, _peer: str, payload: bytes) -> bytes:
        assert self.db is not None
        if len(payload) != 52:
            raise RequestRefused("send the 20-byte miner address and the 32-byte task id")
        miner, task_id = _address(payload[:20]), "0x" + payload[20:].hex()
        rows = [r for r in self.db.receipts(task_id) if r["miner"] == miner]
        if not rows:
            raise RequestRefused("no receipt for this miner and task (yet)")
        return bytes(rows[0]["signed"])

    async def _on_proof_pickup(self, _peer: str, payload: bytes) -> bytes:
        assert self.db is not None
        if len(payload) != 28:
            raise RequestRefused("send the 20-byte miner address and the 8-byte epoch")
        rows = self.db.proofs(int.from_bytes(payload[20:], "big"), _address(payload[:20]))
        return json.dumps([bytes(r["signed"]).decode() for r in rows]).encode()

    # --- loops ----------------------------------------------------------------------------------
    async def _lifecycle_loop(self) -> None:
        assert self.engine is not None and self.db is not None
        while True:
            for task in self.db.tasks(active_only=True):
                await self.engine.step(task)
            await trio.sleep(self.cfg.tick_s)

    async def _delivery_loop(self) -> None:
        """Receipts and proofs not delivered yet, to miners that are connected now."""
        assert self.db is not None
        while True:
            await trio.sleep(max(1.0, self.cfg.tick_s * 4))
            peers = {(j["task_id"], j["miner"]): j["peer_id"] for j in self._all_joiners()}
            for r in self.db.store.query(
                "SELECT task_id, miner, signed FROM val_receipt WHERE delivered = 0"
            ):
                peer = peers.get((r[0], r[1]))
                if peer and await self.net.send(peer, RECEIPT, bytes(r[2])):
                    self.db.mark("val_receipt", "delivered", {"task_id": r[0], "miner": r[1]})
            for p in self.db.store.query(
                "SELECT epoch, task_id, miner, signed FROM val_proof WHERE delivered = 0"
            ):
                peer = peers.get((p[1], p[2]))
                if peer and await self.net.send(peer, PROOF, bytes(p[3])):
                    self.db.mark("val_proof", "delivered", {"epoch": p[0], "task_id": p[1], "miner": p[2]})

    def _all_joiners(self) -> list[dict[str, Any]]:
        assert self.db is not None
        return [j for t in self.db.tasks() for j in self.db.joiners(t.id)]

    async def _epoch_loop(self) -> None:
        if self.chain is None:
            return
        from validator.epoch_close import EpochCloser

        assert self.db is not None
        closer = EpochCloser(self.db, self.domain, self.signer, self.net, self.chain, self.root / "epochs")
        while True:
            try:
                await closer.run_once()
            except Exception as exc:  # a chain outage must not stop the validator: retried next time
                log.warning("closing epochs failed (retrying): %s", exc)
            await trio.sleep(self.cfg.epoch_poll_s)

    async def _synthetic_loop(self) -> None:
        if self.cfg.synthetic_interval_s <= 0:
            return
        rng = random.Random()
        while True:
            await trio.to_thread.run_sync(self.create_synthetic_task, rng)
            await trio.sleep(self.cfg.synthetic_interval_s)

    def create_synthetic_task(self, rng: random.Random) -> str | None:
        """Draw a dataset and kind from the configured pool and create a task (blocking)."""
        assert self.engine is not None
        try:
            kind, source = draw_synthetic_source(self.cfg, rng)
            data = sample_rows(
                source,
                kind,
                self.cfg.synthetic_rows,
                rng,
                self.root / f"synthetic-source-{rng.getrandbits(32):08x}.jsonl",
            )
            return self.engine.create_task(data, kind, self.cfg.synthetic_model, origin="synthetic")
        except TaskInputError as exc:
            log.error("synthetic task not created: %s", exc)
            return None

    # --- local HTTP API -------------------------------------------------------------------------
    def _start_api(self) -> None:
        if not self.cfg.api_enabled:
            return
        from validator.api import ValidatorApi

        assert self.engine is not None and self.db is not None
        self.api = ValidatorApi(self.engine, self.db, self.root, self.cfg.api_port).start()

    def _stop_api(self) -> None:
        if self.api is not None:
            self.api.stop()
            self.api = None


def _address(raw: bytes) -> str:
    from eth_utils.address import to_checksum_address

    return str(to_checksum_address(raw))


def create_service(core: CoreContext) -> ValidatorService:
    """The validator service of ``core`` (needs a wallet and a network profile)."""
    from p2p.service import LocalPeer, P2PService
    from p2p.validation import AllowListAuthorizer
    from protocol.messages import ROLE_VALIDATOR

    profile, signer = core.profile, core.signer
    if signer is None:
        raise ValueError("the validator needs a wallet: run `magnet init` first")
    if profile is None:
        raise ValueError(
            "the validator needs a network profile: pass --network FILE "
            "(`magnet devnet --keep-running` writes one)"
        )
    p2p = _plugged_p2p(core)
    own = p2p is None
    if p2p is None:
        p2p = P2PService(
            core.config.p2p,
            core.data_dir.root,
            profile.domain(),
            LocalPeer(signer, ROLE_VALIDATOR),
            authorizer=AllowListAuthorizer(profile.validators),
            bus=core.events,
            bootstrap=profile.bootstrap_peers,
        )
    return ValidatorService(
        core.config.validator,
        core.data_dir.root / "validator",
        profile.domain(),
        signer,
        p2p,
        chain_access(profile.rpc_url, profile.registry, signer),
        own_p2p=own,
        diloco=core.config.diloco,
    )


def _plugged_p2p(core: CoreContext) -> Any:
    service = core.service("p2p")
    for candidate in (service, getattr(service, "p2p", None)):
        if all(hasattr(candidate, a) for a in ("gossip", "requests", "blobs", "store", "peerbook")):
            return candidate
    return None


def chain_access(rpc_url: str, registry_address: str, signer: Any) -> ChainAccess | None:
    """ChainAccess over the registry at ``rpc_url`` (None when the profile names no endpoint)."""
    if not rpc_url:
        return None
    from wallet.chain import ChainClient
    from wallet.registry import Registry

    registry = Registry(ChainClient.connect(rpc_url, signer), registry_address)
    return registry_access(registry, signer.address)


def registry_access(registry: Any, validator: str) -> ChainAccess:
    return ChainAccess(
        current_epoch=registry.current_epoch,
        post=lambda epoch: registry.post(epoch, validator),
        post_epoch=lambda epoch, root, file_hash, total: (
            registry.post_epoch(epoch, root, file_hash, total).tx_hash
        ),
    )
