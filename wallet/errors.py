"""Errors of the wallet: each says what failed and what the user can do about it.

Messages never contain a secret (private key, mnemonic, password): the security tests search
every message raised here for them.
"""

from __future__ import annotations


class WalletError(ValueError):
    """Base of every wallet error."""


class InvalidMnemonic(WalletError):
    """A mnemonic is not a valid BIP-39 phrase."""


class InvalidPrivateKey(WalletError):
    """A private key is not 32 bytes of hex inside the secp256k1 range."""


class WrongPassword(WalletError):
    """The password does not open this keystore."""


class KeystoreError(WalletError):
    """A keystore file is missing, unreadable, malformed or uses unsupported parameters."""


class NoPassword(WalletError):
    """No password source is available (no terminal, no file, no environment variable)."""
