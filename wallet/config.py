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
    retries: int = field(
        default=3, metadata={"help": "Retries of a JSON-RPC request after a connection error or timeout."}
    )
    retry_delay: float = field(
        default=0.5, metadata={"help": "Seconds before the first retry (doubled after each)."}
    )
    rpc_host: str = field(
        default="127.0.0.1", metadata={"help": "Address the embedded chain's JSON-RPC is served on."}
    )
    rpc_port: int = field(default=0, metadata={"help": "Port of the embedded chain's JSON-RPC; 0: any free."})
    epoch_length: float = field(
        default=60.0, metadata={"help": "Seconds per reward epoch of a newly deployed registry (whole)."}
    )
    emission_per_epoch: int = field(
        default=1000, metadata={"help": "Whole reward tokens emitted per epoch by a newly deployed registry."}
    )
    min_stake: float = field(
        default=1.0, metadata={"help": "Minimum validator stake, in native currency, of a new registry."}
    )
    unstake_delay: float = field(
        default=3600.0, metadata={"help": "Seconds from an unstake request to its withdrawal (new registry)."}
    )
    devnet_stake: float = field(
        default=10.0, metadata={"help": "Native currency the devnet validator stakes when it registers."}
    )
