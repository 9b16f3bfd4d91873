"""DiLoCo rounds over the real p2p network: the validator's side.

Per round the validator (1) stores the global model as a **public** blob and gossips a signed
``DilocoRound`` on ``/magnet/1/diloco``; (2) accepts **private** pushes of pseudo-gradient blobs from
peers bound to a miner address (at most ``MAX_PUSHES`` per miner and round, each at most
``max_contribution_bytes``); (3) checks each gossiped ``DilocoContribution`` notice with
``notices.notice_problem`` (its shard against ``shards.shard_for``) and, when it passes, takes the
pushed blob whose sha256 the notice names; (4) closes the round at its deadline or once
``expected`` notices have been handled: codec checks, copy detection, Gauntlet, outer merge and
ratings (``rounds.DilocoValidator``). Anyone may contribute: a miner's shard follows from the signed
round and its address alone, so there is no join step; a miner that sent once is expected in later
rounds (``missing`` when it does not send).

With ``state_dir`` the round state is saved after every close and loaded at start, so a restarted
validator continues the task with the next round (a round open at the restart is opened again, with
the same number and model, and its miners send again).

The notice's arrival time is the commitment time that copy detection credits; the blob itself is
private, so a copier learns nothing from the notice.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import trio

from p2p.reqresp import RequestFailed, RequestRefused
from p2p.service import P2PService, now_ms
from p2p.validation import Accept
from protocol import strict_json
from protocol.encoding import encode
from protocol.messages import ZERO32, DilocoContribution, DilocoRound
from protocol.routes import PROOF, RECEIPT
from protocol.signing import SignedMessage, SignerLike, sign
from trainer.diloco.shards import shard_for
from validator.db import ValidatorDB
from validator.diloco.ledger import store_round_receipts
from validator.diloco.notices import notice_problem
from validator.diloco.receipts import RoundRewards, round_receipts
from validator.diloco.rounds import DilocoValidator, RoundResult
from wallet.epochs import diloco_round_task_id

log = logging.getLogger("magnet.diloco")

MAX_PUSHES = 2  # blobs a miner may push per round (a retry after a failed transfer)


@dataclass
class _Pending:
    notice: DilocoContribution
    received_ms: int


class NetworkValidator:
    """Drives a ``DilocoValidator`` over a running ``P2PService`` (pass ``push_policy`` = ``allow_push``
    when building the service, so miners can push their pseudo-gradients to it)."""

    def __init__(self, core: DilocoValidator, signer: SignerLike, task_id: bytes | None = None,
                 state_dir: Path | None = None, rewards: RoundRewards | None = None,
                 db: ValidatorDB | None = None) -> None:  # fmt: skip
        self.core = core
        self.rewards = rewards
        self.db = db  # with it, receipts go to val_receipt (ledger.py): epochs, roots, proofs, claims
        self.receipts: list[SignedMessage] = []  # every receipt signed so far (with ``rewards``)
        self.signer = signer
        self.state_dir = state_dir
        self.task_id = task_id or os.urandom(32)
        self._prev_hash = ZERO32
        if state_dir is not None and core.load_state(state_dir):
            saved = strict_json.loads((state_dir / "network.json").read_text(), "diloco network state")
            self.task_id = bytes.fromhex(str(saved["task_id"]))
            self._prev_hash = bytes.fromhex(str(saved["prev_model_sha256"]))
            log.info("diloco: continuing task %s after round %d", self.task_id.hex()[:12], core.round)
        self.shard_seed = hashlib.sha256(b"magnet-diloco-shards" + self.task_id).digest()
        # Without a db the nonces continue after the receipts already written to receipts.hex.
        hex_file = state_dir / "receipts.hex" if state_dir is not None else None
        self._nonce_base = len(hex_file.read_text().split()) if hex_file and hex_file.exists() else 0
        self.p2p: P2PService | None = None
        self.round_msg: DilocoRound | None = None
        self._pushes: dict[str, int] = {}
        self._pending: dict[str, _Pending] = {}
        self._handled: set[str] = set()
        self._changed = trio.Event()

    def attach(self, p2p: P2PService) -> None:
        self.p2p = p2p
        p2p.gossip.on(DilocoContribution, self._on_notice)

    # --- pushes ---------------------------------------------------------------------------------
    async def allow_push(self, peer: str, blob_hash: str, size: int) -> bool:
        """Push policy: a private pseudo-gradient from a peer bound to an address, while a round is open."""
        if self.p2p is None or self.round_msg is None or size > self.core.cfg.max_contribution_bytes:
            return False
        address = self.p2p.peerbook.address_of(peer)
        if address is None:
            return False
        count = self._pushes.get(address, 0)
        if count >= MAX_PUSHES:
            return False
        self._pushes[address] = count + 1
        return True

    # --- notices --------------------------------------------------------------------------------
    def _on_notice(self, accepted: Accept, _origin: str) -> None:
        notice = accepted.signed.message
        msg = self.round_msg
        if not isinstance(notice, DilocoContribution) or msg is None or notice.task_id != self.task_id:
            return
        if notice.miner in self._handled or notice.miner in self._pending:
            return  # the first notice of a miner counts
        received = now_ms()
        expected = shard_for(notice.miner, msg.round, msg.shard_seed, msg.shard_count)
        reason, detail = notice_problem(msg, notice, received_ms=received, expected_shard=expected,
                                        max_delta_bytes=self.core.cfg.max_contribution_bytes)  # fmt: skip
        if notice.round != msg.round:
            return  # an old round's notice arriving late: nothing to judge in this one
        self.core.admit(notice.miner, expected)
        if reason:
            self.core.reject(notice.miner, reason, detail)
            self._handled.add(notice.miner)
        else:
            self._pending[notice.miner] = _Pending(notice, received)
            self._take_blobs()
        self._changed.set()

    def _take_blobs(self) -> None:
        """Hand every pending notice whose blob has arrived to the round."""
        assert self.p2p is not None
        for miner, pending in list(self._pending.items()):
            blob_hash = pending.notice.delta_sha256.hex()
            if not self.p2p.store.has(blob_hash):
                continue
            blob = self.p2p.store.path(blob_hash).read_bytes()
            notice = pending.notice
            if hashlib.sha256(blob).digest() != notice.delta_sha256 or len(blob) != notice.delta_size:
                self.core.reject(miner, "malformed", "the pushed blob does not match the notice's size")
            else:
                self.core.submit(miner, blob, pending.received_ms, pending.received_ms)
            del self._pending[miner]
            self._handled.add(miner)

    # --- rounds ---------------------------------------------------------------------------------
    async def run_round(self, expected: int | None = None) -> RoundResult:
        """Open a round, gossip it, wait for the deadline (or ``expected`` handled notices), close it."""
        assert self.p2p is not None, "attach a started P2PService first"
        core, cfg = self.core, self.core.cfg
        start = now_ms()
        wire_round = core.round  # protocol rounds count from 0, the in-process ones from 1
        seed, count = self.shard_seed, len(core.shards)
        spec = core.open_round(start, lambda m: shard_for(m, wire_round, seed, count))
        model = core.model_bytes()
        model_hash = self.p2p.store.put_bytes(model, public=True)
        scheme = cfg.compression.scheme
        self.round_msg = DilocoRound(
            task_id=self.task_id, validator=self.signer.address, round=wire_round,
            model_sha256=bytes.fromhex(model_hash), model_size=len(model),
            prev_model_sha256=self._prev_hash, shard_seed=seed, shard_count=count,
            inner_steps=cfg.inner.inner_steps, compression=scheme,
            topk_bps=round(cfg.compression.topk_fraction * 10_000) if scheme == "topk" else 0,
            deadline=spec.deadline_ms, inner_lr_e9=round(cfg.inner.inner_lr * 1e9),
            batch_size=cfg.inner.batch_size, block=cfg.compression.block, issued_at=start,
        )  # fmt: skip
        self._pushes, self._pending, self._handled = {}, {}, set()
        await self.p2p.gossip.publish(sign(self.round_msg, self.p2p.domain, self.signer))
        log.info("diloco round %d open: model %s", wire_round, model_hash[:12])
        want = expected if expected is not None else len(spec.assignment)
        while now_ms() < spec.deadline_ms:
            self._take_blobs()
            if want and len(self._handled) >= want and not self._pending:
                break
            self._changed = trio.Event()
            with trio.move_on_after(0.2):
                await self._changed.wait()
        self._take_blobs()
        for miner, pending in self._pending.items():
            blob_id = pending.notice.delta_sha256.hex()[:12]
            core.reject(miner, "missing", f"notice received, blob {blob_id} never pushed")
        self._pending = {}
        self._prev_hash = bytes.fromhex(model_hash)
        result = await trio.to_thread.run_sync(core.close_round)
        self.round_msg = None
        if self.rewards is not None:
            await self._deliver(self._sign_receipts(result, wire_round))
        if self.state_dir is not None:
            self.save_state(self.state_dir)
        return result

    async def _deliver(self, receipts: dict[str, SignedMessage]) -> None:
        """Send each receipt to its miner over a connection the miner opened (never dialling it);
        one that cannot be delivered now is logged and kept (``val_receipt``, else ``receipts.hex``)."""
        for miner, signed in receipts.items():
            if await self._send(miner, RECEIPT, encode(signed)) and self.db is not None:
                task_id = "0x" + signed.message.task_id.hex()  # type: ignore[attr-defined]
                self.db.mark("val_receipt", "delivered", {"task_id": task_id, "miner": miner})

    async def _send(self, miner: str, route: str, payload: bytes, retry: bool = False) -> bool:
        """Deliver over the miner's own connection; a failure is a warning the first time, debug on
        the retries of ``deliver_pending`` (a miner that left is tried again every few seconds)."""
        assert self.p2p is not None
        peer = self.p2p.peerbook.peer_of(miner)
        try:
            if peer is None:
                raise ValueError("no known peer for that address")
            await self.p2p.requests.request(peer, route, payload, dial=False, timeout=10.0)
            return True
        except (RequestFailed, RequestRefused, ValueError) as exc:
            (log.debug if retry else log.warning)("diloco %s for %s not delivered: %s", route, miner, exc)
            return False

    def round_task_ids(self) -> list[str]:
        """The task ids (0x hex) of this run's rounds so far, as stored in ``val_receipt``."""
        return ["0x" + diloco_round_task_id(self.task_id, r).hex() for r in range(self.core.round + 1)]

    async def deliver_pending(self) -> int:
        """Send this run's receipts and epoch proofs not delivered yet (the validator service's
        delivery loop only knows task joiners); returns how many were delivered now."""
        if self.db is None:
            return 0
        ids, sent = set(self.round_task_ids()), 0
        for r in self.db.receipts():
            if r["task_id"] not in ids or r["delivered"]:
                continue
            if await self._send(r["miner"], RECEIPT, bytes(r["signed"]), retry=True):
                self.db.mark("val_receipt", "delivered", {"task_id": r["task_id"], "miner": r["miner"]})
                sent += 1
        for p in self.db.proofs():
            if p["task_id"] not in ids or p["delivered"]:
                continue
            if await self._send(p["miner"], PROOF, bytes(p["signed"]), retry=True):
                keys = {"epoch": p["epoch"], "task_id": p["task_id"], "miner": p["miner"]}
                self.db.mark("val_proof", "delivered", keys)
                sent += 1
        return sent

    def _sign_receipts(self, result: RoundResult, wire_round: int) -> dict[str, SignedMessage]:
        assert self.rewards is not None and self.p2p is not None
        issued = now_ms()
        if self.db is not None:
            out = store_round_receipts(
                self.db, result, self.task_id, wire_round=wire_round, rewards=self.rewards,
                domain=self.p2p.domain, signer=self.signer, now_ms=issued,
            )  # fmt: skip
        else:
            out = round_receipts(
                result, self.task_id, epoch=self.rewards.epoch_of(issued), emission=self.rewards.emission,
                domain=self.p2p.domain, signer=self.signer, payouts=self.rewards.payouts,
                first_nonce=self._nonce_base + len(self.receipts), issued_at=issued, round_number=wire_round,
            )  # fmt: skip
        self.receipts.extend(out.receipts.values())
        for miner, reason in out.excluded.items():
            log.info("diloco round %d: no receipt for %s (%s)", wire_round, miner, reason)
        if self.state_dir is not None and self.db is None and out.receipts:
            with (self.state_dir / "receipts.hex").open("a") as f:
                f.writelines(encode(s).hex() + "\n" for s in out.receipts.values())
        return out.receipts

    def save_state(self, folder: Path) -> None:
        """The round state (``DilocoValidator.save_state``) plus the task id and the last model's hash:
        a validator restarted with the same ``state_dir`` opens the next round of the same task."""
        self.core.save_state(folder)
        saved = {"task_id": self.task_id.hex(), "prev_model_sha256": self._prev_hash.hex()}
        tmp = folder / "network.json.tmp"
        tmp.write_text(json.dumps(saved))
        os.replace(tmp, folder / "network.json")
