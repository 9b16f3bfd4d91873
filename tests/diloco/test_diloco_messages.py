"""The DiLoCo round message types: their cross-field rules, and the validator's fast filter on notices."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import pytest

from protocol.encoding import decode, encode
from protocol.errors import ProtocolError
from protocol.messages import ZERO32, DilocoContribution, DilocoRound
from protocol.signing import sign

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "protocol"))
from protocol_samples import T0, KeySigner, domain, h, samples

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
    ],
)
def test_round_rules_refuse(changes: dict[str, object], words: str) -> None:
    with pytest.raises(ProtocolError, match=words.replace("(", r"\(")):
        replace(_round(), **changes)


def test_round_zero_and_int8_are_accepted() -> None:
    msg = replace(_round(), round=0, prev_model_sha256=ZERO32, compression="int8", topk_bps=0)
    assert msg.round == 0


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
