"""A wallet directory: several accounts under one password, the sealed mnemonic, hot and payout keys.

Layout (``<data dir>/wallet``, mode 0700, every file 0600 and written atomically)::

    accounts/<addr>.json   keystore v3 of every account
    keystore.json          a copy of the hot (signing) account's keystore: what the node unlocks
    mnemonic.json          the BIP-39 phrase sealed with scrypt + AES (absent for key imports)
    wallet.json            accounts (address, derivation path) and the payout address

The keystores are the source of truth, and every change is one atomic file write, so a crash
never loses a key: choosing the hot account rewrites ``keystore.json`` only, and the hot address
is read from it (not from ``wallet.json``). ``wallet.json`` holds no secret; a wallet made by
``magnet init`` (``keystore.json`` and ``mnemonic.json`` only) is understood as one account. The
payout address defaults to the hot account and may be any address; the node binds it in its
signed ``Identity``.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eth_utils.address import is_address, to_checksum_address

from wallet.errors import KeystoreError, WalletError
from wallet.keys import account_from_mnemonic, account_from_private_key, derivation_path, new_mnemonic
from wallet.keystore import (
    DEFAULT_SCRYPT_N,
    decrypt_private_key,
    encrypt_private_key,
    keystore_address,
    load_keystore,
    open_secret,
    read_json,
    seal_secret,
    write_json,
)
from wallet.signer import LocalSigner

META_VERSION = 1


class WalletExists(WalletError):
    """A wallet already exists where a new one was to be created."""


class NoWallet(WalletError):
    """There is no wallet in this directory."""


@dataclass(frozen=True)
class AccountInfo:
    address: str
    path: str | None  # BIP-44 derivation path; None for an imported private key
    hot: bool


class WalletDir:
    """The wallet at ``root`` (``<data dir>/wallet``)."""

    def __init__(self, root: Path, scrypt_n: int = DEFAULT_SCRYPT_N) -> None:
        self.root = Path(root)
        self.scrypt_n = scrypt_n

    @property
    def hot_keystore(self) -> Path:
        return self.root / "keystore.json"

    @property
    def mnemonic_file(self) -> Path:
        return self.root / "mnemonic.json"

    @property
    def meta_file(self) -> Path:
        return self.root / "wallet.json"

    @property
    def commit_marker(self) -> Path:
        return self.root / "password-change.commit"

    def exists(self) -> bool:
        return self.hot_keystore.exists()

    # --- creation ------------------------------------------------------------------------

    def create(self, password: str, words: int = 12) -> tuple[str, str]:
        """A new mnemonic wallet; returns (address, mnemonic). Show the mnemonic once, to a person."""
        mnemonic = new_mnemonic(words)
        return self.import_mnemonic(mnemonic, password), mnemonic

    def import_mnemonic(self, mnemonic: str, password: str, accounts: int = 1) -> str:
        """Restore a wallet from its phrase with its first ``accounts`` accounts; returns the hot address."""
        self._refuse_overwrite()
        derived = [account_from_mnemonic(mnemonic, i) for i in range(max(accounts, 1))]
        self._prepare()
        phrase = " ".join(mnemonic.lower().split()).encode()
        write_json(self.mnemonic_file, seal_secret(phrase, password, self.scrypt_n))
        entries = []
        for i, account in enumerate(derived):
            write_json(self._account_file(account.address), self._encrypt(bytes(account.key), password))
            entries.append({"address": account.address, "path": derivation_path(i)})
        self._write_meta(entries, derived[0].address)
        shutil.copyfile(self._account_file(derived[0].address), self._fresh(self.hot_keystore))
        return str(derived[0].address)

    def import_private_key(self, private_key: str | bytes, password: str) -> str:
        """A wallet of one imported key (no mnemonic); returns its address."""
        self._refuse_overwrite()
        account = account_from_private_key(private_key)
        self._prepare()
        write_json(self._account_file(account.address), self._encrypt(bytes(account.key), password))
        self._write_meta([{"address": account.address, "path": None}], account.address)
        shutil.copyfile(self._account_file(account.address), self._fresh(self.hot_keystore))
        return str(account.address)

    def add_account(self, password: str) -> str:
        """Derive the next account from the mnemonic; returns its address."""
        mnemonic = self.reveal_mnemonic(password)
        meta = self.meta()
        self._materialise(meta)
        index = 1 + max(int(str(a["path"]).rsplit("/", 1)[1]) for a in meta["accounts"] if a["path"])
        account = account_from_mnemonic(mnemonic, index)
        write_json(self._account_file(account.address), self._encrypt(bytes(account.key), password))
        entry = {"address": account.address, "path": derivation_path(index)}
        self._write_meta([*meta["accounts"], entry], meta["payout"])
        return str(account.address)

    # --- reading -------------------------------------------------------------------------

    def meta(self) -> dict[str, Any]:
        """The account list and payout address (one account from keystore.json if no wallet.json)."""
        if not self.exists():
            raise NoWallet(
                f"no wallet in {self.root}: create one with `magnet wallet create` or `magnet init`"
            )
        if not self.meta_file.exists():
            address = self.hot_address
            path = derivation_path(0) if self.mnemonic_file.exists() else None
            return {
                "version": META_VERSION,
                "accounts": [{"address": address, "path": path}],
                "payout": address,
            }
        meta = read_json(self.meta_file, "wallet metadata")
        if meta.get("version") != META_VERSION or not isinstance(meta.get("accounts"), list):
            raise KeystoreError(f"{self.meta_file} is not wallet metadata version {META_VERSION}")
        return meta

    def accounts(self) -> list[AccountInfo]:
        hot = self.hot_address
        return [AccountInfo(a["address"], a["path"], a["address"] == hot) for a in self.meta()["accounts"]]

    @property
    def hot_address(self) -> str:
        if not self.exists():
            raise NoWallet(
                f"no wallet in {self.root}: create one with `magnet wallet create` or `magnet init`"
            )
        return keystore_address(load_keystore(self.hot_keystore))

    @property
    def payout_address(self) -> str:
        return str(self.meta()["payout"])

    def unlock(self, password: str, address: str | None = None) -> LocalSigner:
        """The signer of ``address`` (default: the hot account); ``WrongPassword`` says so."""
        if self.commit_marker.exists():
            self.recover()  # a password change was interrupted after it committed: finish it
        wanted = self._checked_address(address) if address else self.hot_address
        signer = LocalSigner(decrypt_private_key(load_keystore(self._file_of(wanted)), password))
        if signer.address != wanted:
            raise KeystoreError(f"the keystore filed under {wanted} holds the key of {signer.address}")
        return signer

    def reveal_mnemonic(self, password: str) -> str:
        """The recovery phrase, only with the right password."""
        if not self.mnemonic_file.exists():
            raise NoWallet("this wallet was imported from a private key: it has no recovery phrase")
        return open_secret(read_json(self.mnemonic_file, "sealed mnemonic"), password).decode()

    def export_keystore(self, destination: Path, address: str | None = None) -> Path:
        """Copy an account's keystore (still encrypted) to ``destination`` with mode 0600."""
        source = self._file_of(self._checked_address(address) if address else self.hot_address)
        if destination.exists():
            raise WalletExists(f"{destination} exists: choose another file name")
        destination.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(destination, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out, source.open("rb") as src:
            shutil.copyfileobj(src, out)
        return destination

    # --- changes -------------------------------------------------------------------------

    def change_password(self, old: str, new: str) -> None:
        """Re-encrypt every keystore and the mnemonic, all or nothing.

        Everything is decrypted first, so a wrong ``old`` password changes nothing. The new files
        are written beside the old ones (``*.pending``), then a commit marker, then each is moved
        into place; ``recover()`` finishes an interrupted change (marker present) or discards it
        (marker absent), so a crash never leaves accounts under two different passwords.
        """
        if not new:
            raise WalletError("an empty password protects nothing: choose one")
        self.recover()
        self._materialise(self.meta())
        files = [self.hot_keystore, *sorted((self.root / "accounts").glob("*.json"))]
        keys = {path: decrypt_private_key(load_keystore(path), old) for path in files}
        mnemonic = self.reveal_mnemonic(old) if self.mnemonic_file.exists() else None
        for path, key in keys.items():
            write_json(self._pending(path), self._encrypt(key, new))
        if mnemonic is not None:
            write_json(self._pending(self.mnemonic_file), seal_secret(mnemonic.encode(), new, self.scrypt_n))
        write_json(self.commit_marker, {"change": "password"})
        self.recover()

    def recover(self) -> None:
        """Finish (commit marker present) or discard (absent) an interrupted password change."""
        pending = sorted(self.root.glob("*.pending")) + sorted(self.root.glob("accounts/*.pending"))
        if self.commit_marker.exists():
            for path in pending:
                os.replace(path, path.with_suffix(""))
            self.commit_marker.unlink()
        else:
            for path in pending:
                path.unlink()

    def set_payout(self, address: str) -> None:
        """Pay rewards to ``address`` (any address; it need not be in this wallet)."""
        if not is_address(address):
            raise WalletError(f"{address!r} is not an EVM address (0x followed by 40 hex digits)")
        meta = self.meta()
        self._materialise(meta)
        self._write_meta(meta["accounts"], to_checksum_address(address))

    def set_hot(self, address: str) -> None:
        """Sign with ``address`` from now on: one atomic rewrite of keystore.json."""
        meta = self.meta()
        self._materialise(meta)
        source = self._file_of(self._checked_address(address))
        write_json(self.hot_keystore, read_json(source))

    # --- helpers -------------------------------------------------------------------------

    def _encrypt(self, key: bytes, password: str) -> dict[str, Any]:
        return encrypt_private_key(key, password, self.scrypt_n)

    def _materialise(self, meta: dict[str, Any]) -> None:
        """Give a wallet made by ``magnet init`` its accounts/ folder and wallet.json."""
        if self.meta_file.exists():
            return
        self._prepare()
        hot = self.hot_address
        if not self._account_file(hot).exists():
            write_json(self._account_file(hot), read_json(self.hot_keystore))
        self._write_meta(meta["accounts"], meta["payout"])

    def _refuse_overwrite(self) -> None:
        if self.exists():
            raise WalletExists(f"a wallet already exists in {self.root}; nothing was changed")

    def _prepare(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        (self.root / "accounts").mkdir(exist_ok=True, mode=0o700)

    def _fresh(self, path: Path) -> Path:
        """``path`` created empty with mode 0600, so a copy into it is never world-readable."""
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
        return path

    def _account_file(self, address: str) -> Path:
        return self.root / "accounts" / f"{to_checksum_address(address)}.json"

    def _checked_address(self, address: str) -> str:
        if not is_address(address):
            raise WalletError(f"{address!r} is not an EVM address (0x followed by 40 hex digits)")
        wanted = str(to_checksum_address(address))
        if wanted not in {a["address"] for a in self.meta()["accounts"]}:
            raise WalletError(f"{address} is not an account of this wallet: `magnet wallet show` lists them")
        return wanted

    def _file_of(self, address: str) -> Path:
        path = self._account_file(address)
        return path if path.exists() else self.hot_keystore  # a `magnet init` wallet has keystore.json only

    def _write_meta(self, accounts: list[dict[str, Any]], payout: str) -> None:
        entries = [{"address": a["address"], "path": a["path"]} for a in accounts]
        write_json(self.meta_file, {"version": META_VERSION, "accounts": entries, "payout": payout})

    @staticmethod
    def _pending(path: Path) -> Path:
        return path.with_name(path.name + ".pending")
