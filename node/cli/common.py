"""What several commands share: config from the command line, passwords, the wallet, output."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from node.cli.exitcodes import CliError, ExitCode
from node.config import Config, ConfigError, load_config
from node.logs import redact
from node.paths import DataDir, resolve_data_dir

if TYPE_CHECKING:
    from node.core import NodeCore
    from wallet.signer import LocalSigner

# What a command module's register() receives.
if TYPE_CHECKING:
    Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]
else:
    Subparsers = argparse._SubParsersAction


def config_from_args(args: argparse.Namespace) -> Config:
    """Load the config (``--config`` or the default file, then the environment) and apply ``--data-dir``."""
    path = Path(args.config) if getattr(args, "config", None) else None
    try:
        config = load_config(path=path)
    except ConfigError as exc:
        raise CliError(ExitCode.CONFIG, str(exc)) from None
    if getattr(args, "data_dir", None):
        config.node.data_dir = str(Path(args.data_dir).expanduser().resolve())
    if getattr(args, "password_file", None):
        config.node.password_file = args.password_file
    if getattr(args, "network", None):
        config.node.network = args.network
    return config


def data_dir_of(config: Config) -> DataDir:
    return DataDir(resolve_data_dir(config.node.data_dir))


def keystore_path(config: Config, data_dir: DataDir) -> Path:
    configured = config.wallet.keystore_file
    return Path(configured).expanduser() if configured else data_dir.keystore


def has_terminal() -> bool:
    return sys.stdin is not None and sys.stdin.isatty()


def obtain_password(config: Config, purpose: str, confirm: bool = False, keyring_account: str = "") -> str:
    """The wallet password from the wallet's sources: password file, ``MAGNET_PASSWORD``, the OS
    keyring (only a secure one, only if ``wallet.use_keyring``), or a prompt on a terminal.

    With none of them this is ``NO_PASSWORD``, never a hang on a prompt nobody sees.
    """
    from wallet.errors import NoPassword
    from wallet.password import get_password

    password_file = Path(config.node.password_file).expanduser() if config.node.password_file else None
    try:
        return get_password(
            purpose,
            password_file=password_file,
            keyring_account=keyring_account if config.wallet.use_keyring else None,
            confirm=confirm,
        )
    except NoPassword as exc:
        raise CliError(ExitCode.NO_PASSWORD, redact(str(exc))) from None
    except (EOFError, KeyboardInterrupt):
        raise CliError(ExitCode.INTERRUPTED, "interrupted: nothing was changed") from None


def unlock_wallet(config: Config, data_dir: DataDir) -> LocalSigner:
    """The node's hot signer from its keystore (``WALLET_MISSING`` / ``WRONG_PASSWORD`` as exit codes)."""
    from wallet.errors import WalletError, WrongPassword
    from wallet.keystore import keystore_address, load_keystore, unlock_keystore
    from wallet.signer import LocalSigner

    path = keystore_path(config, data_dir)
    if not path.exists():
        raise CliError(
            ExitCode.WALLET_MISSING,
            f"no wallet at {path}: create one with `magnet init` (`magnet devnet` needs none)",
        )
    try:
        address = keystore_address(load_keystore(path))
        password = obtain_password(config, f"unlock the wallet {address}", keyring_account=address)
        return LocalSigner(unlock_keystore(path, password))
    except WrongPassword:
        raise CliError(ExitCode.WRONG_PASSWORD, f"wrong password for the wallet in {path}") from None
    except WalletError as exc:
        raise CliError(ExitCode.CONFIG, redact(str(exc))) from None


def plug_in_roles(core: NodeCore, roles: Sequence[str], best_effort: bool = False) -> None:
    """Attach each role's service; say plainly which ones this build does not have yet.

    ``best_effort`` also runs on without a role whose config is missing (the interim devnet has no
    network profile); otherwise that is a ``CONFIG`` error.
    """
    from node.core import RoleConfigError, RoleNotAvailable

    skippable: tuple[type[Exception], ...] = (RoleNotAvailable, RoleConfigError) if best_effort else (
        RoleNotAvailable,
    )
    for role in roles:
        try:
            core.plug_in(role)
        except skippable as exc:
            out(f"note: {exc}; the node runs without it", sys.stderr)


def out(text: str = "", stream: TextIO | None = None) -> None:
    """Print one line (stdout unless told), redacted like the logs."""
    print(redact(text), file=stream or sys.stdout, flush=True)
