"""Keystore v3 files (scrypt + AES-128-CTR) and sealed secrets in the same format.

A keystore file is the source of truth for a key: it is what geth, MetaMask and eth-account read
and write. ``seal_secret`` applies the same construction to other secrets (the mnemonic), so no
secret ever lies on disk in plain text. Files are written atomically with mode 0600.

A keystore is untrusted input (a user may import any file): its structure and KDF parameters are
checked before any work is done, so a file cannot demand gigabytes of scrypt memory.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import tempfile
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from eth_account import Account
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from wallet.errors import KeystoreError, WrongPassword

DEFAULT_SCRYPT_N = 1 << 18
MIN_SCRYPT_N = 1 << 4  # tests only: production files use DEFAULT_SCRYPT_N
MAX_SCRYPT_N = 1 << 20  # 1 GiB of scrypt memory at r=8: refuse files that ask for more
MAX_PBKDF2_ROUNDS = 10_000_000
MAX_FILE_BYTES = 64 * 1024
SCRYPT_R = 8
SCRYPT_P = 1
DKLEN = 32


def atomic_write(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write ``data`` to ``path`` so a crash leaves the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def write_json(path: Path, obj: Any) -> None:
    atomic_write(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def read_json(path: Path, what: str = "keystore") -> dict[str, Any]:
    """Read a small JSON object from ``path`` (size-capped, must be an object)."""
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise KeystoreError(f"{what} file {path} does not exist: create or import a wallet first") from None
    except OSError as exc:
        raise KeystoreError(f"cannot read {what} file {path}: {exc.strerror}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise KeystoreError(f"{what} file {path} is over {MAX_FILE_BYTES} bytes: not a {what}")
    try:
        obj = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise KeystoreError(f"{what} file {path} is not valid JSON ({exc}): was it truncated?") from None
    if not isinstance(obj, dict):
        raise KeystoreError(f"{what} file {path} must hold a JSON object")
    return obj


# --- keystore v3 -------------------------------------------------------------------------


def encrypt_private_key(
    private_key: bytes, password: str, scrypt_n: int = DEFAULT_SCRYPT_N
) -> dict[str, Any]:
    """A keystore v3 object for ``private_key`` (scrypt with N = ``scrypt_n``, r = 8, p = 1)."""
    check_scrypt_n(scrypt_n)
    return Account.encrypt(private_key, password, kdf="scrypt", iterations=scrypt_n)


def decrypt_private_key(keystore: Mapping[str, Any], password: str) -> bytes:
    """The private key inside a keystore v3 object; ``WrongPassword`` if the MAC does not match."""
    check_keystore(keystore)
    try:
        key: bytes = Account.decrypt(dict(keystore), password)
    except ValueError as exc:
        if "MAC mismatch" in str(exc):
            raise WrongPassword("wrong password: it does not open this keystore") from None
        raise KeystoreError(f"keystore cannot be decrypted: {exc}") from None
    return key


def save_keystore(
    path: Path, private_key: bytes, password: str, scrypt_n: int = DEFAULT_SCRYPT_N
) -> dict[str, Any]:
    """Encrypt ``private_key`` into a keystore file at ``path`` (atomic, mode 0600)."""
    keystore = encrypt_private_key(private_key, password, scrypt_n)
    write_json(path, keystore)
    return keystore


def load_keystore(path: Path) -> dict[str, Any]:
    """Read and structurally check a keystore file (no password needed)."""
    keystore = read_json(path)
    try:
        check_keystore(keystore)
    except KeystoreError as exc:
        raise KeystoreError(f"{path}: {exc}") from None
    return keystore


def unlock_keystore(path: Path, password: str) -> bytes:
    """The private key in the keystore file at ``path``."""
    return decrypt_private_key(load_keystore(path), password)


def keystore_address(keystore: Mapping[str, Any]) -> str:
    """The checksum address a keystore declares (unverified until it is decrypted)."""
    raw = keystore.get("address")
    if not isinstance(raw, str) or len(raw.removeprefix("0x")) != 40:
        raise KeystoreError("keystore has no valid 'address' field")
    return str(to_checksum_address("0x" + raw.removeprefix("0x")))


def check_keystore(keystore: Mapping[str, Any]) -> None:
    """Raise ``KeystoreError`` unless ``keystore`` is a v3 keystore with sane parameters."""
    if keystore.get("version") != 3:
        version = keystore.get("version")
        raise KeystoreError(f"only keystore version 3 is supported, this is version {version!r}")
    crypto = keystore.get("crypto", keystore.get("Crypto"))
    if not isinstance(crypto, Mapping):
        raise KeystoreError("keystore has no 'crypto' section")
    check_crypto(crypto, ciphertext_len=32)


def check_crypto(crypto: Mapping[str, Any], ciphertext_len: int | None = None) -> None:
    """Check the cipher, KDF parameters and field sizes of a v3 ``crypto`` section."""
    if crypto.get("cipher") != "aes-128-ctr":
        raise KeystoreError(f"unsupported cipher {crypto.get('cipher')!r}; expected aes-128-ctr")
    params = crypto.get("cipherparams")
    _hex_field(params.get("iv") if isinstance(params, Mapping) else None, "cipherparams.iv", 16)
    ciphertext = _hex_field(crypto.get("ciphertext"), "ciphertext", ciphertext_len)
    if not 0 < len(ciphertext) <= 1024:
        raise KeystoreError("keystore ciphertext is empty or too long")
    _hex_field(crypto.get("mac"), "mac", 32)
    kdf, kdfparams = crypto.get("kdf"), crypto.get("kdfparams")
    if not isinstance(kdfparams, Mapping):
        raise KeystoreError("keystore has no 'kdfparams'")
    if kdfparams.get("dklen") != DKLEN:
        raise KeystoreError(f"keystore dklen must be {DKLEN}")
    _hex_field(kdfparams.get("salt"), "kdfparams.salt", None)
    if kdf == "scrypt":
        check_scrypt_n(kdfparams.get("n"))
        if kdfparams.get("r") not in range(1, 9) or kdfparams.get("p") not in range(1, 5):
            raise KeystoreError("keystore scrypt parameters r/p are out of range (r <= 8, p <= 4)")
    elif kdf == "pbkdf2":
        rounds = kdfparams.get("c")
        rounds_ok = isinstance(rounds, int) and 1 <= rounds <= MAX_PBKDF2_ROUNDS
        if not rounds_ok or kdfparams.get("prf") != "hmac-sha256":
            raise KeystoreError("keystore pbkdf2 parameters are out of range")
    else:
        raise KeystoreError(f"unsupported key derivation {kdf!r}; expected scrypt or pbkdf2")


def check_scrypt_n(n: object) -> None:
    if not isinstance(n, int) or isinstance(n, bool) or n < MIN_SCRYPT_N or n > MAX_SCRYPT_N or n & (n - 1):
        raise KeystoreError(f"scrypt N must be a power of two between 2^4 and 2^20, got {n!r}")


def _hex_field(value: object, name: str, length: int | None) -> bytes:
    if not isinstance(value, str) or len(value) > 4096:
        raise KeystoreError(f"keystore field {name} is missing or not a hex string")
    try:
        raw = bytes.fromhex(value.removeprefix("0x"))
    except ValueError:
        raise KeystoreError(f"keystore field {name} is not valid hex") from None
    if length is not None and len(raw) != length:
        raise KeystoreError(f"keystore field {name} must be {length} bytes, got {len(raw)}")
    return raw


# --- sealed secrets (the mnemonic) ---------------------------------------------------------


def seal_secret(
    secret: bytes, password: str, scrypt_n: int = DEFAULT_SCRYPT_N, kind: str = "mnemonic"
) -> dict[str, Any]:
    """Encrypt ``secret`` exactly as keystore v3 encrypts a key (scrypt, AES-128-CTR, keccak MAC)."""
    check_scrypt_n(scrypt_n)
    salt, iv = secrets.token_bytes(32), secrets.token_bytes(16)
    derived = _scrypt(password, salt, scrypt_n, SCRYPT_R, SCRYPT_P)
    ciphertext = _aes_ctr(derived[:16], iv, secret)
    return {
        "kind": kind,
        "id": str(uuid.uuid4()),
        "version": 1,
        "crypto": {
            "cipher": "aes-128-ctr",
            "cipherparams": {"iv": iv.hex()},
            "ciphertext": ciphertext.hex(),
            "kdf": "scrypt",
            "kdfparams": {"dklen": DKLEN, "n": scrypt_n, "r": SCRYPT_R, "p": SCRYPT_P, "salt": salt.hex()},
            "mac": keccak(derived[16:32] + ciphertext).hex(),
        },
    }


def open_secret(sealed: Mapping[str, Any], password: str, kind: str = "mnemonic") -> bytes:
    """The secret inside ``sealed``; ``WrongPassword`` if the MAC does not match."""
    crypto = sealed.get("crypto")
    if sealed.get("kind") != kind or sealed.get("version") != 1 or not isinstance(crypto, Mapping):
        raise KeystoreError(f"not a sealed {kind} file (version 1)")
    check_crypto(crypto)
    if crypto["kdf"] != "scrypt":
        raise KeystoreError("sealed secrets use scrypt only")
    p = crypto["kdfparams"]
    derived = _scrypt(password, bytes.fromhex(p["salt"]), p["n"], p["r"], p["p"])
    ciphertext = bytes.fromhex(crypto["ciphertext"])
    if not hmac.compare_digest(keccak(derived[16:32] + ciphertext), bytes.fromhex(crypto["mac"])):
        raise WrongPassword(f"wrong password: it does not open the sealed {kind}")
    return _aes_ctr(derived[:16], bytes.fromhex(crypto["cipherparams"]["iv"]), ciphertext)


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    # hashlib's default maxmem (32 MiB) is below what N = 2^18 needs (128 * r * N = 256 MiB).
    maxmem = 2 * 128 * r * n * p + 2**20
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=DKLEN, maxmem=maxmem)


def _aes_ctr(key: bytes, iv: bytes, data: bytes) -> bytes:
    encryptor = Cipher(algorithms.AES(key), modes.CTR(iv)).encryptor()
    return encryptor.update(data) + encryptor.finalize()
