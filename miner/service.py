"""The miner as a node service: the object `magnet mine`, `magnet --headless` and the desktop app drive.

API (thread-safe reads; ``start_mining``/``stop_mining`` may be called from any thread):
``state`` (words, see miner.events.STATES), ``current_task``, ``progress`` / ``eta_s``,
``last_submission``, ``tasks()`` (seen tasks with whether and why they fit), ``receipts()``,
``earnings()``. Every change is also emitted as a typed event (miner/events.py).

Loops, all in the core's trio thread (blocking work goes to threads and child processes):
mining (pick a fitting task, advance it), rewards (receipt and proof pickups, claims), the network
watchdog (peers lost, newer protocol versions) and blob-store garbage collection.
"""

from __future__ import annotations

import functools
import logging
import os
import subprocess
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import trio

from miner import events as ev
from miner.config import MinerConfig
from miner.db import ACTIVE_PHASES, MinerDB, TaskRow
from miner.idle import IdleSource, system_idle_source
from miner.jobs import JobStopped
from miner.memory import TrainingDevice, training_device
from miner.policy import Machine, TaskOffer, Verdict, admit, may_mine_now
from miner.rewards import RewardRejected, accept_proof, accept_receipt
from miner.steps import GiveUp, TaskSteps
from node.child import child_command
from node.events import Event
from node.logs import short_hash
from node.service import CoreContext, TaskStatus
from p2p.reqresp import RequestRefused
from protocol import strict_json
from protocol.encoding import decode
from protocol.messages import PROTOCOL_VERSION, Assignment, Identity, ReceiptProof, TaskAnnouncement
from protocol.messages import TaskStatus as TaskStatusMsg
from protocol.retired import ReceiptProofV1
from protocol.routes import ASSIGNMENT, PROOF, PROOF_PICKUP, RECEIPT, RECEIPT_PICKUP
from protocol.signing import Domain, SignerLike

log = logging.getLogger("magnet.miner")
PICKUP_INTERVAL_S = 3.0


class MinerService:
    """The mining role of a node."""

    name = "miner"

    def __init__(
        self,
        cfg: MinerConfig,
        p2p: Any,
        domain: Domain,
        signer: SignerLike,
        work_root: Path,
        *,
        own_p2p: bool = False,
        registry: Callable[[], Any] | None = None,
        idle_source: IdleSource | None = None,
        on_battery: Callable[[], bool | None] | None = None,
        diloco: Any = None,
    ) -> None:
        self.rounds = diloco  # miner.diloco_net.MinerRounds: joins DiLoCo rounds ([diloco] enabled)
        self.cfg = cfg
        self.p2p = p2p
        self.net_cfg = p2p.config
        self.domain = domain
        self.signer = signer
        self.work_root = work_root
        self.own_p2p = own_p2p
        self.registry_factory = registry
        self.idle_source = idle_source or system_idle_source()
        self.on_battery = on_battery or _on_battery
        self.mining = cfg.autostart
        self.state = ev.STOPPED
        self.state_detail = ""
        self.current_task = ""
        self.job_phase = ""
        self.progress = 0.0  # percent of the current job (time-based while searching: trials report none)
        self.eta_s = 0.0
        self.job_started = 0.0
        self.job_budget_s = 0.0
        self.last_loss: float | None = None
        self.last_submission = 0.0
        self.assignments: dict[str, bytes] = {}
        self.speed_gflops = cfg.speed_gflops
        self.db: MinerDB | None = None
        self.core: CoreContext | None = None
        self.steps = TaskSteps(self)
        self._registry: Any = None
        self._stopping = trio.Event()
        self._last_connected = time.monotonic()
        self._network_lost = False
        self._newer_seen: set[str] = set()

    # --- the API the CLI and the desktop app use ------------------------------------------------
    def start_mining(self) -> None:
        self.mining = True

    def stop_mining(self) -> None:
        """Stop taking tasks; a running training job is stopped (it resumes from its checkpoint)."""
        self.mining = False
        driver = self.steps.driver
        if driver is not None:
            driver.stop(5.0)

    @property
    def address(self) -> str:
        return self.signer.address

    @property
    def peer_id(self) -> str:
        return str(self.p2p.peer_id.to_string())

    def tasks(self) -> list[TaskRow]:
        return self.db.tasks() if self.db else []

    def receipts(self) -> list[dict[str, Any]]:
        return self.db.receipts() if self.db else []

    def earnings(self) -> dict[str, int]:
        """Token base units: earned (all receipts), claimable (proof, unclaimed), claimed."""
        if self.db is None:
            return {"earned": 0, "claimable": 0, "claimed": 0}
        proofs = self.db.proofs()
        return {
            "earned": sum(r["amount"] for r in self.db.receipts()),
            "claimable": sum(p["amount"] for p in proofs if not p["claimed"]),
            "claimed": sum(p["amount"] for p in proofs if p["claimed"]),
        }

    # --- service lifecycle ----------------------------------------------------------------------
    async def run(self, core: CoreContext, task_status: TaskStatus[None]) -> None:
        self.core = core
        self.db = MinerDB(core.store)
        self.last_submission = float(self.db.meta("last_accepted_submission", "0"))
        self.p2p.store.quota_bytes = min(self.p2p.store.quota_bytes, self.cfg.blob_quota_bytes)
        async with trio.open_nursery() as nursery:
            if self.own_p2p:
                await nursery.start(self.p2p.run)
            self._wire()
            if self.rounds is not None:
                nursery.start_soon(self.rounds.run, self.p2p, self.db, nursery)
            for loop in (self._mining_loop, self._rewards_loop, self._network_loop, self._gc_loop):
                nursery.start_soon(loop)
            if self.speed_gflops == 0:
                nursery.start_soon(self._measure_speed)
            task_status.started()
            log.info("miner %s running (peer %s)", self.address, self.peer_id)
            await self._stopping.wait()
            driver = self.steps.driver
            if driver is not None and driver.handle is not None:
                await trio.to_thread.run_sync(driver.handle.cancel, 5.0)
            if self.own_p2p:
                self.p2p.stop()
            nursery.cancel_scope.cancel()

    async def stop(self) -> None:
        self._stopping.set()

    def identity(self) -> dict[str, str]:
        return {"peer_id": self.peer_id, "miner_state": self.state}

    def emit(self, event: Event) -> None:
        if self.core is not None:
            self.core.emit(event)

    def set_state(self, state: str, task_id: str = "", detail: str = "") -> None:
        if (state, task_id, detail) == (self.state, self.current_task, self.state_detail):
            return
        self.state, self.current_task, self.state_detail = state, task_id, detail
        if state not in (ev.SEARCHING, ev.TRAINING):
            self.progress, self.eta_s = 0.0, 0.0
        self.emit(ev.StateChanged(state=state, task_id=task_id, detail=detail))

    def refresh_progress(self) -> None:
        """While autoresearch searches (no step events), progress is the share of the budget used."""
        if self.state == ev.SEARCHING and self.job_budget_s > 0:
            used = time.monotonic() - self.job_started
            self.progress = min(99.0, 100.0 * used / self.job_budget_s)
            self.eta_s = max(0.0, self.job_budget_s - used)

    def on_progress(self, task_id: str, event: dict[str, Any]) -> None:
        percent = float(event.get("percent") or 0.0)
        self.progress, self.eta_s = percent, float(event.get("eta_s") or 0.0)
        self.last_loss = event.get("loss") if isinstance(event.get("loss"), int | float) else None
        self.emit(
            ev.Progress(
                task_id=task_id,
                phase=self.job_phase,
                percent=percent,
                eta_s=self.eta_s,
                loss=float(self.last_loss) if self.last_loss is not None else None,
                step=int(event.get("step") or 0),
                total_steps=int(event.get("total_steps") or 0),
            )
        )

    # --- wiring -----------------------------------------------------------------------------------
    def _wire(self) -> None:
        gossip, requests = self.p2p.gossip, self.p2p.requests
        gossip.on(TaskAnnouncement, self._on_announcement)
        gossip.on(TaskStatusMsg, self._on_task_status)
        gossip.on(Identity, self._on_identity)
        requests.register(ASSIGNMENT, self._on_assignment, max_request=4096)
        requests.register(RECEIPT, self._on_receipt, max_request=4096)
        requests.register(PROOF, self._on_proof, max_request=16384)

    def _on_announcement(self, accepted: Any, origin: str) -> None:
        ann = accepted.signed.message
        assert isinstance(ann, TaskAnnouncement) and self.db is not None
        task_id = "0x" + ann.task_id.hex()
        if self.db.task(task_id) is not None:
            return
        verdict = self.judge(ann)
        peer = self.p2p.peerbook.peer_of(ann.validator) or origin
        from protocol.encoding import encode

        self.db.add_task(
            task_id,
            ann.validator,
            peer,
            ann.kind,
            encode(accepted.signed),
            verdict.ok,
            verdict.reason,
            ann.join_by / 1000,
            ann.commit_by / 1000,
            ann.reveal_by / 1000,
        )
        if not verdict.ok:
            self.db.update(task_id, phase="skipped")
        log.info("task %s (%s) seen: %s", task_id[:14], ann.kind, verdict.reason)
        self.emit(
            ev.TaskSeen(
                task_id=task_id,
                task_kind=ann.kind,
                validator=ann.validator,
                fits=verdict.ok,
                reason=verdict.reason,
            )
        )

    def judge(self, ann: TaskAnnouncement) -> Verdict:
        offer = TaskOffer(
            ann.kind,
            ann.min_ram_mb,
            ann.min_gpu_mb,
            ann.est_gflop,
            ann.join_by / 1000,
            ann.commit_by / 1000,
            ann.params_json,
            ann.base_model_size,
        )
        startup = self.steps.startup_estimate(ann.kind) or 0.0  # measured only: no guess refuses a task
        return admit(offer, self.machine(), self.cfg, time.time(), startup)

    def _on_task_status(self, accepted: Any, _origin: str) -> None:
        msg = accepted.signed.message
        assert self.db is not None
        task = self.db.task("0x" + msg.task_id.hex())
        if task is None or task.validator != msg.validator:
            return
        if msg.status in ("failed", "cancelled") and task.phase not in (
            "done",
            "given_up",
            "refused",
            "skipped",
        ):
            self.steps.give_up(task, f"the validator {msg.status} the task: {msg.reason}")
            driver = self.steps.driver
            if driver is not None and self.current_task == task.id and driver.handle is not None:
                driver.handle.cancel(5.0)
        elif msg.status == "delayed" and msg.next_deadline:
            self.db.update(task.id, join_by=msg.next_deadline / 1000)

    def _on_identity(self, accepted: Any, origin: str) -> None:
        identity = accepted.signed.message
        if identity.protocol_version > PROTOCOL_VERSION and origin not in self._newer_seen:
            self._newer_seen.add(origin)
            log.warning(
                "peer %s speaks protocol %d, we speak %d: update MAGNET",
                origin,
                identity.protocol_version,
                PROTOCOL_VERSION,
            )
            self.emit(
                ev.NewerProtocol(peer_id=origin, version=identity.protocol_version, ours=PROTOCOL_VERSION)
            )

    async def _on_assignment(self, _peer: str, payload: bytes) -> bytes:
        msg = decode(payload).message
        if not isinstance(msg, Assignment):
            raise RequestRefused("expected an Assignment")
        self.assignments["0x" + msg.task_id.hex()] = payload  # checked when the join step takes it
        return b""

    async def _on_receipt(self, _peer: str, payload: bytes) -> bytes:
        if self.rounds is not None and self.rounds.take(payload, self.db):
            return b""  # a DiLoCo round receipt, now in the receipt book
        self._take_receipt(payload)
        return b""

    async def _on_proof(self, _peer: str, payload: bytes) -> bytes:
        self._take_proof(payload)
        return b""

    def _take_receipt(self, payload: bytes) -> None:
        assert self.db is not None
        try:
            got = accept_receipt(self.db, payload, self.domain, self.address)
        except RewardRejected as exc:
            log.warning("receipt refused: %s", exc)
            self.emit(
                ev.ReceiptReceived(
                    task_id="", rank=0, pool_size=0, amount=0, epoch=0, verified=False, reason=str(exc)
                )
            )
            return
        if got.new:
            r = got.receipt
            log.info(
                "receipt for %s: rank %d of %d, %d units in epoch %d",
                got.task_id[:14],
                r.rank,
                r.pool_size,
                r.amount,
                r.epoch,
            )
            self.emit(
                ev.ReceiptReceived(
                    task_id=got.task_id,
                    rank=r.rank,
                    pool_size=r.pool_size,
                    amount=r.amount,
                    epoch=r.epoch,
                    verified=True,
                    reason="",
                )
            )

    def _take_proof(self, payload: bytes) -> None:
        assert self.db is not None
        try:
            proof, new = accept_proof(self.db, payload, self.domain)
        except RewardRejected as exc:
            log.warning("proof refused: %s", exc)
            self.emit(ev.ProofReceived(epoch=0, amount=0, verified=False, reason=str(exc)))
            return
        if new:
            self.emit(ev.ProofReceived(epoch=proof.epoch, amount=proof.amount, verified=True, reason=""))

    # --- machine facts ----------------------------------------------------------------------------
    def machine(self) -> Machine:
        import psutil

        idle = self.idle_source.idle_seconds() if self.cfg.idle_only else None
        ram_mb = psutil.virtual_memory().available // (1 << 20)
        device = self.training_device(ram_mb)
        return Machine(
            ram_mb=ram_mb,
            gpu_mb=device.free_mb if device.cuda else 0,
            cpu_cores=self.cfg.max_threads or os.cpu_count() or 1,
            speed_gflops=self.speed_gflops,
            on_battery=self.on_battery() if self.cfg.pause_on_battery else None,
            idle_s=idle,
        )

    def training_device(self, ram_mb: int | None = None) -> TrainingDevice:
        """Where this miner's jobs train and the memory they may use there (RAM or the GPU's free)."""
        if ram_mb is None:
            import psutil

            ram_mb = psutil.virtual_memory().available // (1 << 20)
        return training_device(self.cfg.gpu, ram_mb, self.cfg.max_ram_mb)

    def device(self) -> str:
        return "cpu" if self.cfg.gpu == "cpu" else ("cuda" if self.cfg.gpu.startswith("cuda") else "auto")

    async def _measure_speed(self) -> None:
        """Measure training speed once, in a child process (the node never imports torch)."""
        command = [*child_command("trainer.hardware"), "--seconds", "1.0"]  # also from a frozen app
        try:
            with trio.fail_after(120):  # trio kills the child when cancelled (node stop, timeout)
                done = await trio.run_process(command, capture_stdout=True, capture_stderr=True)
            self.speed_gflops = float(done.stdout.decode().strip().splitlines()[-1])
            log.info("training speed here: %.1f GFLOP/s", self.speed_gflops)
        except (OSError, subprocess.SubprocessError, trio.TooSlowError, ValueError, IndexError) as exc:
            log.warning("could not measure this machine's speed (%s): deadlines are not pre-checked", exc)

    # --- loops ------------------------------------------------------------------------------------
    async def wait_until_allowed(self, task_id: str = "") -> None:
        """Return once mining is on and the policy allows it now (pause states in between)."""
        while True:
            if not self.mining:
                self.set_state(ev.STOPPED, task_id, "mining is stopped")
            else:
                verdict = may_mine_now(self.cfg, self.machine(), datetime.now())
                if verdict.ok:
                    return
                self.set_state(ev.PAUSED, task_id, verdict.reason)
            await trio.sleep(self.cfg.poll_s)

    async def _mining_loop(self) -> None:
        assert self.db is not None
        while True:
            await self.wait_until_allowed()
            task = self._next_task()
            if task is None:
                waiting = any(t.phase == "revealed" for t in self.db.tasks())
                self.set_state(
                    ev.WAITING if waiting else ev.LOOKING,
                    "",
                    "waiting for receipts" if waiting else "listening for task announcements",
                )
                await trio.sleep(self.cfg.poll_s)
                continue
            try:
                await self.steps.advance(task)
            except JobStopped:
                log.info("task %s: training stopped by the user (resumes from its checkpoint)", task.id[:14])
            except GiveUp as exc:
                self.steps.give_up(task, str(exc))
            except Exception as exc:  # a network or disk hiccup: the step is retried
                log.warning("task %s step %s failed (retrying): %s", task.id[:14], task.phase, exc)
                self._report_disk_full(task, exc)
                await trio.sleep(self.cfg.join_retry_s)

    def _report_disk_full(self, task: TaskRow, exc: Exception) -> None:
        if isinstance(exc, OSError) and exc.errno == 28:
            self.emit(
                ev.WatchdogAlert(
                    task_id=task.id,
                    problem="disk full",
                    action=f"free space in {self.work_root.parent} (retrying)",
                )
            )

    def _next_task(self) -> TaskRow | None:
        assert self.db is not None
        active = [t for t in self.db.tasks(ACTIVE_PHASES) if t.phase != "revealed"]
        if active:
            return active[0]
        now = time.time()
        fresh = [t for t in self.db.tasks(("seen",)) if t.fits and t.join_by > now]
        return fresh[0] if fresh else None

    async def _rewards_loop(self) -> None:
        """Pick up receipts and proofs not delivered, give up silent tasks, and claim."""
        assert self.db is not None
        while True:
            await trio.sleep(PICKUP_INTERVAL_S)
            for task in self.db.tasks(("revealed",)):
                await self._pickup_receipt(task)
            await self._pickup_proofs()
            if self.cfg.claim_rewards and self.registry_factory is not None:
                await self._claim_all()

    async def _pickup_receipt(self, task: TaskRow) -> None:
        assert self.db is not None
        payload = bytes.fromhex(self.address[2:]) + bytes.fromhex(task.id[2:])
        try:
            self._take_receipt(await self.request(task.validator_peer, RECEIPT_PICKUP, payload))
        except Exception as exc:
            log.debug("receipt pickup %s: %s", task.id[:14], exc)
            if time.time() > task.reveal_by + self.cfg.result_wait_s:
                self.steps.give_up(task, "no receipt came from the validator in time")

    async def _pickup_proofs(self) -> None:
        """Ask for the proofs of paid receipts that have none yet: one request per validator and
        epoch. A task's validator is asked on the task's peer; a receipt without a task here (a
        DiLoCo round's) on the peer bound to the receipt's validator address, when one is known."""
        assert self.db is not None
        have = {p["receipt_hash"] for p in self.db.proofs()}
        wanted: set[tuple[str, int]] = set()
        for r in self.db.receipts():
            if r["receipt_hash"] in have or r["amount"] == 0:
                continue
            task = self.db.task(r["task_id"])
            peer = task.validator_peer if task is not None else self._peer_of(str(r["validator"]))
            if peer:
                wanted.add((peer, int(r["epoch"])))
        for peer, epoch in sorted(wanted):
            payload = bytes.fromhex(self.address[2:]) + epoch.to_bytes(8, "big")
            try:
                reply = await self.request(peer, PROOF_PICKUP, payload)
                for item in strict_json.loads(reply, "proof pickup reply"):
                    self._take_proof(item.encode())
            except Exception as exc:
                log.debug("proof pickup epoch %d: %s", epoch, exc)

    def _peer_of(self, address: str) -> str | None:
        peerbook = getattr(self.p2p, "peerbook", None)
        return peerbook.peer_of(address) if peerbook is not None else None

    async def _claim_all(self) -> None:
        """Claim every unclaimed proof: checked against its root on chain, batched per validator post
        (one ``claimMany``, or ``claim`` for a single leaf; wallet.rewards.claim_proofs). A proof that
        is refused (no root yet, a v1 proof: "ask the validator for a new proof") stays for a later
        round; a failed transaction leaves every proof of its batch unclaimed for the next try."""
        from wallet.rewards import claim_proofs  # web3 underneath: imported when there is a claim

        assert self.db is not None and self.registry_factory is not None
        rows = self.db.proofs(claimed=False)
        if not rows:
            return
        proofs = []
        for row in rows:
            proof = decode(bytes(row["signed"])).message
            assert isinstance(proof, (ReceiptProof, ReceiptProofV1))
            proofs.append(proof)
        try:
            if self._registry is None:
                factory: Callable[[], Any] = self.registry_factory
                self._registry = await trio.to_thread.run_sync(factory, abandon_on_cancel=True)  # type: ignore[call-arg]  # trio 0.35 has it; its stub lags
            registry = self._registry
            claim = functools.partial(claim_proofs, registry, proofs)
            outcomes = await trio.to_thread.run_sync(claim, abandon_on_cancel=True)  # type: ignore[call-arg]
        except Exception as exc:
            log.info("claims not done yet: %s", exc)
            return
        for outcome in outcomes:
            proof = outcome.proof
            if outcome.status == "refused":
                log.info("claim for epoch %d not done yet: %s", proof.epoch, outcome.message)
                continue
            tx = str(getattr(outcome.result, "tx_hash", "")) if outcome.status == "claimed" else ""
            self.db.mark_claimed(proof.receipt_hash.hex(), tx or "claimed by someone else")
            log.info(
                "claimed %d units for epoch %d (%s)",
                proof.amount,
                proof.epoch,
                short_hash(tx) if tx else "already claimed",
            )
            self.emit(ev.Claimed(epoch=proof.epoch, amount=proof.amount, tx_hash=tx))

    async def _network_loop(self) -> None:
        """Watchdog: no peer for network_timeout_s is lost network (reported; discovery redials)."""
        while True:
            await trio.sleep(min(2.0, self.cfg.network_timeout_s / 2))
            connected = bool(self.p2p.host.get_network().get_connections())
            if connected:
                if self._network_lost:
                    self._network_lost = False
                    self.emit(
                        ev.WatchdogAlert(
                            task_id=self.current_task, problem="network back", action="peers reachable again"
                        )
                    )
                self._last_connected = time.monotonic()
            elif (
                not self._network_lost
                and time.monotonic() - self._last_connected > self.cfg.network_timeout_s
            ):
                self._network_lost = True
                self.emit(
                    ev.WatchdogAlert(
                        task_id=self.current_task,
                        problem="lost network",
                        action="no peer reachable: check the network and the bootstrap "
                        "peers of the network profile; reconnecting",
                    )
                )

    async def _gc_loop(self) -> None:
        while True:
            await trio.sleep(60.0)
            freed = await trio.to_thread.run_sync(self.p2p.store.gc)
            if freed:
                log.info("blob store: %d bytes collected", freed)

    async def request(self, peer: str, route: str, payload: bytes) -> bytes:
        reply: bytes = await self.p2p.requests.request(peer, route, payload)
        return reply

    def providers(self, validator_peer: str) -> list[str]:
        connected = [c.muxed_conn.peer_id.to_string() for c in self._connections()]
        return [validator_peer, *[p for p in connected if p != validator_peer]]

    def _connections(self) -> list[Any]:
        conns = self.p2p.host.get_network().get_connections()
        return list(conns.values()) if isinstance(conns, dict) else list(conns)


def _on_battery() -> bool | None:
    import psutil

    sensors = getattr(psutil, "sensors_battery", None)
    battery = sensors() if sensors else None
    return None if battery is None else not battery.power_plugged


def create_service(core: CoreContext) -> MinerService:
    """The miner service of ``core`` (needs a wallet and a network profile)."""
    from p2p.service import LocalPeer, P2PService
    from p2p.validation import AllowListAuthorizer
    from protocol.messages import ROLE_MINER

    profile, signer = core.profile, core.signer
    if signer is None:
        raise ValueError("the miner needs a wallet: run `magnet init` first (`magnet devnet` needs none)")
    if profile is None:
        from node.profile import ProfileError

        raise ProfileError(
            "the miner needs a network profile: pass --network FILE "
            "(`magnet devnet --keep-running` writes one)"
        )
    p2p = _plugged_p2p(core)
    own = p2p is None
    if p2p is None:
        p2p = P2PService(
            core.config.p2p,
            core.data_dir.root,
            profile.domain(),
            LocalPeer(signer, ROLE_MINER),  # payout = the signing address (no payout setting yet)
            authorizer=AllowListAuthorizer(profile.validators),
            bus=core.events,
            bootstrap=profile.bootstrap_peers,
        )
    rpc_url, registry_address = profile.rpc_url, profile.registry

    def registry() -> Any:
        from wallet.chain import ChainClient
        from wallet.registry import Registry

        return Registry(ChainClient.connect(rpc_url, signer), registry_address)  # type: ignore[arg-type]

    return MinerService(
        core.config.miner,
        p2p,
        profile.domain(),
        signer,
        core.data_dir.root / "miner",
        own_p2p=own,
        registry=registry if rpc_url else None,
        diloco=_rounds(core, profile.validators),
    )


def _rounds(core: CoreContext, validators: tuple[str, ...]) -> Any:
    """The DiLoCo rounds this miner joins when ``[diloco] enabled`` (miner/diloco_net.py)."""
    cfg = core.config.diloco
    if not cfg.enabled:
        return None
    from miner.diloco_net import MinerRounds

    assert core.signer is not None
    validator = cfg.validator or (validators[0] if validators else "")
    mc = core.config.miner
    return MinerRounds(cfg, core.signer, validator, core.data_dir.root / "miner" / "diloco",
                       threads=mc.max_threads or None, nice=mc.nice)  # fmt: skip


def _plugged_p2p(core: CoreContext) -> Any:
    service = core.service("p2p")
    for candidate in (service, getattr(service, "p2p", None)):
        if all(hasattr(candidate, a) for a in ("gossip", "requests", "blobs", "store", "peerbook")):
            return candidate
    return None
