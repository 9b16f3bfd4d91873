"""MessageChecker decisions without a network: every rejection reason, the caches, the peer book."""

from __future__ import annotations

import pytest
from p2p_netutil import DOMAIN, commitment, identity, now_ms, task_status

from p2p.peerbook import PeerBook
from p2p.validation import (
    Accept,
    AllowListAuthorizer,
    MessageChecker,
    NeedIdentity,
    Reject,
    topic,
    topic_for,
)
from protocol.encoding import encode
from protocol.signing import SignedMessage
from wallet.signer import LocalSigner

PEER_A = "12D3KooWDpJ7As7BWAwRMfu1VU2WJqNq6XvHgjHQeF8mZ4qWdJyK"
PEER_B = "12D3KooWGE2Hd6nX4WmSCGc69WCJDsAUqpDzPoDRVsfVYCcmncUe"


@pytest.fixture
def alice() -> LocalSigner:
    return LocalSigner.create()


@pytest.fixture
def book(alice: LocalSigner) -> PeerBook:
    book = PeerBook()
    signed = identity(alice, PEER_A)
    book.bind(signed.message, encode(signed))  # type: ignore[arg-type]
    return book


def checker(book: PeerBook, validators: tuple[str, ...] = (), max_bytes: int = 65536) -> MessageChecker:
    return MessageChecker(DOMAIN, book, AllowListAuthorizer(validators), max_bytes,
                          clock_skew=30.0, validity_window=600.0)


def check(c: MessageChecker, signed: SignedMessage | bytes, origin: str = PEER_A, key: bytes = b"k1",
          name: str | None = None) -> Accept | Reject | NeedIdentity:
    data = signed if isinstance(signed, bytes) else encode(signed)
    full = name or (topic("commitments") if isinstance(signed, bytes) else topic_for(signed))
    return c.check(data, full, origin, key)


def test_valid_message_is_accepted_and_signature_checked_once(book: PeerBook, alice: LocalSigner) -> None:
    c = checker(book)
    signed = commitment(alice)
    verdict = check(c, signed)
    assert isinstance(verdict, Accept) and verdict.signer == alice.address
    # The same gossip message seen again (another relay, same origin and seqno) is not a replay.
    assert isinstance(check(c, signed, key=b"k1"), Accept)
    assert c.signature_checks == 1
    assert c.recheck(encode(signed), b"k1") is not None


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda data: data[:-5], "undecodable"),
        (lambda data: b"\xff" + data, "undecodable"),
        (lambda data: data + b" " * 70_000, "oversize"),
    ],
)
def test_malformed_bytes_are_rejected(book: PeerBook, alice: LocalSigner, mutate, reason: str) -> None:
    verdict = check(checker(book), mutate(encode(commitment(alice))))
    assert verdict == Reject(reason)


def test_forged_signature_is_rejected(book: PeerBook, alice: LocalSigner) -> None:
    mallory = LocalSigner.create()
    genuine = commitment(alice)
    forged = SignedMessage(genuine.message, commitment(mallory).signature)  # alice's fields, mallory's sig
    assert check(checker(book), forged) == Reject("bad_signature")


def test_message_signed_for_another_network_is_rejected(book: PeerBook, alice: LocalSigner) -> None:
    from protocol.signing import Domain, sign

    other = Domain(DOMAIN.chain_id, DOMAIN.verifying_contract, b"\x09" * 32)
    signed = sign(commitment(alice).message, other, alice)
    assert check(checker(book), signed) == Reject("bad_signature")


def test_timestamps_outside_the_window_are_rejected(book: PeerBook, alice: LocalSigner) -> None:
    c = checker(book)
    assert check(c, commitment(alice, issued_at=now_ms() + 120_000)) == Reject("from_future")
    assert check(c, commitment(alice, issued_at=now_ms() - 900_000)) == Reject("stale")
    assert isinstance(check(c, commitment(alice, issued_at=now_ms() + 10_000)), Accept)  # within skew


def test_replay_with_a_new_gossip_key_is_rejected(book: PeerBook, alice: LocalSigner) -> None:
    c = checker(book)
    signed = commitment(alice)
    assert isinstance(check(c, signed, key=b"first"), Accept)
    assert check(c, signed, key=b"second") == Reject("replay")


def test_signer_not_bound_to_origin_peer_is_rejected(book: PeerBook, alice: LocalSigner) -> None:
    mallory = LocalSigner.create()
    assert check(checker(book), commitment(mallory), origin=PEER_A) == Reject("misbound")


def test_unknown_origin_needs_its_identity(book: PeerBook, alice: LocalSigner) -> None:
    assert check(checker(book), commitment(alice), origin=PEER_B) == NeedIdentity(PEER_B)


def test_identity_must_come_from_the_peer_it_names(book: PeerBook) -> None:
    bob = LocalSigner.create()
    c = checker(book)
    assert check(c, identity(bob, PEER_B), origin=PEER_A) == Reject("misbound")
    assert isinstance(check(c, identity(bob, PEER_B), origin=PEER_B, key=b"k2"), Accept)


def test_validator_only_messages_need_authorisation(book: PeerBook, alice: LocalSigner) -> None:
    assert check(checker(book), task_status(alice)) == Reject("unauthorized")
    assert isinstance(check(checker(book, validators=(alice.address,)), task_status(alice)), Accept)


def test_message_on_the_wrong_topic_is_rejected(book: PeerBook, alice: LocalSigner) -> None:
    assert check(checker(book), encode(commitment(alice)), name=topic("tasks")) == Reject("wrong_topic")


def test_peerbook_keeps_the_newest_identity(alice: LocalSigner) -> None:
    book = PeerBook()
    new, old = identity(alice, PEER_A, issued_at=now_ms()), identity(alice, PEER_A, issued_at=now_ms() - 5000)
    assert book.bind(new.message, encode(new))  # type: ignore[arg-type]
    assert not book.bind(old.message, encode(old))  # type: ignore[arg-type]
    record = book.get(PEER_A)
    assert record is not None and record.identity_issued_at == new.message.issued_at  # type: ignore[attr-defined]
    assert book.peer_of(alice.address) == PEER_A and book.address_of(PEER_A) == alice.address
    assert record.summary()["roles"] == ["miner"]


def test_fetched_identity_is_checked(book: PeerBook, alice: LocalSigner) -> None:
    c = checker(book)
    good = encode(identity(alice, PEER_B))
    assert c.check_identity(good, PEER_B).address == alice.address
    from protocol.errors import ProtocolError

    with pytest.raises(ProtocolError):
        c.check_identity(good, PEER_A)  # an Identity for another peer


def test_identity_proven_by_its_peer_beats_a_claimed_one(alice: LocalSigner) -> None:
    mallory = LocalSigner.create()
    book = PeerBook()
    claimed = identity(mallory, PEER_A, issued_at=now_ms() + 20_000)  # mallory claims alice's peer id
    assert book.bind(claimed.message, encode(claimed), proven=False)  # type: ignore[arg-type]
    genuine = identity(alice, PEER_A)
    assert book.bind(genuine.message, encode(genuine), proven=True)  # type: ignore[arg-type]
    assert book.address_of(PEER_A) == alice.address
    later_claim = identity(mallory, PEER_A, issued_at=now_ms() + 25_000)
    assert not book.bind(later_claim.message, encode(later_claim), proven=False)  # type: ignore[arg-type]
    assert book.address_of(PEER_A) == alice.address
