"""What the wallet's and the validator's chain commands share: the wallet, passwords, the network.

Cheap to import (argparse and node.cli only); the wallet and web3 load inside the functions.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING

from node.cli.common import config_from_args, data_dir_of, keystore_path
from node.cli.exitcodes import CliError, ExitCode
from node.config import Config

if TYPE_CHECKING:
    from node.profile import NetworkProfile
    from wallet.chain import ChainClient
    from wallet.signer import LocalSigner
    from wallet.walletdir import WalletDir

WEI = 10**18


def add_options(parser: argparse.ArgumentParser) -> None:
    """The node's common options on a nested parser (``magnet wallet show --data-dir D``)."""
    from node.cli import add_common_options

    add_common_options(parser, argparse.SUPPRESS)


def load(args: argparse.Namespace) -> tuple[Config, WalletDir]:
    from wallet.walletdir import WalletDir

    config = config_from_args(args)
    root = keystore_path(config, data_dir_of(config)).parent
    return config, WalletDir(root, scrypt_n=config.wallet.scrypt_n)


def password(config: Config, purpose: str, account: str | None = None, confirm: bool = False) -> str:
    from wallet.password import get_password

    source = Path(config.node.password_file) if config.node.password_file else None
    cache_key = account if (account and config.wallet.use_keyring) else None
    return get_password(purpose, password_file=source, keyring_account=cache_key, confirm=confirm)


def unlock(config: Config, wallet: WalletDir, address: str | None = None) -> LocalSigner:
    """The signer of ``address`` (default the hot account); a typed password is cached in a secure
    keyring when ``[wallet] use_keyring`` allows it."""
    from wallet.password import cache_password, password_and_source

    account = address or wallet.hot_address
    source = Path(config.node.password_file) if config.node.password_file else None
    cache_key = account if config.wallet.use_keyring else None
    secret, origin = password_and_source(f"unlock {account}", password_file=source, keyring_account=cache_key)
    signer = wallet.unlock(secret, account)
    if config.wallet.use_keyring and origin == "prompt":
        cache_password(account, secret)
    return signer


def network(config: Config) -> NetworkProfile:
    from node.profile import NetworkProfile

    if not config.node.network:
        raise CliError(
            ExitCode.CONFIG, "no network profile: pass --network FILE (`magnet devnet` writes one)"
        )
    return NetworkProfile.load(Path(config.node.network))


def chain_client(config: Config, profile: NetworkProfile, signer: LocalSigner | None = None) -> ChainClient:
    from wallet.chain import ChainClient

    with chain_errors():
        return ChainClient.from_config(
            config.chain, profile.rpc_url, signer, expected_chain_id=profile.chain_id
        )


@contextmanager
def chain_errors() -> Iterator[None]:
    """Turn chain errors into CLI errors with the right exit code."""
    from wallet.chainerrors import ChainError, RpcUnavailable, TxTimeout, WrongChain

    try:
        yield
    except WrongChain as exc:
        raise CliError(ExitCode.CONFIG, str(exc)) from None
    except (RpcUnavailable, TxTimeout) as exc:
        raise CliError(ExitCode.NETWORK, str(exc)) from None
    except ChainError as exc:
        raise CliError(ExitCode.ERROR, str(exc)) from None


def parse_ether(text: str) -> int:
    """``"1.5"`` native units -> wei."""
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise CliError(ExitCode.USAGE, f"{text!r} is not an amount (use a number such as 1.5)") from None
    wei = value * WEI
    if value <= 0 or wei != wei.to_integral_value():
        raise CliError(ExitCode.USAGE, f"{text!r} must be positive with at most 18 decimals")
    return int(wei)


def format_units(wei: int) -> str:
    """wei -> a decimal string in whole units (18 decimals, trailing zeros trimmed)."""
    whole, frac = divmod(wei, WEI)
    return f"{whole}.{frac:018d}".rstrip("0").rstrip(".") if frac else str(whole)
