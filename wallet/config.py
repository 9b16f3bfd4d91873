"""Configuration sections of `wallet` (pure dataclasses: import nothing of ours)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class WalletConfig:
    """Keys and keystore."""

    keystore_file: str = field(
        default="", metadata={"help": "Keystore v3 file; empty: wallet/keystore.json in the data dir."}
    )
    scrypt_n: int = field(
        default=1 << 18, metadata={"help": "scrypt N for new keystores (2^18 in production)."}
    )
    use_keyring: bool = field(
        default=True, metadata={"help": "Cache the password in the OS keyring when a secure one exists."}
    )


@dataclass
class ChainConfig:
    """The EVM chain the node records contributions on."""

    backend: str = field(
        default="embedded", metadata={"help": "'embedded' (py-evm) or 'rpc' (JSON-RPC URL from the profile)."}
    )
    rpc_timeout: float = field(default=30.0, metadata={"help": "Seconds to wait for a JSON-RPC answer."})
    receipt_timeout: float = field(
        default=120.0, metadata={"help": "Seconds to wait for a transaction receipt."}
    )
