"""The DiLoCo round message types: their cross-field rules, and the validator's fast filter on notices."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from miner.diloco_net import spec_from_round
from protocol.encoding import decode, encode
from protocol.errors import ProtocolError
from protocol.messages import ZERO32, DilocoContribution, DilocoRound
from protocol.retired import DilocoRoundV1
from protocol.signing import sign

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "protocol"))
from protocol_samples import T0, KeySigner, domain, h, samples

from trainer.diloco.config import CompressionConfig, InnerConfig
from validator.diloco.notices import notice_problem


def _round() -> DilocoRound:
    msg = samples(KeySigner(b"\x01" * 32).address, KeySigner(b"\x02" * 32).address)["DilocoRound"]
    assert isinstance(msg, DilocoRound)
    return msg


def test_round_and_contribution_sign_encode_decode() -> None:
    signer = KeySigner(b"\x01" * 32)
    for name in ("DilocoRound", "DilocoContribution"):
        msg = samples(signer.address, KeySigner(b"\x02" * 32).address)[name]
        back = decode(encode(sign(msg, domain(), signer)))
        assert back.message == msg


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"round": 0}, "prev_model_sha256 must be zero exactly in round 0"),
        ({"prev_model_sha256": ZERO32}, "prev_model_sha256 must be zero exactly in round 0"),
        ({"compression": "int8"}, "topk_bps must be 0"),
        ({"topk_bps": 0}, "'topk' needs 0 < topk_bps <= 10000"),
        ({"topk_bps": 10_001}, "'topk' needs 0 < topk_bps <= 10000"),
        ({"inner_steps": 0}, "inner_steps must be at least 1"),
        ({"shard_count": 0}, "shard_count must be at least 1"),
        ({"compression": "zip"}, "compression"),
        ({"inner_lr_e9": 0}, "inner_lr_e9 must be positive"),
        ({"batch_size": 0}, "batch_size must be at least 1"),
        ({"block": 0}, "block must be at least 1"),
        ({"compression": "int2", "topk_bps": 0, "block": 6}, "a multiple of 4 for int2"),
    ],
)
def test_round_rules_refuse(changes: dict[str, object], words: str) -> None:
    with pytest.raises(ProtocolError, match=words.replace("(", r"\(")):
        replace(_round(), **changes)


def test_round_zero_and_int8_are_accepted() -> None:
    msg = replace(_round(), round=0, prev_model_sha256=ZERO32, compression="int8", topk_bps=0)
    assert msg.round == 0


def test_v2_round_sets_the_inner_lr_batch_and_block_and_v1_rounds_still_decode() -> None:
    """v2 carries what v1 left to the miner's defaults; every released v1 vector still decodes, and a
    miner turns a v1 round into a spec with its own InnerConfig and the default block."""
    miner = KeySigner(b"\x03" * 32).address
    spec = spec_from_round(replace(_round(), compression="int4", topk_bps=0, block=64), miner, InnerConfig())
    assert (spec.inner.inner_lr, spec.inner.batch_size, spec.inner.inner_steps) == (0.003, 8, 50)
    assert (spec.compression.scheme, spec.compression.block) == ("int4", 64)
    vectors = Path(__file__).resolve().parent.parent / "protocol" / "vectors"
    files = [json.loads((vectors / f).read_text()) for f in ("v1_diloco.json", "v1_diloco_int.json")]
    old = [v for doc in files for v in doc["vectors"] if v["type"] == "DilocoRound"]
    assert old and all(v["version"] == 1 for v in old)
    mine = InnerConfig(inner_lr=1e-3, batch_size=4)
    for vector in old:
        v1 = decode(vector["encoded"].encode()).message
        assert isinstance(v1, DilocoRoundV1)
        spec = spec_from_round(v1, miner, mine)
        assert (spec.inner.inner_lr, spec.inner.batch_size) == (1e-3, 4)
        assert spec.compression.block == CompressionConfig().block
        assert spec.inner.inner_steps == v1.inner_steps
    new = json.loads((vectors / "v1_diloco_round_v2.json").read_text())["vectors"]
    assert [(v["type"], v["version"]) for v in new] == [("DilocoRound", 2)]
    assert decode(new[0]["encoded"].encode()).message == _round()


def test_contribution_needs_a_delta() -> None:
    msg = samples(KeySigner(b"\x01" * 32).address, KeySigner(b"\x02" * 32).address)["DilocoContribution"]
    assert isinstance(msg, DilocoContribution)
    with pytest.raises(ProtocolError, match="delta_size must be positive"):
        replace(msg, delta_size=0)


def _notice() -> DilocoContribution:
    msg = samples(KeySigner(b"\x01" * 32).address, KeySigner(b"\x02" * 32).address)["DilocoContribution"]
    assert isinstance(msg, DilocoContribution)
    return msg


@pytest.mark.parametrize(
    ("changes", "received", "reason"),
    [
        ({}, 0, ""),
        ({"round": 1}, 0, "wrong_round"),
        ({"task_id": b"\x07" * 32}, 0, "wrong_round"),
        ({"model_sha256": h("global-1")}, 0, "stale"),
        ({"model_sha256": h("other")}, 0, "stale"),
        ({}, 600_001, "late"),
        ({"shard": 3}, 0, "wrong_shard"),
        ({"delta_size": 10**9}, 0, "oversize"),
    ],
)
def test_notice_fast_filter(changes: dict[str, object], received: int, reason: str) -> None:
    round_msg = _round()
    notice = replace(_notice(), **changes)
    got, detail = notice_problem(
        round_msg,
        notice,
        received_ms=T0 + received,
        expected_shard=17,
        max_delta_bytes=1_000_000,
    )
    assert got == reason
    assert (detail == "") == (reason == "")


@pytest.mark.parametrize("scheme", ["int4", "int2"])
def test_round_accepts_the_packed_schemes(scheme: str) -> None:
    msg = replace(_round(), compression=scheme, topk_bps=0)
    signer = KeySigner(b"\x01" * 32)
    assert decode(encode(sign(msg, domain(), signer))).message.compression == scheme  # type: ignore[attr-defined]
    with pytest.raises(ProtocolError, match="topk_bps must be 0"):
        replace(msg, topk_bps=5)


def test_shard_rule_is_the_documented_hash() -> None:
    import hashlib

    from trainer.diloco.shards import shard_for

    seed, addr = b"\x05" * 32, "0x" + "Ab" * 20
    raw = seed + (7).to_bytes(4, "big") + bytes.fromhex("ab" * 20)
    want = int.from_bytes(hashlib.sha256(raw).digest(), "big")
    assert shard_for(addr, 7, seed, 64) == want % 64
    assert shard_for(addr.lower(), 7, seed, 64) == shard_for(addr, 7, seed, 64)  # case-insensitive
    got = {shard_for(f"0x{i:040x}", 3, seed, 8) for i in range(200)}
    assert got == set(range(8))  # every shard is used
    assert [shard_for(f"0x{i:040x}", 3, seed, 8) for i in range(50)] != [
        shard_for(f"0x{i:040x}", 4, seed, 8) for i in range(50)
    ]  # a new round reshuffles
    for bad in (("0x12", 1, seed, 8), (addr, 1, b"x", 8), (addr, 1, seed, 0)):
        with pytest.raises(ValueError):
            shard_for(*bad)  # type: ignore[arg-type]


def test_the_two_types_are_gossiped_and_checked_like_the_others() -> None:
    from p2p.peerbook import PeerBook
    from p2p.validation import VALIDATOR_ONLY, Accept, AllowListAuthorizer, MessageChecker, Reject, topic_for
    from protocol.messages import Identity
    from protocol.signing import Domain

    net: Domain = domain()
    validator, miner = KeySigner(b"\x01" * 32), KeySigner(b"\x02" * 32)
    peers = {validator.address: "12D3KooWDpJ7As7BWAwRMfu1VU2WJqNq6XvHgjHQeF8mZ4qWdJyK",
             miner.address: "12D3KooWGE2Hd6nX4WmSCGc69WCJDsAUqpDzPoDRVsfVYCcmncUe"}  # fmt: skip
    book = PeerBook()
    now = T0 + 1_000
    for who, peer in peers.items():
        signer = validator if who == validator.address else miner
        ident = sign(Identity(peer_id=peer, address=who, payout_address=who, roles=3, addrs=(), cpu_cores=2,
                              ram_mb=1024, gpu_name="", gpu_mb=0, est_gflops=1, software_version="t",
                              protocol_version=1, issued_at=now), net, signer)  # fmt: skip
        book.bind(ident.message, encode(ident))  # type: ignore[arg-type]

    def checker(validators: tuple[str, ...]) -> MessageChecker:
        return MessageChecker(net, book, AllowListAuthorizer(validators), 65536,
                              clock_skew=30.0, validity_window=600.0)  # fmt: skip

    round_v = sign(replace(_round(), validator=validator.address, issued_at=now), net, validator)
    round_m = sign(replace(_round(), validator=miner.address, issued_at=now), net, miner)
    notice = sign(replace(_notice(), miner=miner.address, issued_at=now), net, miner)
    assert topic_for(round_v) == topic_for(notice) == "/magnet/1/diloco"
    assert "DilocoRound" in VALIDATOR_ONLY and "DilocoContribution" not in VALIDATOR_ONLY
    c = checker((validator.address,))
    topic_d, v_peer, m_peer = "/magnet/1/diloco", peers[validator.address], peers[miner.address]
    assert isinstance(c.check(encode(round_v), topic_d, v_peer, b"a", now), Accept)
    assert c.check(encode(round_m), topic_d, m_peer, b"b", now) == Reject("unauthorized")
    assert isinstance(c.check(encode(notice), topic_d, m_peer, b"c", now), Accept)
    assert c.check(encode(notice), "/magnet/1/tasks", m_peer, b"d", now) == Reject("wrong_topic")
    stale = sign(replace(_notice(), miner=miner.address, issued_at=now - 700_000), net, miner)
    assert c.check(encode(stale), topic_d, m_peer, b"e", now) == Reject("stale")
    relayed = sign(replace(_notice(), miner=miner.address, issued_at=now + 1), net, miner)  # wrong peer
    assert c.check(encode(relayed), topic_d, v_peer, b"f", now) == Reject("misbound")
