"""Errors in words a hobbyist understands, each with what to do about it.

The core's own messages already say what failed and why; this adds the plain-language lead and
the action for the errors a newcomer meets, matched by class name so nothing heavy is imported.
"""

from __future__ import annotations

import errno

from node.logs import redact

# Exception class name -> (what happened, what to do). The original message follows them.
KNOWN: dict[str, tuple[str, str]] = {
    "WrongPassword": ("The password is not right.", "Type it again; check Caps Lock."),
    "NoWallet": ("There is no wallet yet.", "Create or import one with the first-run wizard."),
    "WalletExists": ("A wallet already exists here.", "Use it, or choose another data folder in Settings."),
    "DataDirInUse": (
        "Another MAGNET is already running with this data folder.",
        "Close the other window or `magnet --headless`, or choose another data folder in Settings.",
    ),
    "ProfileError": (
        "The network file cannot be used.",
        "Choose another network profile in Settings (a devnet writes network.json).",
    ),
    "RoleConfigError": ("Mining cannot start with these settings.", "Check the network in Settings."),
    "ServiceError": (
        "The node could not start.",
        "Check that the network is reachable and the port is free; the Logs screen has the details.",
    ),
    "RpcUnavailable": (
        "The blockchain node cannot be reached.",
        "Check your internet connection or the JSON-RPC address of the network profile.",
    ),
    "InvalidMnemonic": ("Those words are not a valid recovery phrase.", "Check each word and their order."),
    "ConfigError": ("The configuration file has a mistake.", "Fix or delete the file named below."),
}


def in_words(error: BaseException) -> str:
    """One or two sentences for a dialog or a status line: what happened, what to do, the detail."""
    for cls in type(error).__mro__:
        if cls.__name__ in KNOWN:
            what, todo = KNOWN[cls.__name__]
            return f"{what} {todo}\n({redact(str(error))})"
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        return "The disk is full. Free some space, or move the data folder in Settings."
    if isinstance(error, OSError) and error.errno == errno.EADDRINUSE:
        return "The network port is used by another program. Close it, or pick another port in Settings."
    if isinstance(error, PermissionError):
        return f"MAGNET may not write there. Choose a folder you own.\n({redact(str(error))})"
    return f"Something went wrong: {redact(str(error)) or type(error).__name__}. The Logs screen has details."
