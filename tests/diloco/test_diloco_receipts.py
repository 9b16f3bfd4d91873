"""Per-round DiLoCo receipts: accepted miners get signed receipts paid by Gauntlet score."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import trio

from miner.diloco_net import NetworkMiner
from p2p.reqresp import RequestRefused
from protocol.encoding import encode
from protocol.signing import Domain
from validator.diloco.gauntlet import Gains
from validator.diloco.receipts import round_receipts
from validator.diloco.rounds import RoundResult, Verdict
from wallet.chain import ChainClient
from wallet.devchain import EmbeddedChain
from wallet.epochs import EpochFile, diloco_round_task_id
from wallet.receipts import verify_receipt
from wallet.registry import Registry, RegistryParams, deploy
from wallet.rewards import claim_with_proof, post_epoch
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
    assert first.task_id == second.task_id == diloco_round_task_id(b"\x11" * 32, 7)
    for signed in out.receipts.values():
        assert verify_receipt(signed, DOMAIN) == signer.address


def test_round_task_ids_differ_by_run_and_round() -> None:
    ids = {diloco_round_task_id(run, r) for run in (b"\x01" * 32, b"\x02" * 32) for r in (0, 1)}
    assert len(ids) == 4 and all(len(i) == 32 for i in ids)
    with pytest.raises(ValueError, match="64 bits"):
        diloco_round_task_id(b"\x01" * 32, -1)


def test_round_receipts_are_claimed_on_the_embedded_chain() -> None:
    """A round's receipts go through the ordinary epoch path: epoch file, root posted, claims paid."""
    ether = 10**18
    chain = EmbeddedChain()
    governance, validator, relayer = (LocalSigner.create() for _ in range(3))
    for signer in (governance, validator, relayer):
        chain.fund(signer.address, 1000 * ether)
    params = RegistryParams(
        epoch_length=3600, emission_per_epoch=1000 * ether, min_stake=ether, unstake_delay=3600
    )
    deployment = deploy(ChainClient.embedded(chain, governance), params)
    domain = Domain(DOMAIN.chain_id, deployment.registry, DOMAIN.salt)
    out = round_receipts(
        _result(), b"\x22" * 32, epoch=0, emission=30 * ether, domain=domain, signer=validator,
        payouts={}, first_nonce=0, issued_at=1_700_000_000_000,
    )  # fmt: skip
    built = EpochFile.build(0, validator.address, domain, out.receipts.values())
    registry = Registry(ChainClient.embedded(chain, validator, receipt_timeout=10.0), deployment.registry)
    registry.register(ether)

    def advance(epoch: int) -> None:
        now = registry.client.block_timestamp()
        target = registry.epoch_start(epoch) + 1
        if target > now:
            chain.increase_time(target - now)

    advance(1)
    post_epoch(registry, built)
    advance(2)
    paying = Registry(ChainClient.embedded(chain, relayer, receipt_timeout=10.0), deployment.registry)
    for proof in built.proofs(issued_at=1):
        assert claim_with_proof(paying, proof) is not None
    # The lone poster's emission is split pro rata to the leaf amounts: scores 0.04 vs 0.02.
    paid = [paying.token_balance(_addr(i)) for i in (1, 2, 3, 4, 5)]
    assert abs(paid[0] - 2 * paid[1]) <= 2 and paid[0] + paid[1] >= 1000 * ether - 2
    assert paid[2:] == [0, 0, 0]  # excluded miners hold no receipt and get nothing


def test_network_miner_keeps_only_its_own_receipts_from_its_validator() -> None:
    validator, other, me = LocalSigner.create(), LocalSigner.create(), LocalSigner.create()
    miner = NetworkMiner(None, me, validator.address, {})  # type: ignore[arg-type]  # no training here
    miner.p2p = SimpleNamespace(domain=DOMAIN)  # type: ignore[assignment]  # only the domain is read

    def signed(by: LocalSigner, miner_address: str) -> bytes:
        result = RoundResult(
            round=0,
            verdicts={miner_address: Verdict(miner_address, "", gains=Gains(val=0.1, own=0.0, random=0.0))},
            model_sha256="00" * 32,
            val_loss_before=3.0,
            val_loss_after=2.0,
        )
        out = round_receipts(
            result, b"\x33" * 32, epoch=0, emission=10, domain=DOMAIN, signer=by, payouts={},
            first_nonce=0, issued_at=1,
        )  # fmt: skip
        return encode(out.receipts[miner_address])

    good = signed(validator, me.address)
    trio.run(miner._on_receipt, "peer", good)
    trio.run(miner._on_receipt, "peer", good)  # a repeat is kept once
    assert len(miner.receipts) == 1
    with pytest.raises(RequestRefused, match="another miner"):
        trio.run(miner._on_receipt, "peer", signed(validator, other.address))
    with pytest.raises(RequestRefused, match="does not follow"):
        trio.run(miner._on_receipt, "peer", signed(other, me.address))
    with pytest.raises(RequestRefused, match="does not verify"):
        trio.run(miner._on_receipt, "peer", good[:-3] + b"\x00\x00\x00")
    assert len(miner.receipts) == 1
