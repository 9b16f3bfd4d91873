"""Intake: join requests, commitments from gossip, artifact pushes and reveals.

Each handler checks what arrived (strict decoding, EIP-712 signer, the connection's peer id, the
task and its phase), writes what it accepts to the store, and only then answers. Refusals carry
a reason a miner can act on. Nothing here talks to the network itself: the service passes bytes in
and sends what comes back.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from protocol.encoding import decode, encode
from protocol.errors import ProtocolError
from protocol.messages import Assignment, Commitment, JoinRequest, Reveal, TaskStatus
from protocol.signing import Domain, SignedMessage, SignerLike, recover_signer, sign
from validator.db import TERMINAL_PHASES, TaskRow, ValidatorDB
from validator.selection import JoinGate

# Task phase -> the TaskStatus status word miners see.
STATUS_OF_PHASE = {
    "created": "open",
    "joining": "open",
    "training": "open",
    "revealing": "open",
    "evaluating": "evaluating",
    "scoring": "evaluating",
    "receipts": "evaluating",
    "finished": "finished",
    "failed": "failed",
}


class IntakeRefused(Exception):
    """The request is refused; the message is the reason sent back."""


@dataclass(frozen=True)
class JoinAnswer:
    """An Assignment to send now, or None: queued, wait for the pool draw."""

    assignment: bytes | None


def now_ms() -> int:
    return int(time.time() * 1000)


def decode_signed(payload: bytes, expected: type, domain: Domain) -> SignedMessage:
    try:
        signed = decode(payload)
        recover_signer(signed, domain)
    except ProtocolError as exc:
        raise IntakeRefused(f"bad {expected.__name__}: {exc}") from None
    if not isinstance(signed.message, expected):
        raise IntakeRefused(f"expected a {expected.__name__}, got {signed.message.TYPE}")
    return signed


class Intake:
    """The validator's intake over its store."""

    def __init__(
        self,
        db: ValidatorDB,
        domain: Domain,
        signer: SignerLike,
        gate: JoinGate,
        payout_of: Callable[[str], str],
        blob_path: Callable[[str], Path | None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = db
        self.domain = domain
        self.signer = signer
        self.gate = gate
        self.payout_of = payout_of
        self.blob_path = blob_path
        self.clock = clock

    # --- join ---------------------------------------------------------------------------------
    def on_join(self, peer_id: str, payload: bytes) -> JoinAnswer:
        request = decode_signed(payload, JoinRequest, self.domain).message
        assert isinstance(request, JoinRequest)
        if request.peer_id != peer_id:
            raise IntakeRefused("the JoinRequest names another peer id than the connection's")
        task = self._task(request.task_id)
        joiner = self.db.joiner(task.id, request.miner)
        if joiner is not None and joiner["assignment"] is not None:
            return JoinAnswer(joiner["assignment"])
        if task.phase != "joining" or self.clock() > task.join_by:
            return JoinAnswer(
                self.assignment(
                    task,
                    request.miner,
                    False,
                    "the join window of this task has closed; watch for the next task",
                )
            )
        if joiner is not None:
            return JoinAnswer(None)  # already queued (a retry after a timeout): wait for the draw
        admission = self.gate.admit(task.id, peer_id, request.miner, self.clock())
        if not admission.accepted:
            return JoinAnswer(self.assignment(task, request.miner, False, admission.message))
        arrival = self.db.next_counter("join_arrival")
        self.db.add_joiner(task.id, request.miner, peer_id, arrival, self.payout_of(request.miner))
        return JoinAnswer(None)

    def assignment(self, task: TaskRow, miner: str, accepted: bool, reason: str) -> bytes:
        msg = Assignment(
            task_id=task.task_id,
            validator=self.signer.address,
            miner=miner,
            accepted=accepted,
            reason=reason[:512],
            pool_size=task.pool_size,
            commit_by=int(task.commit_by * 1000),
            reveal_by=int(task.reveal_by * 1000),
            issued_at=now_ms(),
        )
        return encode(sign(msg, self.domain, self.signer))

    # --- commitments --------------------------------------------------------------------------
    def on_commitment(self, signed: SignedMessage) -> bool:
        """Store a gossiped (already checked) Commitment for one of our tasks; True when new."""
        msg = signed.message
        assert isinstance(msg, Commitment)
        task = self.db.task("0x" + msg.task_id.hex())
        if task is None or task.phase in TERMINAL_PHASES:
            return False
        return self.db.add_commitment(task.id, msg.miner, msg.commitment, self.clock(), encode(signed))

    # --- artifact push and reveal ---------------------------------------------------------------
    def accept_push(self, peer_id: str, size: int) -> bool:
        """Accept a private blob push from a pool member of a task in its commit or reveal phase."""
        for task in self.db.tasks(active_only=True):
            if task.phase not in ("training", "revealing") or size > task.max_artifact_bytes:
                continue
            if any(j["peer_id"] == peer_id for j in self.db.joiners(task.id, "selected")):
                return True
        return False

    def on_reveal(self, peer_id: str, payload: bytes) -> bytes:
        signed = decode_signed(payload, Reveal, self.domain)
        reveal = signed.message
        assert isinstance(reveal, Reveal)
        task = self._task(reveal.task_id)
        joiner = self.db.joiner(task.id, reveal.miner)
        if joiner is None or joiner["status"] != "selected" or joiner["peer_id"] != peer_id:
            raise IntakeRefused("this miner is not in the task's pool (or reveals from another peer id)")
        if reveal.miner in self.db.reveals(task.id):
            return self.status(task, "already revealed")
        if self.clock() < task.commit_by:
            raise IntakeRefused("too early: reveal after commit_by")
        if task.phase in ("scoring", "receipts", *TERMINAL_PHASES):
            raise IntakeRefused("too late: the task is already scored")
        commitment = self.db.commitments(task.id).get(reveal.miner)
        matches = commitment is not None and bytes(commitment["commitment"]) == reveal.commitment()
        path = ""
        if reveal.artifact_size <= task.max_artifact_bytes:
            path = self._keep_artifact(task, reveal)
            matches = matches and Path(path).stat().st_size == reveal.artifact_size
        with self.db.store.transaction() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO val_reveal VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    task.id,
                    reveal.miner,
                    reveal.artifact_hash.hex(),
                    reveal.artifact_size,
                    self.clock(),
                    int(matches),
                    path,
                    encode(signed),
                ),
            )
        return self.status(task, "revealed" if matches else "revealed, but it does not open the commitment")

    def _keep_artifact(self, task: TaskRow, reveal: Reveal) -> str:
        """Copy the pushed blob into the task directory (fsynced) before the reveal counts."""
        source = self.blob_path(reveal.artifact_hash.hex())
        if source is None:
            raise IntakeRefused("push the artifact bundle (blob push) before sending the Reveal")
        target_dir = Path(task.dir) / "artifacts"
        target_dir.mkdir(parents=True, exist_ok=True)
        target = target_dir / f"{reveal.miner}.bundle"
        tmp = target.with_suffix(".tmp")
        shutil.copyfile(source, tmp)
        with tmp.open("rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, target)
        return str(target)

    # --- status ---------------------------------------------------------------------------------
    def status(self, task: TaskRow, reason: str, next_deadline: int = 0) -> bytes:
        status = "delayed" if next_deadline else STATUS_OF_PHASE[task.phase]
        msg = TaskStatus(
            task_id=task.task_id,
            validator=self.signer.address,
            status=status,
            reason=reason[:512],
            next_deadline=next_deadline,
            issued_at=now_ms(),
        )
        return encode(sign(msg, self.domain, self.signer))

    def _task(self, task_id: bytes) -> TaskRow:
        task = self.db.task("0x" + task_id.hex())
        if task is None:
            raise IntakeRefused("unknown task (not announced by this validator)")
        return task
