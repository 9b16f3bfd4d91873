"""Per-round DiLoCo receipts: what each accepted contributor of a closed round earned.

One ordinary ``protocol.messages.Receipt`` per accepted miner, signed by the validator, so it can
enter an epoch file and Merkle root like a task receipt. Field mapping:

* ``task_id``: ``keccak(b"magnet-diloco" || run_id || round as 8 bytes big-endian)``, one per round
  of a run, never equal to a random task id of an ordinary task in practice;
* ``rank``: 1 = highest Gauntlet score (``Gains.score``) among the accepted, ties to the smaller
  address; ``pool_size``: how many were accepted;
* ``score_e9`` and ``amount``: ``score_e9`` is the Gauntlet score x 10^9 (negative ones 0), and the
  round's ``emission`` is split by those integers (``scoring.epoch_amounts``: exact), so the audit
  recomputes every amount from the receipts;
* ``test_loss_e9``: the global model's validation loss after the merge; ``synthetic_loss_e9`` 0.

Excluded miners (any verdict with a reason: no_improvement, wrong_shard, missing, ...) get no
receipt; their reason is returned so the caller can record it.

``validator.diloco.ledger`` stores them in the validator's ``val_receipt`` (nonces from its stored
counter), from where the ordinary epoch close posts their root and makes their proofs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from protocol.messages import Receipt
from protocol.signing import Domain, SignedMessage, SignerLike, sign
from validator.diloco.rounds import RoundResult
from validator.scoring import epoch_amounts
from wallet.epochs import diloco_round_task_id

E9 = 1_000_000_000


@dataclass(frozen=True)
class RoundRewards:
    """What ``NetworkValidator`` pays per closed round: ``emission`` base units split among the
    accepted, in the epoch ``epoch_of(issued_at_ms)``, to ``payouts[miner]`` (default the miner)."""

    emission: int
    epoch_of: Callable[[int], int] = lambda _ms: 0
    payouts: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RoundReceipts:
    receipts: dict[str, SignedMessage]  # accepted miner -> its signed receipt
    excluded: dict[str, str]  # miner -> reason (no receipt)


def round_receipts(
    result: RoundResult,
    run_id: bytes,
    *,
    epoch: int,
    emission: int,
    domain: Domain,
    signer: SignerLike,
    payouts: dict[str, str],
    first_nonce: int,
    issued_at: int,
    round_number: int | None = None,
) -> RoundReceipts:
    """Sign one receipt per accepted miner of ``result``; nonces run from ``first_nonce`` by rank.

    ``round_number`` (default ``result.round``) goes into the task id: the network counts rounds
    from 0 (``DilocoRound.round``), the in-process validator from 1."""
    accepted = [v for v in result.verdicts.values() if v.accepted]
    ordered = sorted(accepted, key=lambda v: (-(v.gains.score if v.gains else 0.0), v.miner.lower()))
    # The split uses the scores as signed (score_e9), so that `magnet audit` recomputes the amounts
    # exactly from the receipts alone (validator/audit.py, the round rule).
    scores_e9 = {v.miner: round(max(0.0, v.gains.score if v.gains else 0.0) * E9) for v in ordered}
    amounts = epoch_amounts({m: float(e9) for m, e9 in scores_e9.items()}, emission)
    task_id = diloco_round_task_id(run_id, result.round if round_number is None else round_number)
    loss_e9 = round(max(0.0, result.val_loss_after) * E9)
    receipts: dict[str, SignedMessage] = {}
    for rank, v in enumerate(ordered, start=1):
        receipt = Receipt(
            task_id=task_id,
            miner=v.miner,
            payout=payouts.get(v.miner) or v.miner,
            validator=signer.address,
            rank=rank,
            pool_size=len(ordered),
            test_loss_e9=loss_e9,
            synthetic_loss_e9=0,
            score_e9=scores_e9[v.miner],
            amount=amounts[v.miner],
            epoch=epoch,
            nonce=first_nonce + rank - 1,
            issued_at=issued_at,
        )
        receipts[v.miner] = sign(receipt, domain, signer)
    excluded = {m: v.reason for m, v in result.verdicts.items() if not v.accepted}
    return RoundReceipts(receipts, excluded)
