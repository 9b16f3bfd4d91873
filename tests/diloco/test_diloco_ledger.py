"""Round receipts in the validator's val_receipt: shared nonces, no second set after a restart, and
the ordinary epoch close (root on the embedded chain, proofs) to the miner's receipt book and claim."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from types import SimpleNamespace

import trio

from miner.db import MinerDB
from miner.diloco_net import NetworkMiner, claim_held
from miner.rewards import accept_proof
from node.store import Store
from protocol.encoding import encode
from protocol.signing import Domain
from validator.db import ValidatorDB
from validator.diloco.gauntlet import Gains
from validator.diloco.ledger import NONCE_KEY, store_round_receipts
from validator.diloco.receipts import RoundReceipts, RoundRewards
from validator.diloco.rounds import RoundResult, Verdict
from validator.epoch_close import EpochCloser
from validator.service import registry_access
from wallet.devnet import start_embedded_chain
from wallet.receipts import verify_receipt
from wallet.registry import RegistryParams
from wallet.signer import LocalSigner

RUN = b"\x44" * 32
ETHER = 10**18


def _result(miners: list[str], round_number: int) -> RoundResult:
    gains = [Gains(val=0.03, own=0.01, random=0.0), Gains(val=0.01, own=0.01, random=0.0)]
    verdicts = {m: Verdict(m, "", gains=g) for m, g in zip(miners, gains, strict=False)}
    verdicts["0x" + "0e" * 20] = Verdict("0x" + "0e" * 20, "no_improvement", "val gain -0.2")
    return RoundResult(round_number, verdicts, "00" * 32, 3.0, 2.5)


def _store(db: ValidatorDB, result: RoundResult, wire_round: int, domain: Domain, signer: LocalSigner,
           now_ms: int = 1_700_000_000_000) -> RoundReceipts:  # fmt: skip
    rewards = RoundRewards(emission=ETHER, epoch_of=lambda _ms: 0)
    return store_round_receipts(db, result, RUN, wire_round=wire_round, rewards=rewards, domain=domain,
                                signer=signer, now_ms=now_ms)  # fmt: skip


def test_round_receipts_share_the_validators_nonces_and_survive_a_restart(tmp_path: Path) -> None:
    domain = Domain(31337, "0x" + "ab" * 20, b"\x07" * 32)
    signer, miners = LocalSigner.create(), [LocalSigner.create().address for _ in range(2)]
    db = ValidatorDB(Store(tmp_path / "store.sqlite"))
    assert db.next_counter(NONCE_KEY) == 1  # a task receipt took nonce 1 (validator.settle)
    first = _store(db, _result(miners, 0), 0, domain, signer)
    assert sorted(s.message.nonce for s in first.receipts.values()) == [2, 3]  # type: ignore[attr-defined]
    assert set(first.excluded.values()) == {"no_improvement"}
    rows = db.receipts()
    assert {r["miner"] for r in rows} == set(miners) and all(r["delivered"] == 0 for r in rows)
    again = _store(db, _result(miners, 0), 0, domain, signer)  # the same round after a restart
    assert {m: encode(s) for m, s in again.receipts.items()} == {
        m: encode(s) for m, s in first.receipts.items()
    }
    restarted = ValidatorDB(Store(tmp_path / "store.sqlite"))
    later = _store(restarted, _result(miners, 1), 1, domain, signer, now_ms=1)  # clock behind: moved on
    assert sorted(s.message.nonce for s in later.receipts.values()) == [4, 5]  # type: ignore[attr-defined]
    assert restarted.next_counter(NONCE_KEY) == 6
    assert all(s.message.issued_at > 1_700_000_000_000 for s in later.receipts.values())  # type: ignore[attr-defined]


def test_round_receipts_are_posted_proven_and_claimed_from_the_miners_book(tmp_path: Path) -> None:
    validator, me, other = LocalSigner.create(), LocalSigner.create(), LocalSigner.create()
    params = RegistryParams(epoch_length=3600, emission_per_epoch=2 * ETHER)
    with start_embedded_chain([validator], params=params, fund=[me.address], serve=False) as chain:
        domain = Domain(chain.chain_id, chain.deployment.registry, b"\x07" * 32)
        v_db = ValidatorDB(Store(tmp_path / "validator.sqlite"))
        for r in (0, 1):
            _store(v_db, _result([me.address, other.address], r), r, domain, validator)
        chain.advance_to_epoch(1)
        published: list[bytes] = []
        net = SimpleNamespace(put_public_file=lambda _p: "blob", publish=_collect(published))
        access = registry_access(chain.registry(validator), validator.address)
        closer = EpochCloser(v_db, domain, validator, net, access, tmp_path / "epochs")  # type: ignore[arg-type]
        trio.run(closer.run_once)
        assert v_db.epoch(0)["state"] == "posted" and len(published) == 1  # type: ignore[index]
        proofs = [bytes(p["signed"]) for p in v_db.proofs(0, me.address)]
        assert len(proofs) == 2

        m_db = MinerDB(Store(tmp_path / "miner.sqlite"))
        miner = NetworkMiner(None, me, validator.address, {}, db=m_db)  # type: ignore[arg-type]  # no training
        miner.p2p = SimpleNamespace(domain=domain)  # type: ignore[assignment]  # only the domain is read
        for row in v_db.receipts():
            if row["miner"] == me.address:
                verify_receipt(miner.take_receipt(bytes(row["signed"])), domain)
        for proof in proofs:
            accept_proof(m_db, proof, domain)
        assert len(m_db.receipts()) == 2 and len(m_db.proofs(claimed=False)) == 2
        chain.advance_to_epoch(2)  # claims open once the posting window (epoch 1) has closed
        outcomes = claim_held(m_db, chain.registry(me))
        assert [o.status for o in outcomes] == ["claimed", "claimed"]
        assert m_db.proofs(claimed=False) == []
        expected = sum(int(r["amount"]) for r in m_db.receipts())
        assert abs(chain.registry(me).token_balance(me.address) - expected) <= 2  # the lone poster's scale 1
        assert claim_held(m_db, chain.registry(me)) == []  # nothing left to claim


def _collect(into: list[bytes]) -> Callable[[bytes], Awaitable[None]]:
    async def publish(signed: bytes) -> None:
        into.append(signed)

    return publish
