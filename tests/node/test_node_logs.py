"""The redaction guard: secrets never reach a log file, whatever path they take."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.logs import (
    RedactionFilter,
    bip39_words,
    component_logger,
    forget_secrets,
    redact,
    register_secret,
    setup_logging,
    short_hash,
)
from wallet.keys import create_account
from wallet.keystore import encrypt_private_key

PASSWORD = "correct horse battery staple 42!"


@pytest.fixture
def secrets() -> dict[str, str]:
    account, mnemonic = create_account()
    keystore = encrypt_private_key(bytes(account.key), PASSWORD, scrypt_n=1 << 4)
    return {
        "key": account.key.hex(),  # 64 hex, no 0x
        "key0x": "0x" + account.key.hex(),
        "mnemonic": mnemonic,
        "ciphertext": keystore["crypto"]["ciphertext"],
        "keystore_json": json.dumps(keystore),
        "password": PASSWORD,
    }


@pytest.fixture
def log_file(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "logs" / "magnet.log"
    setup = setup_logging(path, level="DEBUG", max_bytes=10_000_000)
    yield path
    setup.close()
    forget_secrets()


def test_no_secret_reaches_the_log_file(log_file: Path, secrets: dict[str, str]) -> None:
    register_secret(PASSWORD)
    log = component_logger("wallet")
    log.info("unlocked with key %s", secrets["key0x"])
    log.info("bare key " + secrets["key"])
    log.warning("mnemonic is: %s", secrets["mnemonic"])
    log.warning("as a list %s", secrets["mnemonic"].split())
    log.error("keystore %s", secrets["keystore_json"])
    log.debug("password typed was %r", PASSWORD)
    try:
        raise ValueError(f"cannot open with {secrets['key0x']} and {PASSWORD}")
    except ValueError:
        log.exception("unlock failed for %s", secrets["mnemonic"])
    log.info("plain line with %d args", 2)
    text = log_file.read_text(encoding="utf-8")
    for name in ("key", "mnemonic", "ciphertext", "password"):
        assert secrets[name] not in text, name
    assert secrets["key"].upper() not in text.upper()
    # The records themselves survive, secrets replaced.
    assert "magnet.wallet" in text and "unlocked with key <redacted>" in text
    assert "mnemonic is: <redacted>" in text and "Traceback" in text and "ValueError: cannot open" in text
    assert "plain line with 2 args" in text


def test_guard_covers_handlers_added_before_setup(tmp_path: Path, secrets: dict[str, str]) -> None:
    stream = io.StringIO()
    early = logging.StreamHandler(stream)
    root = logging.getLogger()
    root.addHandler(early)
    setup = setup_logging(None, level="INFO")
    try:
        logging.getLogger("libp2p.network").warning("dialled with %s", secrets["key0x"])
    finally:
        setup.close()
        root.removeHandler(early)
    assert secrets["key0x"][2:] not in stream.getvalue()
    assert "dialled with <redacted>" in stream.getvalue()
    assert logging.getLogger("libp2p").propagate is True


def test_rotation_follows_config(tmp_path: Path) -> None:
    path = tmp_path / "magnet.log"
    setup = setup_logging(path, max_bytes=2_000, backups=2)
    try:
        for i in range(200):
            component_logger("test").info("line %d %s", i, "x" * 50)
    finally:
        setup.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["magnet.log", "magnet.log.1", "magnet.log.2"]


def test_bad_arguments_neither_crash_nor_leak(secrets: dict[str, str]) -> None:
    record = logging.LogRecord("magnet.x", logging.INFO, __file__, 1, "%d %s", (secrets["key"],), None)
    assert RedactionFilter().filter(record)
    assert secrets["key"] not in record.getMessage()


def test_ordinary_text_is_left_alone() -> None:
    text = "peer 12D3KooWQ joined; task abc123 took 1.5 s; sig 0x" + "ab" * 65 + " about able above"
    assert redact(text) == text
    assert short_hash("ab" * 32) == "ab" * 8 + "…" and redact(short_hash("ab" * 32)) == short_hash("ab" * 32)


@settings(max_examples=60, deadline=None)
@given(
    indices=st.lists(st.integers(0, 2047), min_size=12, max_size=24),
    before=st.text(max_size=30),
    after=st.text(max_size=30),
    caps=st.booleans(),
)
def test_any_mnemonic_in_any_context_is_redacted(
    indices: list[int], before: str, after: str, caps: bool
) -> None:
    wordlist = sorted(bip39_words())
    phrase = " ".join(wordlist[i] for i in indices)
    phrase = phrase.upper() if caps else phrase
    redacted = redact(f"{before} {phrase} {after}")
    assert phrase not in redacted
    # No run of 12 wordlist words survives.
    assert " ".join(phrase.split()[:12]) not in redacted


@settings(max_examples=100, deadline=None)
@given(
    key=st.binary(min_size=32, max_size=32),
    prefix=st.sampled_from(["", "0x", "0X"]),
    upper=st.booleans(),
    before=st.text(max_size=40),
    after=st.text(max_size=40),
    sep=st.sampled_from([" ", "=", ":", "'", '"', "\n", "(", ","]),
)
def test_any_private_key_in_any_context_is_redacted(
    key: bytes, prefix: str, upper: bool, before: str, after: str, sep: str
) -> None:
    hex_key = key.hex().upper() if upper else key.hex()
    text = redact(f"{before}{sep}{prefix}{hex_key}{sep}{after}")
    assert hex_key not in text


def test_every_wordlist_word_fits_the_phrase_pre_check() -> None:
    # The cheap pre-check assumes BIP-39 English words are 3 to 8 letters; if a wordlist ever breaks
    # that, mnemonics could slip past it.
    assert all(3 <= len(word) <= 8 and word.isalpha() for word in bip39_words())
