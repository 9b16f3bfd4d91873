"""No secret (private key, mnemonic, password) reaches a log, an exception or the CLI's output.

Every wallet operation, successful and failing, runs with all loggers captured at DEBUG; every
exception's message, repr and formatted traceback (with its chain) is collected; then all of it is
searched for each secret. (Tampered and foreign receipts, replayed posts, bad proofs and double
claims are rejected in test_wallet_receipts, test_wallet_contracts and test_wallet_epochs.)
"""

from __future__ import annotations

import json
import logging
import pickle
import traceback
from collections.abc import Callable
from pathlib import Path

import pytest

from node.cli import main
from wallet.errors import WalletError
from wallet.keys import account_from_mnemonic, account_from_private_key
from wallet.keystore import decrypt_private_key, load_keystore, open_secret
from wallet.signer import LocalSigner
from wallet.walletdir import WalletDir

MNEMONIC = "legal winner thank year wave sausage worth useful legal winner thank yellow"
PASSWORD = "Tr0ub4dor&3-unique-secret"
WRONG = "not-the-password-xyz"


def secrets_of(key_hex: str) -> list[str]:
    words = MNEMONIC.split()
    return [PASSWORD, key_hex, "0x" + key_hex, " ".join(words[:4]), " ".join(words[-4:]), MNEMONIC]


def collect(errors: list[str], action: Callable[[], object]) -> None:
    try:
        action()
    except Exception as exc:
        errors.append(str(exc))
        errors.append(repr(exc))
        errors.append("".join(traceback.format_exception(exc)))


def test_no_secret_in_logs_or_errors(tmp_path: Path, cheap_n: int, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    errors: list[str] = []
    wallet = WalletDir(tmp_path / "wallet", scrypt_n=cheap_n)
    wallet.import_mnemonic(MNEMONIC, PASSWORD, accounts=2)
    key_hex = wallet.unlock(PASSWORD).export_private_key().hex()
    keystore = load_keystore(wallet.hot_keystore)

    collect(errors, lambda: wallet.unlock(WRONG))
    collect(errors, lambda: wallet.reveal_mnemonic(WRONG))
    collect(errors, lambda: wallet.change_password(WRONG, "x"))
    collect(errors, lambda: decrypt_private_key(keystore, WRONG))
    collect(errors, lambda: open_secret(json.loads(wallet.mnemonic_file.read_text()), WRONG))
    collect(errors, lambda: account_from_mnemonic(MNEMONIC.replace("yellow", "zoo")))  # bad checksum
    collect(errors, lambda: account_from_mnemonic(MNEMONIC + " extra"))
    collect(errors, lambda: account_from_private_key(key_hex[:-2]))  # truncated key
    collect(errors, lambda: account_from_private_key(key_hex + "00"))
    collect(errors, lambda: wallet.import_mnemonic(MNEMONIC, PASSWORD))  # exists
    collect(errors, lambda: LocalSigner(key_hex).sign_digest(b"short"))
    signer = wallet.unlock(PASSWORD)
    errors.append(repr(signer))
    errors.append(str(signer))
    collect(errors, lambda: pickle.dumps(signer))
    wallet.change_password(PASSWORD, PASSWORD + "!")

    assert len(errors) >= 30
    haystack = "\n".join(errors) + "\n" + caplog.text
    for secret in secrets_of(key_hex):
        assert secret not in haystack, f"a secret leaked: {secret[:6]}..."
    assert any("wrong password" in e for e in errors)


def test_cli_output_carries_no_secret(
    magnet_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MAGNET_WALLET__SCRYPT_N", "1024")
    password_file, wrong_file, phrase_file = tmp_path / "pw", tmp_path / "wrong", tmp_path / "phrase"
    password_file.write_text(PASSWORD + "\n")
    wrong_file.write_text(WRONG + "\n")
    phrase_file.write_text(MNEMONIC + "\n")
    for f in (password_file, wrong_file, phrase_file):
        f.chmod(0o600)
    outputs = []
    for argv in (
        ["wallet", "import", "--mnemonic-file", str(phrase_file), "--password-file", str(password_file)],
        ["wallet", "show", "--json"],
        ["wallet", "show", "--mnemonic", "--password-file", str(password_file)],
        ["wallet", "add-account", "--password-file", str(wrong_file)],
        ["wallet", "passwd", "--password-file", str(wrong_file), "--new-password-file", str(password_file)],
        ["wallet", "import", "--private-key-file", str(phrase_file), "--password-file", str(password_file)],
    ):
        main(argv)
        captured = capsys.readouterr()
        outputs.append(captured.out + captured.err)
    key_hex = WalletDir(magnet_home / "wallet", 1024).unlock(PASSWORD).export_private_key().hex()
    text = "\n".join(outputs)
    for secret in [*secrets_of(key_hex), WRONG]:
        assert secret not in text
    assert "wrong password" in text


def test_wallet_errors_are_value_errors_with_advice() -> None:
    with pytest.raises(WalletError) as info:
        account_from_private_key("0x1234")
    assert "64 hexadecimal digits" in str(info.value)
