"""``magnet init``: create the data directory and a wallet (keystore v3 plus the sealed mnemonic)."""

from __future__ import annotations

import argparse

from node.cli.common import (
    Subparsers,
    config_from_args,
    data_dir_of,
    has_terminal,
    keystore_path,
    obtain_password,
    out,
)
from node.cli.exitcodes import CliError, ExitCode

MIN_PASSWORD_CHARS = 8


def register(subparsers: Subparsers) -> None:
    if "init" in subparsers.choices:
        return
    sub = subparsers.add_parser(
        "init",
        help="create the data directory and a new wallet",
        description="Create the data directory and a new wallet (a 12-word BIP-39 mnemonic, saved as a "
        "keystore v3 file under your password). Asks for the password on a terminal; with no terminal, "
        "give --password-file FILE.",
    )
    sub.add_argument("--words", type=int, choices=(12, 24), default=12, help="mnemonic length (default 12)")
    sub.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from wallet.walletdir import WalletDir

    config = config_from_args(args)
    data_dir = data_dir_of(config)
    with data_dir:  # the lock: a running node or a second `init` cannot race with this one
        wallet = WalletDir(keystore_path(config, data_dir).parent, scrypt_n=config.wallet.scrypt_n)
        if wallet.exists():
            raise CliError(
                ExitCode.WALLET_EXISTS,
                f"a wallet already exists at {wallet.hot_keystore}; nothing was changed. Use `magnet "
                "wallet` to manage it, or --data-dir DIR for a separate node.",
            )
        interactive = has_terminal() and not config.node.password_file
        password = obtain_password(config, "protect the new wallet", confirm=True)
        if len(password) < MIN_PASSWORD_CHARS:
            raise CliError(
                ExitCode.USAGE,
                f"the password has {len(password)} characters; use at least {MIN_PASSWORD_CHARS} "
                "(it is all that protects the wallet file)",
            )
        address, mnemonic = wallet.create(password, words=args.words)
        out(f"data directory: {data_dir.root}")
        out(f"wallet address: {address}")
        out(f"keystore: {wallet.hot_keystore}")
        if interactive:
            show_mnemonic(mnemonic)
        else:
            out(f"recovery phrase: sealed under your password in {wallet.mnemonic_file} "
                "(not printed: no terminal; `magnet wallet show` reveals it after the password)")
    return int(ExitCode.OK)


def show_mnemonic(mnemonic: str) -> None:
    """Print the phrase on the terminal only (never through logging, which would redact it anyway)."""
    print("\nWrite these words down and keep them offline: they are the only way to recover the wallet.")
    print("  " + mnemonic + "\n", flush=True)
