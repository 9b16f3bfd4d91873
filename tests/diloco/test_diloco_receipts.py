"""Per-round DiLoCo receipts: accepted miners get signed receipts paid by Gauntlet score."""

from __future__ import annotations

import pytest

from protocol.signing import Domain
from validator.diloco.gauntlet import Gains
from validator.diloco.receipts import round_receipts, round_task_id
from validator.diloco.rounds import RoundResult, Verdict
from wallet.receipts import verify_receipt
from wallet.signer import LocalSigner

DOMAIN = Domain(131277322940537, "0x" + "ab" * 20, b"\x07" * 32)


def _addr(i: int) -> str:
    return "0x" + f"{i:02x}" * 20


def _result() -> RoundResult:
    a, b, c, d, e = (_addr(i) for i in (1, 2, 3, 4, 5))
    return RoundResult(
        round=7,
        verdicts={
            a: Verdict(a, "", gains=Gains(val=0.03, own=0.01, random=0.0)),
            b: Verdict(b, "", gains=Gains(val=0.01, own=0.01, random=0.0)),
            c: Verdict(c, "no_improvement", "val gain -0.2", Gains(val=-0.2, own=0.0, random=0.0)),
            d: Verdict(d, "wrong_shard", "own gain below random"),
            e: Verdict(e, "missing"),
        },
        model_sha256="00" * 32,
        val_loss_before=3.0,
        val_loss_after=2.5,
    )


def test_accepted_miners_get_signed_receipts_split_by_score() -> None:
    signer = LocalSigner.create()
    result = _result()
    out = round_receipts(
        result,
        b"\x11" * 32,
        epoch=4,
        emission=10**18,
        domain=DOMAIN,
        signer=signer,
        payouts={_addr(1): _addr(9)},
        first_nonce=100,
        issued_at=1_700_000_000_000,
    )
    assert set(out.receipts) == {_addr(1), _addr(2)}
    assert out.excluded == {_addr(3): "no_improvement", _addr(4): "wrong_shard", _addr(5): "missing"}
    first, second = out.receipts[_addr(1)].message, out.receipts[_addr(2)].message
    assert (first.rank, second.rank, first.pool_size) == (1, 2, 2)
    assert first.payout == _addr(9) and second.payout == _addr(2)
    assert first.amount + second.amount == 10**18
    assert abs(first.amount - 2 * second.amount) <= 1  # scores 0.04 vs 0.02 (largest remainder)
    assert first.score_e9 == 40_000_000 and first.test_loss_e9 == 2_500_000_000
    assert {first.nonce, second.nonce} == {100, 101}
    assert first.task_id == second.task_id == round_task_id(b"\x11" * 32, 7)
    for signed in out.receipts.values():
        assert verify_receipt(signed, DOMAIN) == signer.address


def test_round_task_ids_differ_by_run_and_round() -> None:
    ids = {round_task_id(run, r) for run in (b"\x01" * 32, b"\x02" * 32) for r in (0, 1)}
    assert len(ids) == 4 and all(len(i) == 32 for i in ids)
    with pytest.raises(ValueError, match="64 bits"):
        round_task_id(b"\x01" * 32, -1)
