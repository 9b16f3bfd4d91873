"""Exit codes of ``magnet``: one per kind of failure a user or a script must tell apart.

Every code has a row in docs/CLI.md (a test checks it). Codes are part of the interface: never
renumber one, only add.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    ERROR = 1  # an unexpected internal error (a bug): the message and the log say more
    USAGE = 2  # bad command line (argparse uses 2 as well)
    CONFIG = 3  # bad config file, environment override or network profile
    DATA_DIR_IN_USE = 4  # another process holds the data directory
    WALLET_MISSING = 5  # no wallet yet: run `magnet init`
    WRONG_PASSWORD = 6  # the password does not open the keystore
    NO_PASSWORD = 7  # no terminal to ask and no password file given
    WALLET_EXISTS = 8  # `magnet init` found a wallet already there
    NETWORK = 9  # peers, chain or ports unreachable
    NOT_AVAILABLE = 10  # the command or the desktop app is not part of this build yet
    NODE_FAILED = 11  # the node started but a service failed while running
    STORE = 12  # the data directory's store cannot be opened or migrated
    INTERRUPTED = 130  # Ctrl-C during a prompt or before the node started (128 + SIGINT)


class CliError(Exception):
    """An error the CLI reports as one line on stderr and an exit code."""

    def __init__(self, code: ExitCode, message: str) -> None:
        super().__init__(message)
        self.code = code
