"""``LocalSigner``: an EVM key held in memory that signs EIP-712 typed data and transactions.

It satisfies ``protocol.signing.SignerLike`` structurally (``address`` and ``sign_typed_data``).
The key never leaves the object except through ``export_private_key()``, which only the
keystore export path calls; ``repr`` shows the address only and pickling is refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NoReturn

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_keys.datatypes import PrivateKey

from wallet.keys import account_from_private_key


class LocalSigner:
    """Signs with a private key held in this process."""

    __slots__ = ("_account", "_key")

    def __init__(self, private_key: bytes | str) -> None:
        account = account_from_private_key(private_key)
        self._account: LocalAccount = account
        self._key = PrivateKey(bytes(account.key))

    @classmethod
    def create(cls) -> LocalSigner:
        """A throwaway signer with a fresh random key (devnet, tests)."""
        return cls(bytes(Account.create().key))

    @classmethod
    def from_account(cls, account: LocalAccount) -> LocalSigner:
        return cls(bytes(account.key))

    @property
    def address(self) -> str:
        """The checksum address of the key."""
        return str(self._account.address)

    def sign_typed_data(self, full_message: Mapping[str, Any]) -> bytes:
        """65-byte ``r || s || v`` (v = 27 or 28) signature of an EIP-712 ``full_message``
        (``types``, ``primaryType``, ``domain``, ``message``), as ``eth_signTypedData_v4`` gives."""
        signed = self._account.sign_typed_data(full_message=dict(full_message))
        return bytes(signed.signature)

    def sign_digest(self, digest: bytes) -> bytes:
        """65-byte ``r || s || v`` signature of a 32-byte digest the caller already computed
        (an EIP-712 ``keccak(0x1901 || domainSeparator || structHash)``): never a raw message."""
        if len(digest) != 32:
            raise ValueError(f"a digest is 32 bytes, got {len(digest)}")
        sig = self._key.sign_msg_hash(digest)
        return sig.to_bytes()[:64] + bytes([sig.v + 27])

    def sign_transaction(self, tx: Mapping[str, Any]) -> bytes:
        """The raw signed transaction, ready for ``eth_sendRawTransaction``."""
        return bytes(self._account.sign_transaction(dict(tx)).raw_transaction)

    def export_private_key(self) -> bytes:
        """The raw key, for writing a keystore. Never log or display the result."""
        return bytes(self._account.key)

    def __repr__(self) -> str:
        return f"LocalSigner({self.address})"

    def __reduce__(self) -> NoReturn:
        raise TypeError("LocalSigner holds a private key and cannot be pickled")
