from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from eth_account import Account

from wallet.errors import KeystoreError, WrongPassword
from wallet.keystore import (
    DEFAULT_SCRYPT_N,
    decrypt_private_key,
    keystore_address,
    load_keystore,
    open_secret,
    save_keystore,
    seal_secret,
    unlock_keystore,
)

KEY = bytes.fromhex("ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80")
ADDRESS = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"


def test_save_and_unlock_round_trip_with_mode_0600(tmp_path: Path, cheap_n: int) -> None:
    path = tmp_path / "sub" / "key.json"
    save_keystore(path, KEY, "correct horse", scrypt_n=cheap_n)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert unlock_keystore(path, "correct horse") == KEY
    assert keystore_address(load_keystore(path)) == ADDRESS
    assert [p.name for p in path.parent.iterdir()] == ["key.json"], "no temporary file is left behind"
    assert KEY.hex() not in path.read_text()


def test_keystore_is_standard_v3_that_eth_account_reads(tmp_path: Path, cheap_n: int) -> None:
    path = tmp_path / "key.json"
    save_keystore(path, KEY, "pw", scrypt_n=cheap_n)
    data = json.loads(path.read_text())
    assert data["version"] == 3 and data["crypto"]["kdf"] == "scrypt"
    assert data["crypto"]["kdfparams"]["n"] == cheap_n
    assert bytes(Account.decrypt(data, "pw")) == KEY


def test_keystore_written_by_eth_account_is_read(cheap_n: int) -> None:
    foreign = Account.encrypt(KEY, "pw", kdf="pbkdf2", iterations=1000)
    assert decrypt_private_key(foreign, "pw") == KEY


def test_wrong_password_says_so(tmp_path: Path, cheap_n: int) -> None:
    path = tmp_path / "key.json"
    save_keystore(path, KEY, "right", scrypt_n=cheap_n)
    with pytest.raises(WrongPassword, match="wrong password"):
        unlock_keystore(path, "wrong")


def test_production_default_is_scrypt_2_18() -> None:
    assert DEFAULT_SCRYPT_N == 1 << 18
    sealed = seal_secret(b"x", "pw")
    assert sealed["crypto"]["kdfparams"]["n"] == 1 << 18


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(version=4), "version 3"),
        (lambda d: d["crypto"]["kdfparams"].update(n=1 << 30), "power of two"),
        (lambda d: d["crypto"]["kdfparams"].update(n=1000), "power of two"),
        (lambda d: d["crypto"]["kdfparams"].update(r=64), "r/p"),
        (lambda d: d["crypto"].update(cipher="aes-256-gcm"), "cipher"),
        (lambda d: d["crypto"].update(kdf="argon2"), "key derivation"),
        (lambda d: d["crypto"].update(mac="00"), "mac"),
        (lambda d: d["crypto"].update(ciphertext="zz"), "hex"),
        (lambda d: d.pop("crypto"), "crypto"),
    ],
)
def test_malformed_keystore_is_refused_before_any_work(tmp_path: Path, cheap_n: int, mutate, message) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "key.json"
    data = save_keystore(path, KEY, "pw", scrypt_n=cheap_n)
    mutate(data)
    path.write_text(json.dumps(data))
    with pytest.raises(KeystoreError, match=message):
        unlock_keystore(path, "pw")


@pytest.mark.parametrize("content", [b"", b"{not json", b"[1, 2]", b"x" * 70_000])
def test_unreadable_keystore_file_is_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "key.json"
    path.write_bytes(content)
    with pytest.raises(KeystoreError):
        load_keystore(path)


def test_missing_keystore_file_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(KeystoreError, match="create or import"):
        load_keystore(tmp_path / "absent.json")


def test_sealed_secret_round_trip_and_wrong_password(cheap_n: int) -> None:
    secret = b"test test test test test test test test test test test junk"
    sealed = seal_secret(secret, "pw", scrypt_n=cheap_n)
    assert secret.hex() not in json.dumps(sealed) and b"junk" not in json.dumps(sealed).encode()
    assert open_secret(sealed, "pw") == secret
    with pytest.raises(WrongPassword, match="wrong password"):
        open_secret(sealed, "nope")
    with pytest.raises(KeystoreError, match="sealed"):
        open_secret({**sealed, "kind": "other"}, "pw")
