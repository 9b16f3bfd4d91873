"""What several commands share: config from the command line, passwords, the wallet, output."""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from node.cli.exitcodes import CliError, ExitCode
from node.config import Config, ConfigError, load_config
from node.logs import redact, register_secret
from node.paths import DataDir, resolve_data_dir

if TYPE_CHECKING:
    from node.core import NodeCore
    from wallet.signer import LocalSigner

MAX_PASSWORD_FILE_BYTES = 4096
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


def read_password_file(path: str) -> str:
    """The first line of ``path`` (without its line end). Empty or unreadable files are errors."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_PASSWORD_FILE_BYTES + 1)
    except OSError as exc:
        raise CliError(ExitCode.NO_PASSWORD, f"cannot read password file {path}: {exc.strerror}") from None
    if len(raw) > MAX_PASSWORD_FILE_BYTES:
        raise CliError(ExitCode.USAGE, f"password file {path} is over {MAX_PASSWORD_FILE_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise CliError(ExitCode.USAGE, f"password file {path} is not UTF-8 text") from None
    lines = text.splitlines()
    password = lines[0] if lines else ""
    if not password:
        raise CliError(ExitCode.USAGE, f"password file {path} is empty: put the password on its first line")
    register_secret(password)
    return password


def obtain_password(config: Config, purpose: str, confirm: bool = False) -> str:
    """The wallet password: from ``node.password_file`` / ``--password-file``, else a prompt.

    With no terminal and no file this is ``NO_PASSWORD``, never a hang on a prompt nobody sees.
    """
    if config.node.password_file:
        return read_password_file(config.node.password_file)
    if not has_terminal():
        raise CliError(
            ExitCode.NO_PASSWORD,
            f"no terminal to ask for the password to {purpose}: pass --password-file FILE "
            "(or set MAGNET_NODE__PASSWORD_FILE)",
        )
    try:
        password = getpass.getpass(f"Password to {purpose}: ")
        if confirm and getpass.getpass("Repeat the password: ") != password:
            raise CliError(ExitCode.USAGE, "the two passwords differ: run the command again")
    except (EOFError, KeyboardInterrupt):
        raise CliError(ExitCode.INTERRUPTED, "interrupted: nothing was changed") from None
    if not password:
        raise CliError(ExitCode.USAGE, "an empty password protects nothing: choose one")
    register_secret(password)
    return password


def unlock_wallet(config: Config, data_dir: DataDir) -> LocalSigner:
    """The node's signer from its keystore (``WALLET_MISSING`` / ``WRONG_PASSWORD`` as exit codes)."""
    path = keystore_path(config, data_dir)
    if not path.exists():
        raise CliError(
            ExitCode.WALLET_MISSING,
            f"no wallet at {path}: create one with `magnet init` (or `magnet devnet` needs none)",
        )
    from wallet.errors import WalletError, WrongPassword
    from wallet.keystore import unlock_keystore
    from wallet.signer import LocalSigner

    password = obtain_password(config, f"unlock the wallet in {path}")
    try:
        return LocalSigner(unlock_keystore(path, password))
    except WrongPassword:
        raise CliError(ExitCode.WRONG_PASSWORD, f"wrong password for {path}: try again") from None
    except WalletError as exc:
        raise CliError(ExitCode.CONFIG, redact(str(exc))) from None


def plug_in_roles(core: NodeCore, roles: Sequence[str]) -> None:
    """Attach each role's service; say plainly which ones this build does not have yet."""
    from node.core import RoleNotAvailable

    for role in roles:
        try:
            core.plug_in(role)
        except RoleNotAvailable as exc:
            out(f"note: {exc}; the node runs without it", sys.stderr)


def out(text: str = "", stream: TextIO | None = None) -> None:
    """Print one line (stdout unless told), redacted like the logs."""
    print(redact(text), file=stream or sys.stdout, flush=True)
