"""Where the wallet password comes from: a file, ``MAGNET_PASSWORD``, the OS keyring, or a prompt.

Order: an explicit password file, then the ``MAGNET_PASSWORD`` environment variable (headless),
then the OS keyring if it is a *secure* one and caching is on, then a prompt on a terminal. With
none of these, ``NoPassword`` says what to pass. The keyring only ever caches the password; the
keystore stays the source of truth. A keyring that would store it in plain text (keyrings.alt's
file backends only base64-encode) or that cannot store anything (the ``fail`` and ``null``
backends, a chainer with no backend) counts as absent: we say so and ask instead, never write a
plaintext file. Every password obtained is registered with the log redaction guard.
"""

from __future__ import annotations

import getpass
import os
import stat
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from node.logs import component_logger, register_secret
from wallet.errors import NoPassword

log = component_logger("wallet")
ENV_PASSWORD = "MAGNET_PASSWORD"
KEYRING_SERVICE = "magnet-wallet"
MAX_PASSWORD_FILE_BYTES = 4096
_INSECURE_MODULES = ("keyring.backends.fail", "keyring.backends.null", "keyrings.alt")


@dataclass(frozen=True)
class KeyringStatus:
    """Whether a secure keyring exists, and in words why not."""

    backend: Any
    secure: bool
    reason: str


def keyring_status() -> KeyringStatus:
    """The current keyring backend and whether it may hold a password."""
    try:
        import keyring
    except ImportError:
        return KeyringStatus(None, False, "the keyring package is not installed")
    backend = keyring.get_keyring()
    return KeyringStatus(backend, *_judge(backend))


def _judge(backend: Any) -> tuple[bool, str]:
    name = f"{type(backend).__module__}.{type(backend).__name__}"
    if type(backend).__name__ == "ChainerBackend":
        inner = list(getattr(backend, "backends", []))
        judged = [_judge(b) for b in inner]
        if not inner:
            return False, "no OS keyring backend is available (no Secret Service / D-Bus session here)"
        if all(ok for ok, _ in judged):
            return True, f"keyring backends: {', '.join(type(b).__name__ for b in inner)}"
        return False, "; ".join(reason for ok, reason in judged if not ok)
    if type(backend).__module__.startswith(_INSECURE_MODULES):
        if type(backend).__module__.startswith("keyrings.alt"):
            return False, f"the keyring backend {name} keeps secrets in a plain file, which is not secure"
        return False, f"no OS keyring is available (backend {name}; headless Linux needs Secret Service)"
    return True, f"keyring backend {name}"


def cached_password(account: str) -> str | None:
    """The password cached for ``account`` in a secure keyring, if any."""
    status = keyring_status()
    if not status.secure:
        return None
    try:
        value = status.backend.get_password(KEYRING_SERVICE, account)
    except Exception as exc:  # a locked or broken keyring is not fatal: we ask instead
        log.info("keyring lookup failed (%s); asking for the password", type(exc).__name__)
        return None
    if value:
        register_secret(value)
    return str(value) if value else None


def cache_password(account: str, password: str) -> bool:
    """Cache ``password`` in a secure keyring; False (and why, in the log) when there is none."""
    status = keyring_status()
    if not status.secure:
        log.info("password not cached: %s; you will be asked for it (or use --password-file)", status.reason)
        return False
    try:
        status.backend.set_password(KEYRING_SERVICE, account, password)
    except Exception as exc:
        log.info("password not cached: the keyring refused it (%s)", type(exc).__name__)
        return False
    return True


def forget_password(account: str) -> None:
    status = keyring_status()
    if status.secure:
        try:
            status.backend.delete_password(KEYRING_SERVICE, account)
        except Exception:  # nothing cached is fine
            pass


def read_password_file(path: Path) -> str:
    """The first line of ``path``; warn if others can read it."""
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_PASSWORD_FILE_BYTES + 1)
            mode = os.fstat(f.fileno()).st_mode
    except OSError as exc:
        raise NoPassword(f"cannot read password file {path}: {exc.strerror}") from None
    if len(raw) > MAX_PASSWORD_FILE_BYTES:
        raise NoPassword(f"password file {path} is over {MAX_PASSWORD_FILE_BYTES} bytes: not a password file")
    try:
        lines = raw.decode("utf-8").splitlines()
    except UnicodeDecodeError:
        raise NoPassword(f"password file {path} is not UTF-8 text") from None
    if not lines or not lines[0]:
        raise NoPassword(f"password file {path} is empty: put the password on its first line")
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("password file %s is readable by other users: chmod 600 it", path)
    register_secret(lines[0])
    return lines[0]


def get_password(
    purpose: str,
    *,
    password_file: Path | None = None,
    env: Mapping[str, str] | None = None,
    keyring_account: str | None = None,
    confirm: bool = False,
    prompt: Callable[[str], str] | None = None,
    interactive: bool | None = None,
) -> str:
    """The password to ``purpose`` from the first source that has one (see the module docstring)."""
    password, _ = password_and_source(
        purpose,
        password_file=password_file,
        env=env,
        keyring_account=keyring_account,
        confirm=confirm,
        prompt=prompt,
        interactive=interactive,
    )
    return password


def password_and_source(
    purpose: str,
    *,
    password_file: Path | None = None,
    env: Mapping[str, str] | None = None,
    keyring_account: str | None = None,
    confirm: bool = False,
    prompt: Callable[[str], str] | None = None,
    interactive: bool | None = None,
) -> tuple[str, str]:
    """``get_password`` that also says where the password came from: "file", "env", "keyring" or
    "prompt" (only a typed password is worth caching in the keyring)."""
    env = os.environ if env is None else env
    if password_file is not None:
        return read_password_file(password_file), "file"
    if env.get(ENV_PASSWORD):
        register_secret(env[ENV_PASSWORD])
        return env[ENV_PASSWORD], "env"
    if keyring_account and not confirm:
        cached = cached_password(keyring_account)
        if cached:
            return cached, "keyring"
    if interactive is None:
        interactive = sys.stdin is not None and sys.stdin.isatty()
    if not interactive:
        raise NoPassword(
            f"no password to {purpose}: pass --password-file FILE or set {ENV_PASSWORD} "
            "(there is no terminal to ask on)"
        )
    ask = prompt or getpass.getpass
    password = ask(f"Password to {purpose}: ")
    if confirm and ask("Repeat the password: ") != password:
        raise NoPassword("the two passwords differ: nothing was changed")
    if not password:
        raise NoPassword("an empty password protects nothing: choose one")
    register_secret(password)
    return password, "prompt"
