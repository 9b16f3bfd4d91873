"""Closing an epoch: the epoch file, its Merkle root on chain, and each miner's proof.

The registry accepts a validator's root for epoch ``e`` only while epoch ``e + 1`` runs, once per
validator. So, once the chain's current epoch has moved past ``e`` (and no task is being settled):

1. the epoch file is built from the stored receipts (wallet.epochs: every signature checked,
   canonical bytes), written to ``<data>/validator/epochs/`` and published as a public blob;
2. the chain is asked whether this validator already posted ``e``: a restart after a post that was
   sent but not yet recorded finds it there and never posts twice;
3. otherwise the epoch is marked ``posting`` (with its root) in the store and the root is posted;
4. a signed ReceiptProof per receipt is stored, then delivered over each miner's own connection
   (and kept for pickup); the EpochRecord is gossiped.

An epoch whose amounts sum to 0 is not posted (``empty``); one whose window passed while the
validator was down is ``missed`` (its receipts stay valid, but cannot be claimed).
"""

from __future__ import annotations

import logging
from pathlib import Path

import trio

from protocol.encoding import decode, encode
from protocol.messages import Receipt
from protocol.signing import Domain, SignerLike, sign
from validator.db import ValidatorDB
from validator.intake import now_ms
from validator.lifecycle import ChainAccess, Net
from validator.tasks import write_durably
from wallet.epochs import EpochFile, RoundGroup

log = logging.getLogger("magnet.validator.epochs")
DONE_STATES = ("posted", "empty", "missed", "conflict")


# val_meta key + task id ("0x..") -> {"run": "0x..", "round": N}: the DiLoCo round whose receipts carry
# that task id (written by validator.diloco.ledger with the receipts).
ROUND_KEY = "diloco_round:"


def round_groups(db: ValidatorDB, task_ids: set[str]) -> list[RoundGroup]:
    """The DiLoCo round groups among ``task_ids``, as stored with their receipts."""
    groups = []
    for task_id in sorted(task_ids):
        stored = db.meta(ROUND_KEY + task_id)
        if stored is not None:
            groups.append(RoundGroup(bytes.fromhex(stored["run"][2:]), int(stored["round"])))
    return groups


class EpochCloser:
    def __init__(
        self,
        db: ValidatorDB,
        domain: Domain,
        signer: SignerLike,
        net: Net,
        chain: ChainAccess,
        epochs_dir: Path,
    ) -> None:
        self.db = db
        self.domain = domain
        self.signer = signer
        self.net = net
        self.chain = chain
        self.epochs_dir = epochs_dir

    async def run_once(self) -> None:
        """Close every past epoch that has receipts and is not closed yet."""
        if any(t.phase == "scoring" for t in self.db.tasks(active_only=True)):
            return  # a receipt may still join an epoch: wait for the settling task
        current = await trio.to_thread.run_sync(self.chain.current_epoch)
        for epoch in self.db.epochs_with_receipts():
            row = self.db.epoch(epoch)
            if epoch < current and (row is None or row["state"] not in DONE_STATES):
                await self.close(epoch, current)

    def epoch_file(self, epoch: int) -> EpochFile:
        rows = self.db.receipts(epoch=epoch)
        signed = [decode(bytes(r["signed"])) for r in rows]
        rounds = round_groups(self.db, {r["task_id"] for r in rows})  # DiLoCo round receipts
        return EpochFile.build(epoch, self.signer.address, self.domain, signed, rounds)

    async def close(self, epoch: int, current: int) -> None:
        built = self.epoch_file(epoch)
        path = self.epochs_dir / f"epoch-{epoch}-{self.signer.address}.json"
        self.epochs_dir.mkdir(parents=True, exist_ok=True)
        write_durably(path, built.to_bytes())
        blob = self.net.put_public_file(path)
        columns = {"root": built.root, "file_hash": built.file_hash, "total": str(built.total), "blob": blob}
        if built.total == 0:
            self.db.set_epoch(epoch, state="empty", reason="every amount is 0: nothing to post", **columns)
            return
        posted = await trio.to_thread.run_sync(self.chain.post, epoch)
        if posted is not None:
            same = getattr(posted, "root", None) == built.root
            self.db.set_epoch(
                epoch,
                state="posted" if same else "conflict",
                reason="" if same else "the chain holds another root for this epoch",
                **columns,
            )
        elif epoch + 1 != current:
            self.db.set_epoch(
                epoch, state="missed", reason=f"the posting window (epoch {epoch + 1}) has passed", **columns
            )
            return
        else:
            self.db.set_epoch(epoch, state="posting", **columns)
            tx = await trio.to_thread.run_sync(
                self.chain.post_epoch, epoch, built.root, built.file_hash, built.total
            )
            self.db.set_epoch(epoch, state="posted", tx=tx, **columns)
            log.info(
                "epoch %d posted: %d receipts, total %d, tx %s", epoch, len(built.receipts), built.total, tx
            )
        self._store_proofs(built)
        await self.net.publish(encode(sign(built.record(now_ms()), self.domain, self.signer)))

    def _store_proofs(self, built: EpochFile) -> None:
        issued_at = now_ms()
        with self.db.store.transaction() as conn:
            for signed in built.receipts:
                receipt = signed.message
                assert isinstance(receipt, Receipt)
                proof = encode(sign(built.proof_for(receipt, issued_at), self.domain, self.signer))
                conn.execute(
                    "INSERT OR IGNORE INTO val_proof (epoch, miner, task_id, signed) VALUES (?, ?, ?, ?)",
                    (built.epoch, receipt.miner, "0x" + receipt.task_id.hex(), proof),
                )
