"""BIP-39 mnemonics, BIP-44 derivation and private-key import.

Accounts follow the Ethereum path ``m/44'/60'/0'/0/i`` so the same mnemonic opens the same
addresses in MetaMask, Ledger Live or any other wallet. Nothing here touches the disk.
"""

from __future__ import annotations

import re

from eth_account import Account
from eth_account.hdaccount import generate_mnemonic
from eth_account.signers.local import LocalAccount
from eth_account.types import Language

from wallet.errors import InvalidMnemonic, InvalidPrivateKey

# eth-account hides HD wallets behind this switch because its BIP-32 code has had no
# third-party audit; it follows the published test vectors (tested in tests/wallet).
Account.enable_unaudited_hdwallet_features()

ETH_PATH_PREFIX = "m/44'/60'/0'/0/"
MNEMONIC_WORD_COUNTS = (12, 15, 18, 21, 24)
_HEX_KEY = re.compile(r"^(0x)?[0-9a-fA-F]{64}$")
# secp256k1 group order: a private key must lie in [1, n - 1].
_SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def derivation_path(index: int) -> str:
    """The BIP-44 Ethereum path of account ``index``."""
    if not 0 <= index < 2**31:
        raise ValueError(f"account index must be in [0, 2^31), got {index}")
    return f"{ETH_PATH_PREFIX}{index}"


def new_mnemonic(words: int = 12) -> str:
    """A fresh English BIP-39 mnemonic of 12 or 24 words (15, 18, 21 are accepted too)."""
    if words not in MNEMONIC_WORD_COUNTS:
        raise InvalidMnemonic(f"a mnemonic has 12 or 24 words, not {words}")
    return generate_mnemonic(words, Language.ENGLISH)


def normalize_mnemonic(mnemonic: str) -> str:
    """Lower-case words separated by single spaces (what people paste has stray whitespace)."""
    return " ".join(mnemonic.lower().split())


def account_from_mnemonic(mnemonic: str, index: int = 0, passphrase: str = "") -> LocalAccount:
    """The account at ``m/44'/60'/0'/0/index`` of ``mnemonic`` (checksum verified)."""
    phrase = normalize_mnemonic(mnemonic)
    count = len(phrase.split())
    if count not in MNEMONIC_WORD_COUNTS:
        raise InvalidMnemonic(f"a mnemonic has 12 or 24 words; this one has {count}. Check what was pasted.")
    try:
        account: LocalAccount = Account.from_mnemonic(
            phrase, passphrase=passphrase, account_path=derivation_path(index)
        )
        return account
    except Exception:
        raise InvalidMnemonic(
            "the mnemonic is not a valid English BIP-39 phrase (a word is misspelt or the "
            "checksum does not match): check each word against the written copy"
        ) from None  # the library's message may quote the phrase: never chain it


def accounts_from_mnemonic(mnemonic: str, count: int, passphrase: str = "") -> list[LocalAccount]:
    """The first ``count`` accounts of ``mnemonic``."""
    return [account_from_mnemonic(mnemonic, i, passphrase) for i in range(count)]


def account_from_private_key(private_key: str | bytes) -> LocalAccount:
    """Import a raw private key: 32 bytes, or 64 hex digits with or without ``0x``."""
    if isinstance(private_key, str):
        text = private_key.strip()
        if not _HEX_KEY.match(text):
            raise InvalidPrivateKey("a private key is 64 hexadecimal digits (optionally prefixed by 0x)")
        raw = bytes.fromhex(text.removeprefix("0x"))
    else:
        raw = bytes(private_key)
        if len(raw) != 32:
            raise InvalidPrivateKey(f"a private key is 32 bytes, got {len(raw)}")
    if not 0 < int.from_bytes(raw, "big") < _SECP256K1_N:
        raise InvalidPrivateKey("this private key lies outside the secp256k1 range: it is not a valid key")
    account: LocalAccount = Account.from_key(raw)
    return account


def create_account(words: int = 12) -> tuple[LocalAccount, str]:
    """A new mnemonic and its first account."""
    mnemonic = new_mnemonic(words)
    return account_from_mnemonic(mnemonic, 0), mnemonic
